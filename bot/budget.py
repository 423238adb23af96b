"""The per-repository budget of device-hours per job, held before the first stage that holds devices.

`budget: {device_hours_per_job: N}` in `.github/adapt-bot.yml`. The estimate is
bot.preflight.estimate_for (checkpoint bytes and the profile's documented load bandwidth, compile
time and start overhead; runners.accounting.estimate_job). Two places hold a job to it:
- a hub model's pre-flight (bot.tasks.preflight), before even the runner's analyze;
- every job when its dummy gate is about to be sent (bot.intents.enqueue_stage -> `stop_if_over`),
  from the runner's own analysis: also `/models/...` checkpoints, and `/adapt rerun analyze` /
  `rerun dummy-gate` after the budget was raised. Reruns of later stages are not held to it.
A job over the budget fails at that stage with reason `over-budget`, the estimate, the budget and
how to raise it; no runner gets the stage. When the budget cannot be judged (no analysis, GitHub
unreachable for the config) the stage is sent: the budget never blocks a job it cannot price.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any

from bot import repo_config
from bot.jobs import machine
from bot.jobs.machine import NoChange
from bot.jobs.model import StageSummary
from bot.preflight import BUDGET_HOWTO, BudgetVerdict, JobPlan, budget_verdict

log = logging.getLogger(__name__)

#: the first stage that holds devices: the budget is checked before it is sent
HELD_STAGE = "dummy-gate"


def verdict_for(deps: Any, job: Any) -> BudgetVerdict | None:
    """This job's estimate against its repository's budget, from the stored analysis; None when
    there is no budget or nothing to estimate from."""
    analysis = deps.store.get_result(job.id, "analyze")
    if analysis is None or analysis.status != "passed" or not analysis.data:
        return None
    gh = deps.github.installation(job.installation_id or deps.github.installation_id(job.repo))
    budget = repo_config.load(gh, job.repo, deps.settings, deps.redis).config.budget.device_hours_per_job
    if budget is None:
        return None
    o = job.options
    return budget_verdict(analysis.data, JobPlan(o.profile, o.hardware, o.tp, budget))


def estimate_of(store: Any, job: Any) -> BudgetVerdict | None:
    """The job's estimate from its stored analysis, for the status comment (no GitHub call, no
    budget): shown from when the runner's analysis is in, before the first device stage runs."""
    analysis = store.get_result(job.id, "analyze")
    if analysis is None or analysis.status != "passed" or not analysis.data:
        return None
    o = job.options
    return budget_verdict(analysis.data, JobPlan(o.profile, o.hardware, o.tp, None))


def stop_if_over(deps: Any, job: Any) -> bool:
    """Fail the job's held stage as `over-budget` instead of sending it; True when it did."""
    stage, attempt = job.stage, job.attempts.get(job.stage or "", 1)
    if stage != HELD_STAGE:
        return False
    if deps.redis.exists(f"adapt:job:{job.id}:enqueued:{stage}:{attempt}"):  # JobStore.claim_enqueue's
        return False  # already sent: a repeated enqueue never fails a stage a runner may hold
    try:
        verdict = verdict_for(deps, job)
    except Exception:  # GitHub or the config unreachable: send the stage (see the module doc)
        log.warning("job %s: budget not checked", job.id, exc_info=True)
        return False
    if verdict is None or not verdict.over:
        return False
    summary = StageSummary(
        status="failed",
        attempt=attempt,
        reason="over-budget",
        diagnosis=f"not started: {verdict.explain()}",
        next_step=f"{BUDGET_HOWTO}, then `/adapt rerun {stage}`.",
    )
    with contextlib.suppress(NoChange):
        deps.store.update(job.id, lambda j: machine.finish(j, stage, attempt, summary))
    deps.queue.control("bot.tasks.report_failure", job.id)
    deps.queue.control("bot.tasks.refresh", job.id)
    log.info("job %s: %s not sent: %s", job.id, stage, verdict.explain())
    return True
