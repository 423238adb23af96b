"""The job's own check run ("adapt-bot / job"): visible from the first stage on, with a Cancel
button while the job runs, updated at every transition, completed with the verdict's conclusion
and rerun buttons.

Which commit carries it (a check run needs a head SHA):
- before the job has a PR: the head of the PR's base branch (`delivery.base_branch`, default
  `main`) as it was when the job first published its check run. That is the commit the PR will
  be based on, and it is pinned: a later push to the base does not move a running job's check.
- once the job has a PR (the draft the real gate opens, or the delivered one): the PR's head.
  When the head changes (the draft's commit replaced by the delivered one, a maintainer's push),
  the run on the old commit is completed as `neutral` ("continued on PR #N") and a new one is
  created on the head, so a commit never shows a stale "in progress".

Desired state, not a log of events: `job_check_spec` computes the run from the job (pure), and
`sync_job_check` acts only on the difference with what it last published (kept in Redis next to
the job: head SHA, run id, digest of the payload). The buttons are `bot.commands.CHECK_ACTIONS`,
read back by bot/behaviours/check_run_actions.py; the run's `external_id` is the job id.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from bot.commands import CANCEL, PREFIX, RERUN_ACCURACY, RERUN_DUMMY, RERUN_REAL, CheckAction
from bot.comments import code_span
from bot.delivery import (
    REQUEST_ERRORS,
    Caller,
    CheckRunSpec,
    CheckStatus,
    base_head,
    check_run_payload,
    direct_call,
    found_run,
    repo_parts,
    status_of,
)
from bot.jobs.machine import rerun_blocker
from bot.jobs.model import Job
from runners.contracts import STAGES, StageResult
from runners.render import render
from runners.verdict import Verdict

log = logging.getLogger(__name__)

JOB_CHECK = "adapt-bot / job"
_ICONS = {"passed": "✅", "skipped": "⏭️", "failed": "❌", "error": "❌", "running": "⏳", "queued": "🕒"}
#: verdict level -> check-run conclusion (a job that serves but is not validated is not a success)
CONCLUSIONS = {"validated": "success", "serves-not-validated": "neutral", "failed": "failure"}
#: buttons of a finished job, the failed stage's own rerun first when it has one (GitHub shows 3)
_RERUNS: tuple[CheckAction, ...] = (RERUN_REAL, RERUN_DUMMY, RERUN_ACCURACY)
#: a failed check-run update is tried again by `bot.tasks.refresh`, this often, this far apart
CHECK_RETRIES = 10
CHECK_RETRY_S = 60.0


def _key(job_id: str) -> str:
    return f"adapt:job:{job_id}:check"


def _duration(s: float | None) -> str:
    if s is None:
        return ""
    return f"{s:.0f} s" if s < 120 else f"{s / 60:.1f} min"


def _ended_at(job: Job) -> str | None:
    """The stage a finished (failed or cancelled) job stopped at."""
    if job.stage:
        return job.stage
    for stage in reversed(STAGES):
        summary = job.stages.get(stage)
        if summary is not None and summary.status not in ("passed", "skipped"):
            return stage
    return None


def conclusion_for(job: Job, verdict: Verdict | None) -> str:
    if job.phase == "cancelled":
        return "cancelled"
    if verdict is not None:
        return CONCLUSIONS.get(verdict.level, "neutral")
    return "failure" if job.phase == "failed" else "neutral"


def actions_for(job: Job) -> tuple[CheckAction, ...]:
    """Cancel while the job runs; afterwards the reruns it would accept (bot.jobs.machine's rule:
    not archived, the stages before passed), the stage it ended at first."""
    if job.active:
        return (CANCEL,)
    able = [a for a in _RERUNS if a.stage is not None and rerun_blocker(job, a.stage) is None]
    ended = _ended_at(job) if job.phase != "succeeded" else None
    first = [a for a in able if a.stage == ended]
    return tuple([*first, *(a for a in able if a not in first)])[:3]


def job_check_spec(
    job: Job, verdict: Verdict | None, *, details_url: str | None = None, moved_to: str | None = None
) -> CheckRunSpec:
    """The job's check run as it should read now. Pure. `moved_to` ("PR #7 at abc123"): the run
    left behind on a commit that is no longer the job's head."""
    from runners.artifacts.wording import verdict_headline

    rows = []
    for name in STAGES:
        summary = job.stages.get(name)
        if summary is None:
            continue
        rows.append(
            {
                "stage": name,
                "icon": _ICONS.get(summary.status, "•"),
                "status": summary.status,
                "reason": summary.reason,
                "attempt": summary.attempt,
                "duration": _duration(summary.duration_s),
            }
        )
    verdict_line = verdict_headline(verdict) if verdict is not None else None
    stage = job.stage if job.active else _ended_at(job)
    position = STAGES.index(job.stage) + 1 if job.stage in STAGES else 0
    ctx: dict[str, Any] = {
        "phase": job.phase,
        "stage": stage,
        "position": position,
        "total": len(STAGES),
        "cancel_requested": job.cancel_requested,
        "verdict_line": verdict_line,
        "moved_to": moved_to,
    }
    title = render("checks/job_title.txt.j2", **ctx).strip()
    summary_text = render(
        "checks/job.md.j2",
        rows=rows,
        message=job.message,
        next_step=None if job.active else job.next_step,
        details_url=details_url,
        **ctx,
    ).strip()
    if moved_to is not None:
        return CheckRunSpec(JOB_CHECK, "completed", "neutral", title, summary_text, (), details_url)
    if job.active:
        status: CheckStatus = "queued" if job.phase == "queued" else "in_progress"
        return CheckRunSpec(JOB_CHECK, status, None, title, summary_text, actions_for(job), details_url)
    return CheckRunSpec(
        JOB_CHECK,
        "completed",
        conclusion_for(job, verdict),
        title,
        summary_text,
        actions_for(job),
        details_url,
    )


@dataclass(frozen=True)
class Published:
    """What `sync_job_check` last put on GitHub for a job."""

    sha: str
    run_id: int
    digest: str


def _digest(data: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:16]


def published(redis: Any, job_id: str) -> Published | None:
    raw = redis.get(_key(job_id))
    if not raw:
        return None
    doc = json.loads(raw)
    return Published(str(doc["sha"]), int(doc["run_id"]), str(doc["digest"]))


def _remember(redis: Any, job_id: str, p: Published) -> None:
    redis.set(_key(job_id), json.dumps(p.__dict__), ex=90 * 24 * 3600)


def head_sha(gh: Any, job: Job, *, base_branch: str, pinned: str | None, call: Caller) -> str | None:
    """The commit the job's check run belongs on now (see the module docstring); None when the
    base branch does not exist (an empty repository): no check run then, and the log says why."""
    owner, name = repo_parts(job.repo)
    if job.pr_number is not None:
        number = job.pr_number
        pr = call(f"GET pull {number}", lambda: gh.rest.pulls.get(owner, name, number)).parsed_data
        return str(pr.head.sha)
    if pinned is not None:
        return pinned
    try:
        return base_head(gh, job.repo, base_branch, call=call)
    except REQUEST_ERRORS as exc:
        if status_of(exc) in (404, 409):  # no such branch / empty repository
            log.info("job %s: no %s branch on %s, so no check run yet", job.id, base_branch, job.repo)
            return None
        raise


def sync_job_check(
    gh: Any,
    redis: Any,
    job: Job,
    results: Mapping[str, StageResult],
    *,
    base_branch: str,
    details_url: str | None,
    call: Caller,
) -> Published | None:
    """Make the job's check run on GitHub match `job_check_spec` (create, move, update or nothing)."""
    from bot.comments import verdict_for

    owner, name = repo_parts(job.repo)
    before = published(redis, job.id)
    sha = head_sha(gh, job, base_branch=base_branch, pinned=before.sha if before else None, call=call)
    if sha is None:
        return None
    verdict = verdict_for(job, results)
    data = check_run_payload(job_check_spec(job, verdict, details_url=details_url), job.id)
    digest = _digest(data)
    if before is not None and before.sha == sha:
        if before.digest == digest:
            return before
        run_id = before.run_id
        call(
            f"PATCH check-run {JOB_CHECK}",
            lambda: gh.rest.checks.update(owner, name, run_id, data=data),
            mutating=True,
        )
        now = Published(sha, run_id, digest)
        _remember(redis, job.id, now)
        return now
    if before is not None:  # the job's head moved: close the run left on the old commit
        where = f"PR #{job.pr_number} at {sha[:12]}" if job.pr_number else sha[:12]
        old = check_run_payload(job_check_spec(job, verdict, details_url=details_url, moved_to=where), job.id)
        old_id = before.run_id
        call(
            f"PATCH check-run {JOB_CHECK} (moved)",
            lambda: gh.rest.checks.update(owner, name, old_id, data=old),
            mutating=True,
        )
    created = call(
        f"POST check-run {JOB_CHECK}",
        lambda: gh.rest.checks.create(owner, name, data={**data, "head_sha": sha}),
        mutating=True,
        marker_check=lambda: found_run(gh, owner, name, sha, JOB_CHECK, job.id),
    )
    now = Published(sha, int(created.parsed_data.id), digest)
    _remember(redis, job.id, now)
    return now


def refresh_job_check(deps: Any, gh: Any, job: Job) -> Published | None:
    """bot.intents.refresh_status's hook: never lets a check-run hiccup stop the status comment
    (the next transition publishes the desired state again)."""
    from bot import repo_config
    from runners.links import job_url

    try:
        cfg = repo_config.load(gh, job.repo, deps.settings, deps.redis).config
        base = getattr(cfg.delivery, "base_branch", None) or "main"
        return sync_job_check(
            gh.gh,
            deps.redis,
            job,
            deps.store.results(job.id),
            base_branch=base,
            details_url=job_url(deps.settings.public_url, job.id),
            call=gh.call,
        )
    except Exception:
        log.warning("job %s: the job check run was not updated", job.id, exc_info=True)
        # the job may not change again (a finished one never does): look again later, a few times
        tries = int(deps.redis.incr(f"{_key(job.id)}:retries"))
        deps.redis.expire(f"{_key(job.id)}:retries", 3600)
        if tries <= CHECK_RETRIES:
            deps.queue.control("bot.tasks.refresh", job.id, countdown=CHECK_RETRY_S)
        return None


def answer_press(
    gh: Any, repo: str, detail: Mapping[str, Any], *, job_id: str | None, sender: str | None
) -> bool:
    """Answer a button press that has nowhere else to go: the run no PR lists (the base branch head)
    and no job behind it (gone from the store, or another repository's). The run's own output says
    so (templates/checks/press_*.j2) and its buttons go; a run still open is completed as neutral,
    since nothing will ever update it again. False when the press carried no run id."""
    run_id = detail.get("check_run_id")
    if not isinstance(run_id, int):
        return False
    owner, name = repo_parts(repo)
    # the job id comes from the payload (the run's external_id): shown as code, never as markdown
    ctx = {"job": code_span(job_id, 80) if job_id else None, "sender": sender, "prefix": PREFIX}
    data: dict[str, Any] = {
        "output": {
            "title": render("checks/press_title.txt.j2", **ctx).strip()[:255],
            "summary": render("checks/press_summary.md.j2", **ctx).strip(),
        },
        "actions": [],
    }
    if detail.get("check_run_status") != "completed":
        data.update(status="completed", conclusion="neutral")
    call: Caller = getattr(gh, "call", None) or direct_call
    call(
        f"PATCH check-run {run_id} (press answer)",
        lambda: gh.gh.rest.checks.update(owner, name, run_id, data=data),
        mutating=True,
    )
    return True
