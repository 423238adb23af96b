"""Gate-test helpers: a StageContext on a tmp workspace, and an orphan check after EVERY test.

The orphan check reads the real process table (/proc): any process started by our serve lifecycle
(it carries ADAPT_BOT_SERVE_ID in its environment) that still mentions this test's tmp directory
in its environment or command line is a leak, and fails the test.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from runners.context import LocalCancel, StageContext
from runners.contracts import JobOptions
from runners.profile import Profile, load_profile
from runners.serve import SERVE_TAG_VAR
from runners.workspace import Workspace


def our_processes(marker: str) -> list[tuple[int, str]]:
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            env = Path(f"/proc/{entry.name}/environ").read_bytes()
            cmd = Path(f"/proc/{entry.name}/cmdline").read_bytes()
            stat = Path(f"/proc/{entry.name}/stat").read_text()
        except OSError:
            continue
        if stat.rsplit(")", 1)[-1].split()[0] == "Z":
            continue
        if SERVE_TAG_VAR.encode() in env and (marker.encode() in env or marker.encode() in cmd):
            found.append((int(entry.name), cmd.replace(b"\0", b" ").decode(errors="replace")[:200]))
    return found


@pytest.fixture(autouse=True)
def no_orphans(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    # leases of the tests live in the test's tmp dir (a lease never outlives the test)
    monkeypatch.setenv("ADAPT_BOT_LEASE_DIR", str(tmp_path / "leases"))
    yield
    deadline = time.monotonic() + 3
    left = our_processes(str(tmp_path))
    while left and time.monotonic() < deadline:
        time.sleep(0.1)
        left = our_processes(str(tmp_path))
    assert not left, f"server processes left behind: {left}"


def make_ctx(
    tmp_path: Path,
    model: Path,
    profile: Profile | str = "cpu",
    *,
    cancel: LocalCancel | None = None,
    **options: Any,
) -> StageContext:
    prof = load_profile(profile) if isinstance(profile, str) else profile
    ws = Workspace.for_job("job1", tmp_path / "work")
    progress_lines: list[str] = []
    ctx = StageContext(
        job_id="job1",
        options=JobOptions(model=model.name, local_path=str(model), profile=prof.name, **options),
        model_path=model,
        workspace=ws,
        profile=prof,
        cancel=cancel or LocalCancel(),
        progress=progress_lines.append,
    )
    ctx.progress_lines = progress_lines  # type: ignore[attr-defined]
    return ctx


def shell_profile(script: str, *, ready_s: float = 1.5, ladder: bool = False, **extra: Any) -> Profile:
    """A profile whose "server" is /bin/sh running a constant script (a real process group).

    $0 is the model path and $1 the port, as a vllm argv would carry them."""
    data: dict[str, Any] = {
        "name": "shell",
        "platform": "cpu",
        "version": "0",
        "vllm": {"default": "/bin/sh"},
        "serve": {
            "argv": ["{vllm}", "-c", script, "{model}", "{port}"],
            "env": {"MARK": "{workspace}"},
            "cwd": "{workspace}",
        },
        "devices": {"pool": ["s0", "s1"], "per_job": 1},
        "timeouts": {"ready_s": ready_s, "teardown_grace_s": 2, "poll_s": 0.1, "lease_wait_s": 5},
        "ladder": {"enabled": ladder},
    }
    data.update(extra)
    return Profile.model_validate(data)
