"""Device lease: real flock files; disjoint devices; waves for parallel probes."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from runners.context import LocalCancel
from runners.lease import LeaseError, acquire, lease_dir, plan_parallel, try_acquire
from runners.profile import load_profile


@pytest.fixture
def a2(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):  # type: ignore[no-untyped-def]
    monkeypatch.setenv("ADAPT_BOT_LEASE_DIR", str(tmp_path / "leases"))
    return load_profile("ascend-a2")


def test_leases_are_disjoint_and_released(a2) -> None:  # type: ignore[no-untyped-def]
    first = acquire(a2, 4, wait_s=1)
    second = acquire(a2, 4, wait_s=1)
    assert set(first.devices).isdisjoint(second.devices)
    assert len(first.devices) == len(second.devices) == 4
    with pytest.raises(LeaseError) as exc:
        acquire(a2, 1, wait_s=0.3)
    assert exc.value.reason == "timeout"
    first.release()
    third = acquire(a2, 2, wait_s=1)
    assert set(third.devices) <= set(first.devices)
    second.release()
    third.release()


def test_lease_held_by_another_process_and_freed_when_it_dies(a2) -> None:  # type: ignore[no-untyped-def]
    d = lease_dir(a2)
    d.mkdir(parents=True, exist_ok=True)
    code = (
        "import fcntl,sys,time\n"
        f"fs=[open('{d}/%s.lock' % i,'a+') for i in range(8)]\n"
        "[fcntl.flock(f, fcntl.LOCK_EX) for f in fs]\n"
        "print('held', flush=True); time.sleep(60)\n"
    )
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        assert try_acquire(d, a2.devices.pool, 1) is None
        holder.kill()
        holder.wait(5)
        lease = acquire(a2, 8, wait_s=2)  # the kernel dropped the dead holder's locks
        assert len(lease.devices) == 8
        lease.release()
    finally:
        holder.kill()
        holder.wait(5)


def test_waiting_for_a_lease_stops_on_cancel(a2) -> None:  # type: ignore[no-untyped-def]
    held = acquire(a2, 8, wait_s=1)
    cancel = LocalCancel()
    threading.Timer(0.3, cancel.set).start()
    t0 = time.monotonic()
    with pytest.raises(LeaseError) as exc:
        acquire(a2, 1, cancel=cancel, wait_s=30)
    assert exc.value.reason == "cancelled" and time.monotonic() - t0 < 2
    held.release()


def test_too_many_devices(a2) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(LeaseError) as exc:
        acquire(a2, 9, wait_s=0)
    assert exc.value.reason == "too-many"


def test_plan_parallel() -> None:
    assert plan_parallel(8, [2, 2, 4]) == [[0, 1, 2]]  # all at once on disjoint devices
    assert plan_parallel(2, [1, 1, 1]) == [[0, 1], [2]]
    assert plan_parallel(1, [1, 1]) == [[0], [1]]  # one after another
    assert plan_parallel(4, [4, 1, 3]) == [[0], [1, 2]]
    assert plan_parallel(4, []) == []
