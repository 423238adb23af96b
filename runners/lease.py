"""Device lease: two servers never share NPUs (or, on the cpu profile, more than the pool's slots).

One lock file per device under the profile's lease directory, held with `fcntl.flock`, so the lease
works across every worker process of a host and is released by the kernel if a holder dies (no
stale leases after a crash). A lease of N devices takes N currently-free locks, all or nothing.
Waiting polls the cancel flag, so a cancelled job never sits in the queue for devices.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from runners.profile import Profile, expand_home


class LeaseError(RuntimeError):
    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason  # "cancelled" | "timeout" | "too-many"


@dataclass
class Lease:
    devices: list[str]
    _files: list[IO[Any]] = field(default_factory=list, repr=False)

    def release(self) -> None:
        for f in self._files:
            with contextlib.suppress(OSError):
                fcntl.flock(f, fcntl.LOCK_UN)
            f.close()
        self._files.clear()

    def __enter__(self) -> Lease:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def lease_dir(profile: Profile) -> Path:
    raw = expand_home(profile.devices.lease_dir).replace("{profile}", profile.name)
    override = os.environ.get("ADAPT_BOT_LEASE_DIR")
    return Path(override) / profile.name if override else Path(raw)


def try_acquire(directory: Path, pool: list[str], count: int) -> Lease | None:
    """Take `count` free devices now, or nothing."""
    directory.mkdir(parents=True, exist_ok=True)
    held: list[tuple[str, IO[Any]]] = []
    for dev in pool:
        if len(held) == count:
            break
        f = open(directory / f"{dev}.lock", "a+")  # noqa: SIM115 - kept open while leased
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            f.close()
            continue
        f.seek(0)
        f.truncate()
        f.write(f"{os.getpid()}\n")
        f.flush()
        held.append((dev, f))
    if len(held) < count:
        Lease([d for d, _ in held], [f for _, f in held]).release()
        return None
    return Lease([d for d, _ in held], [f for _, f in held])


def acquire(
    profile: Profile,
    count: int,
    *,
    cancel: Any = None,
    progress: Callable[[str], None] | None = None,
    wait_s: float | None = None,
    poll_s: float = 0.25,
) -> Lease:
    """Block until `count` devices of the profile's pool are free (or cancel / timeout)."""
    pool = profile.devices.pool
    if count > len(pool):
        raise LeaseError("too-many", f"{count} devices requested; profile {profile.name} has {len(pool)}")
    directory = lease_dir(profile)
    deadline = time.monotonic() + (profile.timeouts.lease_wait_s if wait_s is None else wait_s)
    last_note = 0.0
    started = time.monotonic()
    while True:
        lease = try_acquire(directory, pool, count)
        if lease is not None:
            return lease
        if cancel is not None and cancel.is_set():
            raise LeaseError("cancelled", "cancelled while waiting for devices")
        now = time.monotonic()
        if now > deadline:
            raise LeaseError(
                "timeout", f"no {count} free device(s) in {profile.name} after {now - started:.0f} s"
            )
        if progress and now - last_note >= 5:
            progress(f"waiting for {count} free device(s) ({now - started:.0f} s)")
            last_note = now
        time.sleep(poll_s)


@contextlib.contextmanager
def leased(profile: Profile, count: int, **kw: Any) -> Iterator[Lease]:
    lease = acquire(profile, count, **kw)
    try:
        yield lease
    finally:
        lease.release()


def plan_parallel(pool_size: int, per_probe: list[int]) -> list[list[int]]:
    """Group probe indexes into waves that fit the pool at once (pure; first-fit in order).

    With a big enough pool every independent probe runs in the first wave on disjoint devices;
    with a small one they run one wave after another.
    """
    waves: list[list[int]] = []
    free: list[int] = []
    for i, need in enumerate(per_probe):
        need = max(1, need)
        for w, left in enumerate(free):
            if need <= left:
                waves[w].append(i)
                free[w] -= need
                break
        else:
            waves.append([i])
            free.append(pool_size - need)
    return waves
