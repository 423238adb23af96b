"""Issue 14, end to end: a Qwen3-shaped checkpoint under an invented architecture name goes through
`adapt-bot run` (real console script, real `vllm serve`, transformers reference, lm-eval, git):
structural match -> the override rung passes the dummy gate -> every later start carries it (the
real gate passes reference parity with it) -> delivered with the override in the e2e YAML, the
tutorial's command and the report. One job for all of it: the gate-level assertions read the
stage results the job stored."""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1500)]

OVERRIDE = '{"architectures":["Qwen3ForCausalLM"]}'


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, check=True).stdout


def test_renamed_qwen3_is_delivered_through_the_override(
    tiny_model: Callable[[str], Path], tmp_path: Path
) -> None:
    from runners.demo.sample_repo import make_sample_repo

    models = tmp_path / "models"
    shutil.copytree(tiny_model("qwen3-renamed"), models / "acme" / "qwen3-renamed")
    repo = make_sample_repo(tmp_path / "vllm-ascend", "mkdocs")
    base = git(repo, "rev-parse", "HEAD").strip()
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, "-m", "bot.cli", "run", "acme/qwen3-renamed", "--repo", str(repo),
         "--models-root", str(models), "--out", str(out), "--issue", "9"],
        capture_output=True, text=True, timeout=1400,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((out / "result.json").read_text())
    assert result["state"] == "succeeded", json.dumps(result, indent=1)[-3000:]
    stages = {name: r["data"] for name, r in result["stages"].items()}
    assert all(r["status"] == "passed" for r in result["stages"].values())

    # the analysis matched the class on transformers' mapping AND the weight layout
    match = stages["analyze"]["zero_code"]["match"]
    assert match["architecture"] == "Qwen3ForCausalLM" and any("layout" in b for b in match["basis"])
    # the dummy gate: plain start refused (not registered), no reproduction/eager/text-only starts
    # (the registry check is static), the override rung passed and became the recipe
    dummy = stages["dummy-gate"]
    assert dummy["first_failure"]["signature"] == "not-registered"
    ladder = {r["rung"]: r for r in dummy["ladder"]}
    assert ladder["architecture-override"]["status"] == "passed"
    assert {ladder[r]["status"] for r in ("reproduce", "enforce-eager", "text-only")} == {"skipped"}
    assert "transformers-backend" not in ladder  # the first zero-code rung served it
    recipe = dummy["serve_recipe"]
    assert recipe["rung"] == "architecture-override" and recipe["args"] == ["--hf-overrides", OVERRIDE]
    # the real gate started with the recipe and passed first time, with reference parity
    real = stages["real-gate"]
    assert real["ladder"] == [] and OVERRIDE in real["argv"] and real["serve_recipe"] == recipe
    assert real["parity"]["status"] == "passed", real["parity"]

    # every vllm serve of the job carried the override (vLLM logs its non-default args); the dummy
    # gate's plain start is the only one without: it showed vLLM does not register the name
    args_lines = {}
    for log in map(Path, result["logs"]):
        line = next(
            (ln for ln in log.read_text(errors="replace").splitlines() if "non-default args:" in ln), None
        )
        if line is not None:
            args_lines[log.name] = line
    assert len(args_lines) >= 3, sorted(args_lines)  # dummy gate, its rung, the real-weight start(s)
    without = sorted(name for name, line in args_lines.items() if "'hf_overrides'" not in line)
    assert without == ["dummy-gate.log"], args_lines

    branch = result["commit"]["branch"]
    files = {
        p: git(repo, "show", f"{branch}:{p}") for p in git(repo, "diff", "--name-only", base, branch).split()
    }
    config = yaml.safe_load(files["tests/e2e/models/configs/qwen3-renamed.yaml"])
    assert config["serve"]["hf_overrides"] == {"architectures": ["Qwen3ForCausalLM"]}
    tutorial = files["docs/source/tutorials/models/qwen3-renamed.md"]
    command = next(block for block in tutorial.split("```") if "vllm serve" in block)
    argv = shlex.split(command.replace("\\\n", " ").strip().removeprefix("bash").strip())
    assert argv[argv.index("--hf-overrides") + 1] == OVERRIDE
    report = (out / "report.zh.md").read_text()
    assert "零代码方案" in report and "不是 vLLM 原生注册的 `AdaptBotQwen3LikeForCausalLM` 实现" in report
