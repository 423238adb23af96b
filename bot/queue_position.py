"""Where a job waits for a runner: "position N of M in pool P" (pure, from stored jobs).

A job waits when its current stage is a runner stage that was sent (`machine.begin` marks it
`queued`) and no runner has said `started` yet (the pool's workers are busy). Each pool's Celery
queue is first in, first out, so the jobs ahead of it are the waiting jobs of the same pool whose
stage was queued earlier (ties broken by job id, the same order everywhere). The status comment
shows it on every refresh; bot.tasks.stage_started refreshes the others of the pool when one
starts, so their positions move up.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

#: stages the control plane runs itself: never in a pool's queue
CONTROL_STAGES = frozenset({"deliver"})
_EPOCH = dt.datetime.min.replace(tzinfo=dt.UTC)


@dataclass(frozen=True)
class QueuePosition:
    position: int
    of: int
    pool: str
    stage: str


def _queued_at(job: Any) -> tuple[dt.datetime, str] | None:
    """(when its stage was queued, id) if the job waits for a runner, else None."""
    stage = job.stage
    if not job.active or job.phase != "running" or stage is None or stage in CONTROL_STAGES:
        return None
    summary = job.stages.get(stage)
    if summary is None or summary.status != "queued":
        return None
    return (summary.started_at or _EPOCH, job.id)


def waits(job: Any) -> bool:
    """The job's current stage waits for a runner of its pool (cheap: decide before scanning)."""
    return _queued_at(job) is not None


def waiting(jobs: Iterable[Any], pool: str) -> list[Any]:
    """The waiting jobs of `pool`, first in line first."""
    keyed = [(k, j) for j in jobs if j.pool == pool and (k := _queued_at(j)) is not None]
    return [j for _, j in sorted(keyed, key=lambda kj: kj[0])]


def position(job: Any, jobs: Iterable[Any]) -> QueuePosition | None:
    """The job's place in its pool's line, or None when it does not wait (running, ended, ...).

    `jobs` is what the store holds (the job itself may be among them or not; its own record wins)."""
    if _queued_at(job) is None:
        return None
    others = [j for j in jobs if j.id != job.id]
    line = waiting([*others, job], job.pool)
    ids = [j.id for j in line]
    return QueuePosition(ids.index(job.id) + 1, len(ids), job.pool, str(job.stage))
