"""`adapt-bot run` input validation, through the real console script (argv, exit code, message)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ADAPT_BOT = [sys.executable, "-m", "bot.cli"]


def run_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*ADAPT_BOT, *args], capture_output=True, text=True, timeout=60, cwd=cwd)


@pytest.mark.parametrize(
    ("model", "says"),
    [
        ("../../etc/passwd", "characters a model id cannot have"),
        ("a;rm -rf /", "characters a model id cannot have"),
        ("https://evil.example/x/y", "not a huggingface.co"),
    ],
)
def test_hostile_model_refused_before_anything_runs(tmp_path: Path, model: str, says: str) -> None:
    repo = tmp_path / "repo"
    (repo / ".git").mkdir(parents=True)
    out = tmp_path / "out"
    proc = run_cli("run", model, "--repo", str(repo), "--out", str(out))
    assert proc.returncode == 2
    assert says in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1  # one-line reason
    assert not out.exists()  # nothing ran


def test_bad_options_refused(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    (repo / ".git").mkdir(parents=True)
    proc = run_cli("run", "Qwen/Qwen3-8B", "--repo", str(repo), "--features", "mtp,warp-drive")
    assert proc.returncode == 2
    assert "unknown feature(s) warp-drive" in proc.stderr
    proc = run_cli("run", "Qwen/Qwen3-8B", "--repo", str(repo), "--tp", "0")
    assert proc.returncode == 2 and "--tp must be a power of two from 1 to 64" in proc.stderr


def test_repo_must_be_a_checkout(tmp_path: Path) -> None:
    proc = run_cli("run", "Qwen/Qwen3-8B", "--repo", str(tmp_path))
    assert proc.returncode == 2
    assert "is not a git checkout" in proc.stderr


def test_help_lists_every_subcommand() -> None:
    proc = run_cli("--help")
    assert proc.returncode == 0
    for name in ("serve", "worker", "run", "demo", "analyze", "gate"):
        assert name in proc.stdout
