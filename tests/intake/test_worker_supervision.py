"""`adapt-bot worker` keeps its Celery worker alive: a crashed child is restarted (real processes),
a clean exit or a stop signal ends it, a worker that keeps dying is given up on; a restarted control
worker re-arms the watch of every running job."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from bot.cli import worker as cmd_worker
from tests.intake.conftest import queued
from tests.intake.test_runner_task import started_job

REPO_ROOT = Path(__file__).resolve().parents[2]


def flaky_child(tmp_path: Path, crashes: int) -> list[str]:
    """A child that exits 3 on its first `crashes` runs, then 0; it counts its runs in a file."""
    counter = tmp_path / "runs"
    code = (
        "import pathlib, sys\n"
        f"p = pathlib.Path({str(counter)!r})\n"
        "n = int(p.read_text()) + 1 if p.exists() else 1\n"
        "p.write_text(str(n))\n"
        f"sys.exit(3 if n <= {crashes} else 0)\n"
    )
    return [sys.executable, "-c", code]


def test_a_child_that_ends_by_itself_is_restarted_with_backoff(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Crashes (exit 3) and an unrequested clean exit (Celery exits 0 after an "Unrecoverable
    error") both get a new worker; the cap ends it."""
    monkeypatch.setattr(cmd_worker, "MAX_RESTARTS", 3)
    delays: list[float] = []
    assert cmd_worker.supervise(flaky_child(tmp_path, 2), sleep=delays.append) == 0
    assert (tmp_path / "runs").read_text() == "4"  # 2 crashes + 2 clean exits, then given up
    assert delays == [1.0, 2.0, 4.0]  # backoff between restarts


def test_a_child_that_keeps_dying_is_given_up(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cmd_worker, "MAX_RESTARTS", 2)
    assert cmd_worker.supervise(flaky_child(tmp_path, 100), sleep=lambda _s: None) == 3
    assert (tmp_path / "runs").read_text() == "3"


def test_sigterm_stops_the_supervisor_and_its_child(tmp_path: Path) -> None:
    script = (
        "import sys, subprocess\n"
        "from bot.cli import worker as cmd_worker\n"
        "sys.exit(cmd_worker.supervise([sys.executable, '-c', 'import time; time.sleep(60)']))\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=REPO_ROOT)
    time.sleep(1.5)
    proc.terminate()
    assert proc.wait(15) != 0  # the child died of the forwarded SIGTERM; no restart
    out = subprocess.run(["pgrep", "-f", "time.sleep\\(60\\)"], capture_output=True, text=True)
    assert out.stdout.strip() == ""


def test_child_gets_the_same_worker_options() -> None:
    parser = __import__("argparse").ArgumentParser()
    cmd_worker.add_arguments(parser)
    args = parser.parse_args(["--control", "--concurrency", "2"])
    assert cmd_worker.child_args(args) == [
        "--control", "--concurrency", "2", "--loglevel", "info", "--no-supervise",
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        ([], "give --pool POOL"),
        (["--control", "--pool", "cpu"], "separate processes"),
        (["--pool", "cpu", "--pool", "a2-8"], "one --pool per runner worker"),
    ],
)
def test_a_runner_worker_serves_one_pool_and_never_the_control_queue(argv: list[str], says: str) -> None:
    parser = __import__("argparse").ArgumentParser()
    cmd_worker.add_arguments(parser)
    with pytest.raises(SystemExit, match=says):
        cmd_worker.main(parser.parse_args(argv))


def test_a_runner_process_loads_no_control_plane_code() -> None:
    """What a runner worker imports to run a stage: runners/ only — no bot module, no githubkit."""
    code = (
        "import sys, runners.host.worker, runners.host.task, runners.pipeline, runners.stages;"
        "from runners.stages import stage_function;"
        "[stage_function(s) for s in ('analyze', 'dummy-gate', 'real-gate', 'features', 'capacity',"
        " 'accuracy', 'artifacts')];"
        "bad = sorted(m for m in sys.modules if m == 'bot' or m.startswith(('bot.', 'githubkit')));"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO_ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_reconcile_rearms_running_jobs(deps: Any) -> None:
    import bot.tasks

    job = started_job(deps)
    assert bot.tasks.reconcile() == [f"{job.id}:analyze"]
    assert ("bot.tasks.watch", [job.id, "analyze", 1], {}) in queued(deps.redis, "control")
