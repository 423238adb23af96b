"""The early draft PR carries the job's code from the start (issue 14), through the real `open_draft`
and `deliver` against the GitHub stand-in: a candidate's minimal diff (fetched here with git at the
pinned SHA) and an adopted adapter patch are in the draft's one signed-off commit and listed in its
body; final delivery then force-moves the same branch to its own single commit on the base, same
PR. A candidate over the budget opens no draft and commits nothing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bot.delivery import deliver, open_draft
from runners import candidate as cand_mod
from tests.artifacts import builders as b
from tests.artifacts.test_delivery_base_branch import MODEL, checkout_files, results_for, runner_files
from tests.core.test_candidate import PLUGIN, _git, make_plugin_repo
from tests.plugins.standin import INSTALLATION, REPO
from tests.standin.git_api import git_world, pulls_of, seed_commit, tree_files

CODE = ["adaptplug/__init__.py", "pyproject.toml"]
GATED = ("analyze", "dummy-gate", "real-gate")  # what is stored when the real gate has just passed


def _job(cand: Any) -> Any:
    from bot.jobs.model import Job

    options = b.options(MODEL, issue=9).model_copy(update={"candidate": cand})
    return Job(repo=REPO, installation_id=INSTALLATION, issue=9, options=options)


def _github(app_settings: Any) -> Any:
    from bot.github import GitHubClient

    return GitHubClient(app_settings).installation(INSTALLATION)


def _gated(results: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in results.items() if k in GATED}


def test_the_draft_carries_the_candidates_diff_and_delivery_replaces_its_commit(
    github_standin: Any, app_settings: Any, mkdocs_repo: Path, tmp_path: Path
) -> None:
    from bot.repo_config import RepoConfig

    repo, sha, _ = make_plugin_repo(tmp_path / "contrib")
    job = _job(cand_mod.resolve_local(str(repo), "feat/adaptplug"))
    results = results_for()
    base = seed_commit(github_standin, REPO, checkout_files(mkdocs_repo))
    kw = {"job": job, "github": _github(app_settings), "config": RepoConfig(), "settings": app_settings}

    draft = open_draft(results=_gated(results), **kw)
    assert draft is not None and draft.created and draft.draft
    committed = tree_files(github_standin, draft.sha)
    assert committed["adaptplug/__init__.py"] == PLUGIN  # the control plane's own fetch at the SHA
    assert committed["pyproject.toml"].startswith("[build-system]")
    assert "docs/source/tutorials/models/Foo-7B.md" in committed  # with the tutorial, as before
    commit = git_world(github_standin)["objects"][draft.sha]
    assert commit["parents"] == [base] and "Signed-off-by: " in commit["message"]
    assert set(CODE) <= set(draft.files)
    (pr,) = pulls_of(github_standin, REPO)
    assert pr["draft"] is True and f"at commit `{sha}`" in pr["body"]
    for path in CODE:
        assert f"- `{path}`: code change for this model" in pr["body"]

    files = runner_files(mkdocs_repo, tmp_path, results)
    final = deliver(results=results, files=files, **kw)
    assert final.pr_number == draft.pr_number and not final.created and final.sha != draft.sha
    assert git_world(github_standin)["objects"][final.sha]["parents"] == [base]  # still ONE commit
    assert tree_files(github_standin, final.sha)["adaptplug/__init__.py"] == PLUGIN
    (pr,) = pulls_of(github_standin, REPO)
    assert pr["head_sha"] == final.sha and "tests/e2e/models/configs/Foo-7B.yaml" in final.files


def test_the_draft_carries_an_adopted_adapter_patch_and_names_it(
    github_standin: Any, app_settings: Any, mkdocs_repo: Path
) -> None:
    from bot.repo_config import RepoConfig

    record = {
        "outcome": "passed",
        "files": {"adapt_bot_plugin/fixed.py": "FIXED = True\n"},
        "command": "my-agent",
        "attempt": 2,
        "bounds": {"attempts": 3},
    }
    results = _gated(results_for())
    results["dummy-gate"].data["adapter"] = record
    seed_commit(github_standin, REPO, checkout_files(mkdocs_repo))
    draft = open_draft(
        job=_job(None),
        results=results,
        github=_github(app_settings),
        config=RepoConfig(),
        settings=app_settings,
    )
    assert draft is not None
    assert tree_files(github_standin, draft.sha)["adapt_bot_plugin/fixed.py"] == "FIXED = True\n"
    (pr,) = pulls_of(github_standin, REPO)
    assert "- `adapt_bot_plugin/fixed.py`: code change for this model" in pr["body"]
    assert "came from the adapter step (my-agent, attempt 2 of 3)" in pr["body"]


def test_a_draft_with_only_code_opens_even_when_the_base_has_the_tutorial(
    github_standin: Any, app_settings: Any, mkdocs_repo: Path, tmp_path: Path
) -> None:
    from bot.repo_config import RepoConfig
    from runners.artifacts.target import register_mkdocs

    repo, _, _ = make_plugin_repo(tmp_path / "contrib")
    results = _gated(results_for())
    base_files = checkout_files(mkdocs_repo)
    base_files["docs/source/tutorials/models/Foo-7B.md"] = "# Foo-7B (the maintainers')\n"
    base_files["mkdocs.yml"] = register_mkdocs(base_files["mkdocs.yml"], "Foo-7B.md")  # listed too
    seed_commit(github_standin, REPO, base_files)
    kw = {"github": _github(app_settings), "config": RepoConfig(), "settings": app_settings}
    assert open_draft(job=_job(None), results=results, **kw) is None  # nothing to commit yet
    draft = open_draft(job=_job(cand_mod.resolve_local(str(repo), "feat/adaptplug")), results=results, **kw)
    assert draft is not None
    committed = tree_files(github_standin, draft.sha)
    assert committed["adaptplug/__init__.py"] == PLUGIN
    assert committed["docs/source/tutorials/models/Foo-7B.md"] == "# Foo-7B (the maintainers')\n"


def test_a_candidate_over_the_budget_opens_no_draft(
    github_standin: Any, app_settings: Any, mkdocs_repo: Path, tmp_path: Path
) -> None:
    from bot.repo_config import RepoConfig

    repo, _, _ = make_plugin_repo(tmp_path / "contrib")
    _git(repo, "checkout", "-q", "feat/adaptplug")
    (repo / "weights.bin").write_bytes(bytes(range(256)) * 4)
    _git(repo, "add", "weights.bin")
    _git(repo, "commit", "-q", "-m", "a binary file")
    _git(repo, "checkout", "-q", "main")
    seed_commit(github_standin, REPO, checkout_files(mkdocs_repo))
    with pytest.raises(cand_mod.CandidateFailed, match=r"`weights\.bin` is a binary"):
        open_draft(
            job=_job(cand_mod.resolve_local(str(repo), "feat/adaptplug")),
            results=_gated(results_for()),
            github=_github(app_settings),
            config=RepoConfig(),
            settings=app_settings,
        )
    assert pulls_of(github_standin, REPO) == []
    assert github_standin.requests_to("POST", "/repos/octo-org/vllm-ascend/git/commits") == []


def test_a_push_to_the_draft_while_the_job_runs_is_never_overwritten(
    github_standin: Any, app_settings: Any, mkdocs_repo: Path, tmp_path: Path
) -> None:
    """A maintainer pushes to the draft PR's branch before the job has delivered: the final
    delivery does not force-move the branch over their commit; it fails saying what to do."""
    from bot.delivery import DeliveryError
    from bot.repo_config import RepoConfig
    from tests.standin.git_api import push_commit

    job = _job(None)
    results = results_for()
    seed_commit(github_standin, REPO, checkout_files(mkdocs_repo))
    kw = {"job": job, "github": _github(app_settings), "config": RepoConfig(), "settings": app_settings}
    draft = open_draft(results=_gated(results), **kw)
    assert draft is not None
    (pr,) = pulls_of(github_standin, REPO)
    theirs = push_commit(github_standin, REPO, pr["head_ref"], {"vllm_ascend/fix.py": "FIX = 1\n"})
    with pytest.raises(DeliveryError, match=r"someone pushed to .* their commits are kept"):
        deliver(results=results, files=runner_files(mkdocs_repo, tmp_path, results), **kw)
    (pr,) = pulls_of(github_standin, REPO)
    assert pr["head_sha"] == theirs  # their commit is still the head
    assert tree_files(github_standin, theirs)["vllm_ascend/fix.py"] == "FIX = 1\n"
