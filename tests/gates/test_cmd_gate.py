"""`adapt-bot gate` as a user runs it (a real subprocess of the console script)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def gate(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bot.cli", "gate", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
        check=False,
    )


def test_unknown_profile_exit_2_lists_profiles(tmp_path: Path) -> None:
    p = gate(str(tmp_path), "--profile", "nope", "--stage", "dummy-gate", cwd=tmp_path)
    assert p.returncode == 2
    assert "unknown runner profile 'nope'" in p.stderr and "ascend-a2" in p.stderr and "cpu" in p.stderr


def test_bad_model_reference_exit_2(tmp_path: Path) -> None:
    p = gate("../../etc; rm -rf /", "--stage", "dummy-gate", cwd=tmp_path)
    assert p.returncode == 2 and p.stdout == ""


def test_real_gate_without_weights_fails_before_serving(tmp_path: Path) -> None:
    model = tmp_path / "cfg-only"
    model.mkdir()
    (model / "config.json").write_text(
        json.dumps({"architectures": ["LlamaForCausalLM"], "model_type": "llama"})
    )
    work = tmp_path / "work" / "job-x"
    p = gate(str(model), "--stage", "real-gate", "--json", "--work", str(work), cwd=tmp_path)
    assert p.returncode == 1, p.stderr
    result = json.loads(p.stdout)
    assert (
        result["stage"] == "real-gate" and result["status"] == "failed" and result["reason"] == "no-weights"
    )
    assert (work / "results" / "real-gate.json").is_file()
    # the readable form renders from the template
    p2 = gate(str(model), "--stage", "real-gate", "--work", str(work), cwd=tmp_path)
    assert p2.returncode == 1
    assert p2.stdout.startswith("real-gate: FAILED (no-weights)")
    assert "Result JSON:" in p2.stdout
