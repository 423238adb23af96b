"""The job state machine: pure functions Job -> Job.

States: queued -> running:<stage> -> ... -> running:deliver -> succeeded, or failed:<stage>,
cancelled, waiting (for a human). A transition that does not apply to the job as it is now raises
`NoChange` (a redelivered task or webhook: nothing to do) or `TransitionError` (a request that
cannot be honoured: the message goes to the user). Callers apply them with compare-and-set.
"""

from __future__ import annotations

import datetime as dt

from bot.jobs.model import Job, StageSummary
from runners.contracts import STAGES, utcnow


class NoChange(Exception):
    """The transition was already applied (or is stale): idempotent no-op."""


class TransitionError(Exception):
    """The request is not possible in the job's current state; the message says why."""


def _touch(job: Job, now: dt.datetime | None) -> Job:
    job.updated_at = now or utcnow()
    job.version += 1
    return job


def next_stage(stage: str) -> str | None:
    i = STAGES.index(stage)
    return STAGES[i + 1] if i + 1 < len(STAGES) else None


def begin(job: Job, stage: str, now: dt.datetime | None = None) -> Job:
    """Queue `stage` as the job's current stage (the attempt number is allocated here)."""
    if stage not in STAGES:
        raise TransitionError(f"unknown stage {stage!r}")
    if not job.active:
        raise NoChange(f"job {job.id} is {job.state}")
    if job.state == f"running:{stage}":
        raise NoChange(f"{stage} already running")
    job = job.model_copy(deep=True)
    job.attempts[stage] = job.attempts.get(stage, 0) + 1
    job.state = f"running:{stage}"
    job.stages[stage] = StageSummary(status="queued", attempt=job.attempts[stage], started_at=now or utcnow())
    job.message = job.next_step = None
    return _touch(job, now)


def mark_started(job: Job, stage: str, attempt: int, now: dt.datetime | None = None) -> Job:
    """A runner picked the stage up (the status comment then shows how long it has run)."""
    if job.state != f"running:{stage}" or job.attempts.get(stage) != attempt:
        raise NoChange("stale start")
    current = job.stages.get(stage)
    if current is not None and current.status == "running":
        raise NoChange("already marked running")
    job = job.model_copy(deep=True)
    job.stages[stage] = StageSummary(status="running", attempt=attempt, started_at=now or utcnow())
    return _touch(job, now)


def finish(job: Job, stage: str, attempt: int, result: StageSummary, now: dt.datetime | None = None) -> Job:
    """Record a stage's result and move on: next stage, failed:<stage>, or cancelled."""
    if job.state != f"running:{stage}" or job.attempts.get(stage) != attempt:
        raise NoChange(f"result of {stage} attempt {attempt} is stale (job is {job.state})")
    job = job.model_copy(deep=True)
    job.stages[stage] = result
    ok = result.status in ("passed", "skipped")
    if job.cancel_requested:
        job.state = "cancelled"
        job.message = f"Cancelled during {stage}."
        job.finished_at = now or utcnow()
    elif not ok:
        job.state = f"failed:{stage}"
        job.message = result.diagnosis or f"{stage} {result.status}"
        job.next_step = result.next_step or f"/adapt rerun {stage}"
        job.finished_at = now or utcnow()
    else:
        nxt = next_stage(stage)
        if nxt is None:
            job.state = "succeeded"
            job.finished_at = now or utcnow()
        else:
            return begin(_touch(job, now), nxt, now)
    return _touch(job, now)


def wait(job: Job, message: str, next_step: str | None = None, now: dt.datetime | None = None) -> Job:
    """Park the job for a human (e.g. delivery not possible yet); reruns and cancel still work."""
    if not job.active:
        raise NoChange(f"job is {job.state}")
    job = job.model_copy(deep=True)
    job.state = "waiting"
    job.message, job.next_step = message, next_step
    return _touch(job, now)


def succeed(
    job: Job, stage: str = "deliver", pr_number: int | None = None, now: dt.datetime | None = None
) -> Job:
    if job.state == "succeeded":
        raise NoChange("already succeeded")
    if job.state != f"running:{stage}":
        raise NoChange(f"job is {job.state}, not running {stage}")
    job = job.model_copy(deep=True)
    prev = job.stages.get(stage)
    job.stages[stage] = StageSummary(
        status="passed",
        attempt=job.attempts.get(stage, 1),
        started_at=prev.started_at if prev else None,
        finished_at=now or utcnow(),
    )
    if pr_number is not None:
        job.pr_number = pr_number
    job.state = "succeeded"
    job.finished_at = now or utcnow()
    return _touch(job, now)


def request_cancel(job: Job, now: dt.datetime | None = None) -> Job:
    """Queued or waiting: cancelled at once. Running: flag it; the stage stops and reports."""
    if not job.active:
        raise TransitionError(f"job {job.id} already ended ({job.state}); nothing to cancel")
    if job.cancel_requested:
        raise NoChange("cancel already requested")
    job = job.model_copy(deep=True)
    if job.phase == "running":
        job.cancel_requested = True
        job.message = f"Cancel requested; stopping {job.stage}."
        stage = job.stage or ""
        if stage == "deliver" or job.stages.get(stage, StageSummary(status="queued")).status == "queued":
            # nothing is executing yet (or delivery is a short control-plane step): end now
            job.state = "cancelled"
            job.finished_at = now or utcnow()
            job.message = f"Cancelled before {stage} ran."
    else:
        job.state = "cancelled"
        job.finished_at = now or utcnow()
        job.message = "Cancelled."
    return _touch(job, now)


def rerun_blocker(job: Job, stage: str) -> str | None:
    """Why `stage` cannot be run again now, or None: the rule `rerun` enforces, and the one the
    check run's Rerun buttons follow (a button that would be refused is not offered)."""
    if stage not in STAGES:
        return f"unknown stage {stage!r}"
    if job.archived:
        return (
            f"job {job.id} is archived (its pull request was {'merged' if job.pr_merged else 'closed'}); "
            "start a new job on the issue"
        )
    if job.phase == "running":
        return f"{job.stage} is still running; `/adapt cancel` first or wait for it"
    earlier = STAGES[: STAGES.index(stage)]
    missing = [
        s for s in earlier if job.stages.get(s) is None or job.stages[s].status not in ("passed", "skipped")
    ]
    if missing:
        return f"{stage} needs {missing[0]} to have passed first; `/adapt rerun {missing[0]}`"
    return None


def rerun(job: Job, stage: str, now: dt.datetime | None = None, pushed_head: str | None = None) -> Job:
    """Run `stage` again and everything after it, keeping earlier results. `pushed_head`: the PR
    head a person pushed, which this rerun re-gates (delivery then reports on it, commits nothing)."""
    if (why := rerun_blocker(job, stage)) is not None:
        raise TransitionError(why)
    job = job.model_copy(deep=True)
    for s in STAGES[STAGES.index(stage) :]:
        job.stages.pop(s, None)
    job.cancel_requested = False
    job.finished_at = None
    job.state = "queued"
    if pushed_head:
        job.pr_head_sha = pushed_head
    return begin(job, stage, now)


def pr_closed(job: Job, merged: bool, now: dt.datetime | None = None) -> Job:
    if job.pr_merged is not None and job.pr_merged == merged:
        raise NoChange("already recorded")
    job = job.model_copy(deep=True)
    job.pr_merged = merged
    return _touch(job, now)


def archive(job: Job, merged: bool, now: dt.datetime | None = None) -> Job:
    """The PR's life ended (merged or closed unmerged): record how and archive the job, once."""
    if job.archived:
        raise NoChange("already archived")
    job = job.model_copy(deep=True)
    job.pr_merged = merged
    job.archived = True
    return _touch(job, now)
