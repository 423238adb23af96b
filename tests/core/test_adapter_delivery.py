"""An adopted adapter patch in the delivery (issue 14): its files join the single signed-off local
commit like a candidate's minimal diff, the PR body's sentence names them, and files recorded by a
runner that break the budget are refused on the control plane (no commit of them)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

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
