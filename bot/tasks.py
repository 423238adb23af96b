"""Control-plane task bodies (queue `control`). Thin: load ids, call the logic, report.

Registered with retry policy in `bot.celery_app`; callable directly in tests. Each is idempotent:
a redelivered message finds the transition already applied and changes nothing.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
from typing import Any

from bot import comments, intents, quotas, repo_config
from bot.config import get_settings
from bot.events import Intent
from bot.intents import Deps
from bot.jobs import machine
from bot.jobs.logs import from_settings
from bot.jobs.machine import NoChange
from bot.jobs.model import Job, StageSummary
from bot.jobs.store import JobStore
from runners.links import job_url

log = logging.getLogger(__name__)

INTENT_TTL_S = 7 * 24 * 3600


def intent_key(intent_id: str) -> str:
    return f"adapt:intent:{intent_id}"


@functools.cache
def deps() -> Deps:
    """Per-process dependencies, built on first use (never at import)."""
    from bot.celery_app import CeleryQueue, get_celery
    from bot.github import GitHubClient
    from bot.redis_conn import client

    settings = get_settings()
    r = client(settings)
    return Deps(
        settings=settings,
        redis=r,
        store=JobStore(r, from_settings(settings)),
        github=GitHubClient(settings, r),
        queue=CeleryQueue(get_celery(), settings),
    )


def apply_intent(intent_ids: str, arm: str | None = None) -> list[str]:
    """Apply the intents of one delivery (space-separated ids), in the order they were written:
    `/adapt cancel` then `/adapt run` in one comment must not run the other way round.

    Exactly once (bot.ledger): a copy whose `arm` token is no longer current (the entry was
    re-armed after a restart) does nothing; one lock per delivery; intents already applied are
    skipped. A transient error (GitHub 5xx, timeout, rate limit; Redis) propagates and Celery
    retries the task (`retry_intent_in`); a permanent one (404 repo gone, 403 not installed, 422)
    drops that intent with a log line saying why, and the others still run.
    """
    from bot import ledger

    d = deps()
    book = ledger.Ledger(d.redis)
    if arm is not None and not book.is_current(intent_ids, arm):
        log.info("intents %s: a re-armed copy owns them; this older message does nothing", intent_ids)
        return ["stale"]
    outcomes: list[str] = []
    with book.lock(intent_ids, ttl_s=d.settings.intent_lock_ttl_s):
        for intent_id in intent_ids.split():
            if book.state(intent_id) in (ledger.APPLIED, ledger.DROPPED):
                outcomes.append("already applied")
                continue
            raw = d.redis.get(intent_key(intent_id))
            if raw is None:
                log.warning("intent %s expired or unknown", intent_id)
                outcomes.append("missing")
                continue
            intent = Intent.model_validate_json(raw)
            where = f"{intent.kind} via {intent.via} on {intent.repo}#{intent.issue}"
            try:
                outcome = intents.apply_intent(intent, d)
            except Exception as exc:
                if ledger.is_transient(exc):
                    raise
                log.error(
                    "intent %s (%s) dropped for good: %s: %s", intent_id, where, type(exc).__name__, exc
                )
                book.mark(intent_id, ledger.DROPPED)
                outcomes.append(f"dropped: {exc}")
                continue
            book.mark(intent_id, ledger.APPLIED)
            log.info("intent %s (%s): %s", intent_id, where, outcome)
            outcomes.append(outcome)
    book.finish(intent_ids)
    return outcomes


def retry_intent_in(intent_ids: str, arm: str | None, exc: BaseException) -> float | None:
    """Seconds until `apply_intent` is tried again after `exc`, or None to stop (logged why).

    Transient errors retry with exponential backoff (`intent_retry_base_s` doubling up to
    `intent_retry_max_s`; a rate limit's own wait when longer) until the delivery is
    `intent_max_age_s` old; then it is given up (a redelivery of it arms it again)."""
    from bot import ledger
    from bot.github import RetryLater

    d = deps()
    s = d.settings
    book = ledger.Ledger(d.redis)
    if not ledger.is_transient(exc):
        log.error("intents %s failed and are not retried: %s: %s", intent_ids, type(exc).__name__, exc)
        book.give_up(intent_ids)
        return None
    if arm is not None and not book.is_current(intent_ids, arm):
        return None  # a re-armed copy owns the entry now
    age = book.age_s(intent_ids)
    if age is None:
        return None  # finished meanwhile (another copy applied it)
    if age > s.intent_max_age_s:
        log.error(
            "intents %s given up after %.0f s of transient failures (last: %s); "
            "a redelivery of the webhook arms them again",
            intent_ids,
            age,
            exc,
        )
        book.give_up(intent_ids)
        return None
    retries = book.note_retry(intent_ids, f"{type(exc).__name__}: {exc}")
    wait = ledger.backoff_s(retries - 1, s.intent_retry_base_s, s.intent_retry_max_s)
    if isinstance(exc, RetryLater):
        wait = max(wait, exc.wait_s)
    if isinstance(exc, ledger.Busy):
        wait = min(wait, s.intent_retry_base_s)
    log.warning("intents %s: %s; retry %d in %.1f s", intent_ids, exc, retries, wait)
    return wait


def _gh(d: Deps, job: Job) -> Any:
    return intents.installation_for(d, job.repo, job.installation_id)


def stage_started(job_id: str, stage: str, attempt: int) -> None:
    """A runner picked the stage up: show it running (and for how long) in the status comment."""
    d = deps()
    job = d.store.get(job_id)
    if job is None or job.state != f"running:{stage}" or job.attempts.get(stage) != attempt:
        return
    intents.refresh_status(d, _gh(d, job), job_id)
    from bot.queue_position import waiting  # the jobs behind it in its pool's line moved up

    for other in waiting(d.store.recent(intents.QUEUE_SCAN), job.pool)[:20]:
        d.queue.control("bot.tasks.refresh", other.id)


def refresh(job_id: str) -> None:
    d = deps()
    job = d.store.get(job_id)
    if job is not None:
        intents.refresh_status(d, _gh(d, job), job_id)


def stage_finished(job_id: str, stage: str, attempt: int) -> str:
    """Record a runner stage's stored result, move the job on, edit the status comment."""
    d = deps()
    result = d.store.get_result(job_id, stage)
    if result is None or result.attempt != attempt:
        log.warning("job %s: no stored result for %s attempt %d", job_id, stage, attempt)
        return "no result"
    current = d.store.get(job_id)
    if current is not None:  # its device-seconds, once per attempt (daily quotas, /metrics)
        quotas.record_spent(d.redis, current, result)
    summary = StageSummary(
        status=result.status,
        attempt=attempt,
        started_at=result.started_at,
        finished_at=result.finished_at,
        reason=result.reason,
        diagnosis=result.diagnosis,
        next_step=result.next_step,
    )
    try:
        job = d.store.update(job_id, lambda j: machine.finish(j, stage, attempt, summary))
    except NoChange as exc:
        log.info("job %s: %s", job_id, exc)
        return "stale"
    intents.enqueue_stage(d, job)
    if job.phase == "failed":  # its own task: a GitHub hiccup here must not lose the report
        d.queue.control("bot.tasks.report_failure", job.id)
    if stage == "real-gate" and result.status == "passed" and job.pr_number is None:
        d.queue.control("bot.tasks.open_draft_pr", job.id)  # the PR opens as a draft now
    gh = _gh(d, job)
    intents.refresh_status(d, gh, job_id)
    if not job.active:
        _final_reaction(gh, job)
    return job.state


#: Hub outages are retried this many times, 30 s apart, before the job fails (a rerun starts again).
PREFLIGHT_TRIES = 8


def preflight(job_id: str) -> str:
    """The hub pre-flight of a new job (bot.preflight.run_preflight): read the checkpoint's config,
    index and safetensors headers over HTTP, post the pre-flight comment, pin the revision every
    later stage uses, and stop the job on blocking defects before any runner time. A hub outage
    retries later; a permanent answer (gated, not found, no config) fails the job with its reason."""
    from bot.github import RetryLater
    from bot.preflight import run_preflight
    from runners.model_ref import parse_model_ref

    d = deps()
    job = d.store.get(job_id)
    if job is None or job.state != "running:analyze" or job.attempts.get("analyze") != 1:
        return "stale"
    ref = parse_model_ref(job.options.model)
    hub_id = ref.hub_id
    assert hub_id is not None
    gh = _gh(d, job)
    plan = budget_plan(d, gh, job)
    outcome = run_preflight(
        hub_id,
        source=ref.source,  # ModelScope: its SDK's own settings (MODELSCOPE_ENDPOINT, ..._API_TOKEN)
        revision=job.options.revision,
        vllm_root=d.settings.vllm_root,
        vllm_ascend_root=d.settings.vllm_ascend_root,
        # huggingface_hub reads HF_ENDPOINT when imported; read it again now so a process that
        # imported it earlier still follows the environment (HF_TOKEN: the library's own lookup)
        endpoint=os.environ.get("HF_ENDPOINT") or None,
        plan=plan,
    )
    comments.publish_preflight(gh, job, outcome.body)
    if outcome.retryable:
        tries = int(d.redis.incr(f"adapt:job:{job_id}:preflight-tries"))
        d.redis.expire(f"adapt:job:{job_id}:preflight-tries", 24 * 3600)
        if tries <= PREFLIGHT_TRIES:
            raise RetryLater(30, f"hub pre-flight of {hub_id}")
        return _preflight_failed(
            d,
            job,
            "hub-unavailable",
            f"the hub did not answer for {hub_id} after {tries} tries",
            "`/adapt rerun analyze`",
        )
    if outcome.stops:
        if outcome.result is not None:
            reason = "blocking-defect"
            why = "; ".join(p.message for p in outcome.result.blocking_problems)[:1500]
        else:
            reason, why = f"hub-{outcome.error_code}", f"the hub did not give {hub_id} ({outcome.error_code})"
        return _preflight_failed(
            d, job, reason, why, "Fix what the pre-flight comment names, then `/adapt rerun analyze`."
        )
    if outcome.budget is not None and outcome.budget.over:  # before any runner or device time
        from bot.preflight import BUDGET_HOWTO

        return _preflight_failed(
            d, job, "over-budget", outcome.budget.explain(), f"{BUDGET_HOWTO}, then `/adapt rerun analyze`."
        )
    if outcome.revision and job.options.revision is None:

        def pin(j: Job) -> Job:
            j = j.model_copy(deep=True)
            j.options.revision = outcome.revision
            return j

        job = d.store.update(job_id, pin)
    if outcome.card_references:  # the model card's scores, for the tasks the issue names none for
        job = intents.adopt_card_references(d, job, outcome.card_references)
    intents.enqueue_stage(d, job)
    return "passed"


def budget_plan(d: Deps, gh: Any, job: Job) -> Any:
    """The job as the budget sees it (bot.preflight.JobPlan), with the repository's budget."""
    from bot.preflight import JobPlan

    cfg = repo_config.load(gh, job.repo, d.settings, d.redis).config
    o = job.options
    return JobPlan(o.profile, o.hardware, o.tp, cfg.budget.device_hours_per_job)


def _preflight_failed(d: Deps, job: Job, reason: str, diagnosis: str, next_step: str) -> str:
    summary = StageSummary(
        status="failed", attempt=1, reason=reason, diagnosis=f"pre-flight: {diagnosis}", next_step=next_step
    )
    try:
        job = d.store.update(job.id, lambda j: machine.finish(j, "analyze", 1, summary))
    except NoChange:
        return "stale"
    d.queue.control("bot.tasks.report_failure", job.id)
    intents.refresh_status(d, _gh(d, job), job.id)
    return f"failed: {reason}"


def report_failure(job_id: str) -> str:
    """Post (or edit) the full report of a failed job on its issue: what ran, the evidence, the
    diagnosis, the next step (bot.comments.post_failure_report). Idempotent: one report comment,
    found again by its marker; a job that is no longer failed (rerun meanwhile) gets none."""
    d = deps()
    job = d.store.get(job_id)
    if job is None or job.phase != "failed":
        return "not failed"
    public = d.settings.public_url
    logs_url = job_url(public, job.id)
    gh = _gh(d, job)
    comments.post_failure_report(gh, job, d.store.results(job_id), logs_url=logs_url)
    if job.pr_number is not None and job.pr_head_sha is None and job.stage != "deliver":
        from bot.delivery import end_draft  # the early draft PR: the final verdict in its body

        config = repo_config.load(gh, job.repo, d.settings, d.redis).config
        end_draft(job=job, results=d.store.results(job_id), github=gh, config=config, settings=d.settings)
    return "reported"


def watch(job_id: str, stage: str, attempt: int) -> str:
    """Re-send a runner stage whose runner died; otherwise look again in `watch_interval_s`.

    A runner that is SIGKILLed (or whose host dies) never acks its message, and the broker would
    only redeliver it after the visibility timeout, which must exceed the longest stage. The runner
    keeps a heartbeat while it works; no heartbeat, no queued message and no stored result means
    the stage is lost: send it again (same attempt and token; `runners.host.task` caps redeliveries). A late
    redelivery of the old message finds the claim taken or the job moved on and does nothing.
    """
    d = deps()
    job = d.store.get(job_id)
    if job is None or job.state != f"running:{stage}" or job.attempts.get(stage) != attempt:
        return "done"
    interval = d.settings.watch_interval_s
    if d.store.run_alive(job, stage, attempt):
        d.queue.control("bot.tasks.watch", job_id, stage, attempt, countdown=interval)
        return "alive"
    stored = d.store.get_result(job_id, stage)
    if stored is not None and stored.attempt == attempt:  # finished; its report went missing
        return stage_finished(job_id, stage, attempt)
    log.warning("job %s: runner of %s attempt %d is gone; sending the stage again", job_id, stage, attempt)
    d.store.add_progress(job_id, stage, "runner lost (no heartbeat); stage sent again")
    intents.send_runner_stage(d, job, stage, attempt)
    return "resent"


def reconcile() -> list[str]:
    """Re-arm every running job after a control-plane (re)start: the delayed `watch` messages and
    the deliveries a dead control worker held are not lost with it. Idempotent: a watch of a job
    that has moved on does nothing, and delivery updates the same branch and PR."""
    d = deps()
    armed: list[str] = []
    for job in d.store.recent(1000):
        stage = job.stage
        if job.phase != "running" or stage is None:
            continue
        if stage == "deliver":
            d.queue.control("bot.tasks.deliver", job.id)
        else:
            d.queue.control("bot.tasks.watch", job.id, stage, job.attempts.get(stage, 1))
        armed.append(f"{job.id}:{stage}")
    if armed:
        log.info("reconcile: re-armed %s", ", ".join(armed))
    return armed


def _final_reaction(gh: Any, job: Job) -> None:
    if job.trigger_comment_id is None:
        return
    content = {"succeeded": "hooray", "cancelled": "-1"}.get(job.phase, "confused")
    try:
        gh.add_reaction(job.repo, job.trigger_comment_id, content)
    except Exception:
        log.warning("final reaction on job %s failed", job.id, exc_info=True)


def deliver(job_id: str) -> str:
    """Commit the artifacts, open/update the PR (`bot.delivery.deliver`), post the final report.

    Idempotent: a redelivered or rerun `deliver` updates the same branch, PR and report comment.
    A failure leaves the job `failed:deliver` with the error and `/adapt rerun deliver` as next step.
    """
    d = deps()
    job = d.store.get(job_id)
    if job is None or job.state != "running:deliver":
        return "stale"
    if job.pr_head_sha:  # a person pushed to the PR: never force-move the branch over their work
        return report_pushed_head(job_id)
    gh = _gh(d, job)
    from bot.delivery import deliver as do_deliver

    loaded = repo_config.load(gh, job.repo, d.settings, d.redis)
    try:
        with _pr_lock(d, job_id):  # never at the same time as the early draft (open_draft_pr)
            outcome = do_deliver(
                job=job,
                results=d.store.results(job_id),
                files=d.store.files(job_id),
                github=gh,
                config=loaded.config,
                settings=d.settings,
            )
        _post_final_report(d, gh, job, outcome)
    except Exception as exc:
        from bot.github import RetryLater

        if isinstance(exc, RetryLater):
            raise
        log.exception("delivery of job %s failed", job_id)
        summary = StageSummary(
            status="error",
            attempt=job.attempts.get("deliver", 1),
            reason="delivery-error",
            diagnosis=f"delivery failed: {type(exc).__name__}: {str(exc)[:300]}",
            next_step="/adapt rerun deliver",
        )
        with contextlib.suppress(NoChange):
            d.store.update(
                job_id, lambda j: machine.finish(j, "deliver", j.attempts.get("deliver", 1), summary)
            )
        d.queue.control("bot.tasks.report_failure", job_id)
        intents.refresh_status(d, gh, job_id)
        return "failed"
    pr = outcome.get("pr_number") if isinstance(outcome, dict) else getattr(outcome, "pr_number", None)
    try:
        job = d.store.update(job_id, lambda j: machine.succeed(j, "deliver", pr_number=pr))
    except NoChange:
        return "stale"
    intents.refresh_status(d, gh, job_id)
    _final_reaction(gh, job)
    return "succeeded"


def _pr_lock(d: Deps, job_id: str) -> Any:
    """One writer of a job's PR branch at a time: the early draft and the delivery."""
    return d.redis.lock(f"adapt:lock:pr:{job_id}", timeout=600, blocking_timeout=300)


def open_draft_pr(job_id: str) -> str:
    """The real gate passed: open the job's PR as a draft now (bot.delivery.open_draft), record it on
    the job (so its check run moves to the PR head) while the later stages run. Skipped when the
    repository opted out of drafts, when the job has a PR already or has reached delivery. A failure
    is logged and changes nothing else: delivery opens the PR then, as before."""
    from bot.delivery import drafts_early, open_draft
    from bot.github import RetryLater

    d = deps()
    with _pr_lock(d, job_id):
        job = d.store.get(job_id)
        if job is None or not job.active or job.pr_number is not None or job.stage == "deliver":
            return "stale"
        gh = _gh(d, job)
        config = repo_config.load(gh, job.repo, d.settings, d.redis).config
        if not drafts_early(config):
            return "no drafts (delivery.draft_until_real_gate: false)"
        try:
            outcome = open_draft(
                job=job, results=d.store.results(job_id), github=gh, config=config, settings=d.settings
            )
        except RetryLater:
            raise
        except Exception:
            log.exception("job %s: the draft PR was not opened; delivery will open the PR", job_id)
            return "failed"
        if outcome is None:
            return "no draft: nothing to commit before the artifacts stage"
        number = outcome.pr_number

        def record(j: Job) -> Job:
            if j.pr_number is not None:
                raise NoChange("PR already recorded")
            j = j.model_copy()
            j.pr_number = number
            return j

        with contextlib.suppress(NoChange):
            d.store.update(job_id, record)
    intents.refresh_status(d, gh, job_id)
    return f"draft PR #{number}"


def report_pushed_head(job_id: str) -> str:
    """The `deliver` stage of a job whose PR a person pushed to: nothing is committed; the gate
    check runs go on the PR's head as it is now, the PR's draft state follows the new verdict and
    the final report is edited in place. A GitHub error leaves `failed:deliver` as delivery does."""
    from bot.delivery import DeliveryOutcome, gate_check_runs, pr_draft, publish_check_runs, set_draft
    from runners.artifacts import branch_name, collect, model_names

    d = deps()
    job = d.store.get(job_id)
    if job is None or job.state != "running:deliver" or job.pr_number is None:
        return "stale"
    gh = _gh(d, job)
    owner, name = job.repo.split("/", 1)
    number = job.pr_number
    try:
        pr = gh.call(f"GET pull {number}", lambda: gh.gh.rest.pulls.get(owner, name, number)).parsed_data
        results = d.store.results(job_id)
        options = job.options.model_copy(update={"issue": job.issue})
        facts = collect(options, results)
        logs_url = job_url(d.settings.public_url, job.id)
        runs = publish_check_runs(
            gh.gh, job.repo, str(pr.head.sha), gate_check_runs(facts, logs_url=logs_url),
            external_id=job.id, call=gh.call,
        )  # fmt: skip
        draft = pr_draft(facts.verdict, repo_config.load(gh, job.repo, d.settings, d.redis).config.delivery)
        if bool(pr.draft) != draft:
            set_draft(gh.gh, pr.node_id, draft, call=gh.call)
        outcome = DeliveryOutcome(
            pr_number=number,
            pr_url=str(pr.html_url),
            sha=str(pr.head.sha),
            branch=str(pr.head.ref) or branch_name(model_names(options), job.issue),
            draft=draft,
            created=False,
            files=tuple(sorted(d.store.files(job_id))),
            check_runs=runs,
            logs_url=logs_url,
        )
        _post_final_report(d, gh, job, outcome)
    except Exception as exc:
        from bot.github import RetryLater

        if isinstance(exc, RetryLater):
            raise
        log.exception("report on the pushed head of job %s failed", job_id)
        summary = StageSummary(
            status="error",
            attempt=job.attempts.get("deliver", 1),
            reason="delivery-error",
            diagnosis=f"report on the pushed head failed: {type(exc).__name__}: {str(exc)[:300]}",
            next_step="/adapt rerun deliver",
        )
        with contextlib.suppress(NoChange):
            d.store.update(
                job_id, lambda j: machine.finish(j, "deliver", j.attempts.get("deliver", 1), summary)
            )
        intents.refresh_status(d, gh, job_id)
        return "failed"
    try:
        job = d.store.update(job_id, lambda j: machine.succeed(j, "deliver", pr_number=number))
    except NoChange:
        return "stale"
    intents.refresh_status(d, gh, job_id)
    _final_reaction(gh, job)
    return "succeeded"


def _post_final_report(d: Deps, gh: Any, job: Job, outcome: Any) -> None:
    """The issue's final comment: feature matrix, dummy-vs-real matrix, the report in <details>,
    links to the PR and the logs. Edited in place on a rerun (its own marker)."""
    from runners.artifacts import render_final_comment

    results = d.store.results(job.id)
    options = job.options.model_copy(update={"issue": job.issue})
    body = render_final_comment(
        options, results, outcome.as_delivery(), job_id=job.id, limit=comments.MAX_BODY - 100
    )
    comments.publish_report(gh, job, body)


def status_body(job_id: str) -> str | None:
    """The status comment as it would be rendered now (used by the jobs page and tests)."""
    d = deps()
    job = d.store.get(job_id)
    if job is None:
        return None
    return intents.status_body(d, job)
