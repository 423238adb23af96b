"""The README's main job, locally: `adapt-bot run` on a tiny Llama with real weights against a
vllm-ascend-shaped checkout, through the real console script, with a real `vllm serve` and lm-eval.
No GitHub, no external Redis. The same run proves the job plan of issue 13 (one real-weight start
shared by the real gate, capacity and accuracy); the rules around it (reruns, cancel, another job)
are tested on real process groups in tests/gates/test_shared_start.py."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import pytest

from runners.contracts import FEATURES, RUNNER_STAGES, FeatureStatus

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1200)]


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, check=True).stdout


def test_adapt_bot_run_end_to_end(tiny_model: Callable[[str], Path], tmp_path: Path) -> None:
    from runners.demo.sample_repo import make_sample_repo

    models = tmp_path / "models"
    shutil.copytree(tiny_model("llama"), models / "adapt-bot" / "tiny-llama")  # <root>/<org>/<name>
    repo = make_sample_repo(tmp_path / "vllm-ascend", "mkdocs")
    base = git(repo, "rev-parse", "HEAD").strip()
    head_branch = git(repo, "rev-parse", "--abbrev-ref", "HEAD").strip()
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, "-m", "bot.cli", "run", "adapt-bot/tiny-llama", "--repo", str(repo),
         "--models-root", str(models), "--out", str(out), "--issue", "7"],
        capture_output=True, text=True, timeout=1100,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]

    # progress: every stage announced with its position and elapsed time, then its outcome
    for i, stage in enumerate((*RUNNER_STAGES, "deliver"), start=1):
        assert f"[{i}/{len(RUNNER_STAGES) + 1}] {stage}" in proc.stderr
    assert "succeeded in" in proc.stderr

    result = json.loads((out / "result.json").read_text())
    assert result["state"] == "succeeded"
    # the run ends with the verdict it earned and why: a tiny random-weight model measured on the
    # offline local task on the cpu profile is never "validated", and nothing names Ascend hardware
    verdict = result["verdict"]
    assert verdict["level"] == "serves-not-validated" and verdict["hardware"] is None
    assert verdict["served"] == "real" and verdict["reasons"]  # it says why
    assert "verdict: ⚠️ serves, not validated" in proc.stderr and "not Ascend hardware" in proc.stderr
    assert set(result["stages"]) == set(RUNNER_STAGES)
    assert all(r["status"] == "passed" for r in result["stages"].values())
    matrix = result["feature_matrix"]
    assert set(matrix) == set(FEATURES)
    assert {m["status"] for m in matrix.values()} <= {s.value for s in FeatureStatus}
    assert all(m["reason"] and m["evidence"] for m in matrix.values())  # every status has its evidence
    assert result["timings"]["total_s"] >= sum(result["timings"]["by_stage_s"].values()) - 1
    # issue 9: every stage's data, as the real stages wrote it, parses through its model (an unparsed
    # stage would turn its figures into "unknown" lines in the report and the PR body)
    from runners.artifacts.facts import collect
    from runners.contracts import JobOptions, StageResult

    stage_results = {s: StageResult.model_validate(r) for s, r in result["stages"].items()}
    assert collect(JobOptions.model_validate(result["options"]), stage_results).unparsed == {}
    logs = [Path(p) for p in result["logs"]]
    assert any(p.name == "real-gate.log" for p in logs) and all(p.is_file() for p in logs)

    # issue 13: ONE real-weight start served the real gate, the capacity baseline and accuracy (the
    # dummy gate is the only other start), each stage with its own result and its own device time
    from runners import accounting

    logs_dir = logs[0].parent
    serves = [r for r in accounting.records(logs_dir) if r.name.startswith("vllm-serve:")]
    assert [r.name for r in serves] == ["vllm-serve:dummy-gate", "vllm-serve:real-gate"], serves
    data = {name: r["data"] for name, r in result["stages"].items()}
    share = data["real-gate"]["shared_start"]
    assert share["plan"]["users"] == ["real-gate", "capacity", "accuracy"] and share["id"]
    assert data["capacity"]["shared_start"]["id"] == share["id"] == data["accuracy"]["shared_start"]["id"]
    (baseline,) = data["capacity"]["runs"]
    assert baseline["server"]["role"] == "adopted" and baseline["success"] == baseline["requests"]
    assert baseline["kv"]["measured_tokens"] == baseline["kv"]["predicted_tokens"]
    assert data["accuracy"]["server"]["role"] == "adopted" and data["accuracy"]["tasks"]
    real = next(r for r in serves if r.name == "vllm-serve:real-gate")
    started = {s: r["started_at"] for s, r in result["stages"].items()}
    finished = {s: r["finished_at"] for s, r in result["stages"].items()}

    def ts(value: str) -> float:
        return datetime.fromisoformat(value).timestamp()

    assert ts(started["real-gate"]) <= real.started <= ts(finished["real-gate"])
    assert real.ended is not None and ts(started["accuracy"]) <= real.ended <= ts(finished["accuracy"])
    windows = {s: (ts(started[s]), ts(finished[s])) for s in result["stages"]}
    by_stage = accounting.job_device_seconds(logs_dir, windows)
    assert by_stage["by_stage"]["capacity"] > 0 and by_stage["by_stage"]["accuracy"] > 0
    assert sum(by_stage["by_stage"].values()) <= by_stage["device_seconds"] + 0.1

    # one signed-off commit on adapt/<slug>-<issue>, on top of the base; the checkout is untouched
    commit = result["commit"]
    assert commit["branch"] == "adapt/tiny-llama-7"
    assert git(repo, "rev-list", "--count", f"{base}..{commit['branch']}").strip() == "1"
    assert git(repo, "rev-parse", f"{commit['branch']}^").strip() == base
    message = git(repo, "log", "-1", "--format=%B", commit["branch"])
    assert "Signed-off-by: adapt-bot <adapt-bot@users.noreply.github.com>" in message
    changed = set(git(repo, "diff", "--name-only", base, commit["branch"]).split())
    assert changed == {
        "tests/e2e/models/configs/tiny-llama.yaml",
        "docs/source/tutorials/models/tiny-llama.md",
        "mkdocs.yml",
    }
    assert git(repo, "rev-parse", "--abbrev-ref", "HEAD").strip() == head_branch
    assert git(repo, "status", "--porcelain") == ""

    report = (out / "report.zh.md").read_text()
    for section in ("模型架构概述", "特性状态矩阵", "dummy 与真实权重验证矩阵", "回退阶梯证据", "提交哈希"):
        assert section in report
    assert commit["sha"] in report
    assert "数值未知" not in report  # no stage's figures lost to data that did not validate
    runbook = (out / "runbook.zh.md").read_text()
    assert "--enforce-eager" in runbook and "TORCHDYNAMO_DISABLE=1" in runbook
