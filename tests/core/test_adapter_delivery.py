"""An adopted adapter patch in the delivery (issue 14): its files join the single signed-off local
commit like a candidate's minimal diff, the PR body's sentence names them, and files recorded by a
runner that break the budget are refused on the control plane (no commit of them)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bot.local_run import LocalRunConfig, _deliver
from runners import adapter as ad
from runners import candidate as cand_mod
from runners.contracts import AdapterSpec, JobOptions, StageResult
from runners.demo.sample_repo import make_sample_repo
from runners.workspace import Workspace
from tests.core.test_adapter import FAILED, FIX, Regate, _ctx, _script


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, check=True).stdout


def _adopted(tmp_path: Path) -> StageResult:
    """A real adapter run whose second attempt passes (the re-gate reads the installed site)."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    ctx = _ctx(tmp_path, command=_script(tmp_path, "fix", FIX), attempts=2)
    record, passing = ad.run_step(ctx, ctx.options.adapter, FAILED, Regate(ctx), {})
    assert passing is not None
    passing.data["adapter"] = record
    return passing


def test_the_local_commit_carries_the_adapters_files(tmp_path: Path) -> None:
    passing = _adopted(tmp_path)
    target = make_sample_repo(tmp_path / "vllm-ascend", "mkdocs")
    base = git(target, "rev-parse", "HEAD").strip()
    ws = Workspace.for_job("local-x", tmp_path / "deliver")
    ws.save_result(passing)
    (ws.repo_files / "tests/e2e/models/configs").mkdir(parents=True)
    (ws.repo_files / "tests/e2e/models/configs/x.yaml").write_text("model_name: x\n", encoding="utf-8")
    options = JobOptions(
        model="acme/x", local_path=str(tmp_path), issue=3, adapter=AdapterSpec(command=[sys.executable])
    )
    done = _deliver(LocalRunConfig(options=options, repo=target, out=tmp_path / "out"), ws)
    changed = set(git(target, "diff", "--name-only", base, done["branch"]).split())
    assert changed == {"tests/e2e/models/configs/x.yaml", "adapt_bot_plugin/fixed.py"}
    assert git(target, "rev-list", "--count", f"{base}..{done['branch']}").strip() == "1"
    assert git(target, "show", f"{done['branch']}:adapt_bot_plugin/fixed.py") == "FIXED = True\n"
    assert "Signed-off-by:" in git(target, "log", "-1", "--format=%B", done["branch"])
    text = cand_mod.adapter_rationale({"dummy-gate": passing}) or ""
    assert "adapt_bot_plugin/fixed.py" in text and "attempt 2 of 2" in text


def test_recorded_files_over_the_budget_or_outside_the_repo_are_refused() -> None:
    def res(files: object) -> dict[str, StageResult]:
        rec = {"outcome": "passed", "files": files, "patch": "x"}
        return {"dummy-gate": StageResult(stage="dummy-gate", status="passed", data={"adapter": rec})}

    assert cand_mod.adapter_files(res({"a.py": "x\n"})) == {"a.py": b"x\n"}
    for files, says in (
        ({"../etc/passwd": "x"}, "not a plain path"),
        ({".git/hooks/pre-commit": "x"}, "not a plain path"),
        ({f"f{i}.py": "x" for i in range(21)}, "21 files"),
        ({"big.py": "x" * (cand_mod.DIFF_MAX_BYTES + 1)}, "bytes"),
        ({"a.py": 3}, "path -> text"),
    ):
        with pytest.raises(cand_mod.CandidateFailed, match=says):
            cand_mod.adapter_files(res(files))
    failed = {
        "dummy-gate": StageResult(
            stage="dummy-gate", status="failed", data={"adapter": {"outcome": "bounded"}}
        )
    }
    assert cand_mod.adapter_files(failed) == {} and cand_mod.adapter_rationale(failed) is None


def test_the_github_delivery_carries_the_adapters_files_and_names_them(
    github_standin: Any, app_settings: Any, mkdocs_repo: Path, tmp_path: Path
) -> None:
    """Through the real `deliver` and the GitHub stand-in: one commit with the adapter's file next
    to the artifacts, marked as a code change, and the PR body's sentence naming it."""
    from bot.delivery import deliver
    from bot.github import GitHubClient
    from bot.jobs.model import Job
    from bot.repo_config import RepoConfig
    from tests.artifacts import builders as b
    from tests.artifacts.test_delivery_base_branch import MODEL, checkout_files, results_for, runner_files
    from tests.plugins.standin import INSTALLATION, REPO
    from tests.standin.git_api import git_world, pulls_of, seed_commit, tree_files

    passing = _adopted(tmp_path / "adapter")
    results = results_for()
    results["dummy-gate"].data["adapter"] = passing.data["adapter"]
    files = runner_files(mkdocs_repo, tmp_path, results)
    base = seed_commit(github_standin, REPO, checkout_files(mkdocs_repo))
    options = b.options(MODEL, issue=9).model_copy(update={"adapter": AdapterSpec(command=["my-agent"])})
    job = Job(repo=REPO, installation_id=INSTALLATION, issue=9, options=options)
    github = GitHubClient(app_settings).installation(INSTALLATION)
    outcome = deliver(
        job=job, results=results, files=files, github=github, config=RepoConfig(), settings=app_settings
    )
    assert tree_files(github_standin, outcome.sha)["adapt_bot_plugin/fixed.py"] == "FIXED = True\n"
    assert git_world(github_standin)["objects"][outcome.sha]["parents"] == [base]  # ONE commit
    (pr,) = pulls_of(github_standin, REPO)
    assert "- `adapt_bot_plugin/fixed.py`: code change for this model" in pr["body"]
    assert "came from the adapter step" in pr["body"] and "adapt_bot_plugin/fixed.py" in pr["body"]
