"""The one place that applies an `Intent` to jobs (runs in a control-plane Celery task).

Whatever the source (label, issue comment, PR comment, check-run button), the same code checks
permission, finds the job, applies the transition with compare-and-set, updates the status comment
and answers the user. Redelivered intents change nothing: transitions are idempotent and a start
that was interrupted resumes (the job remembers the intent that created it).
"""

from __future__ import annotations

import contextlib
import json
import logging
from dataclasses import dataclass
from typing import Any, Protocol

import redis

from bot import comments, permissions, quotas, repo_config, runner_link
from bot.commands import BY_NAME, CHECK_ACTION_BY_ID, PREFIX
from bot.config import Settings
from bot.events import Intent
from bot.github import (
    CandidateError,
    GitHubClient,
    GitHubError,
    InstallationClient,
    PullCandidate,
    RetryLater,
    pin_candidate,
    pin_pull_candidate,
)
from bot.jobs import machine
from bot.jobs.machine import NoChange, TransitionError
from bot.jobs.model import Job, PushedHead
from bot.jobs.store import ActiveJobExists, JobStore
from runners.accuracy.references import merge_card, parse_references
from runners.contracts import STAGES, Candidate, JobOptions, StageRequest
from runners.model_ref import USAGE as MODEL_USAGE
from runners.model_ref import ModelRefError, find_model_ref
from runners.render import render

log = logging.getLogger(__name__)


class Queue(Protocol):
    """How the control plane enqueues work (Celery in production; plain ids only)."""

    def run_stage(self, request: StageRequest) -> None: ...

    def control(self, task: str, *args: Any, countdown: float | None = None) -> None: ...


@dataclass
class Deps:
    settings: Settings
    redis: redis.Redis
    store: JobStore
    github: GitHubClient
    queue: Queue


# -- helpers shared with bot.tasks -----------------------------------------------------------------
def installation_for(deps: Deps, repo: str, installation_id: int | None) -> InstallationClient:
    return deps.github.installation(installation_id or deps.github.installation_id(repo))


def status_url(job: Job) -> str | None:
    if job.status_comment_id is None:
        return None
    return f"https://github.com/{job.repo}/issues/{job.issue}#issuecomment-{job.status_comment_id}"


#: the most recent jobs looked at for a waiting job's place in its pool's line
QUEUE_SCAN = 500


def status_body(deps: Deps, job: Job) -> str:
    """The status comment as it reads now; a finished job's headline is its verdict."""
    from bot.budget import estimate_of
    from bot.queue_position import position, waits

    verdict = comments.verdict_for(job, deps.store.results(job.id)) if not job.active else None
    queue = position(job, deps.store.recent(QUEUE_SCAN)) if waits(job) else None  # scan only then
    return comments.render_status(
        job,
        deps.store.progress(job.id, 1),
        jobs_url=deps.settings.public_url,
        verdict=verdict,
        spent=quotas.job_spent(deps.redis, job.id),
        queue=queue,
        estimate=estimate_of(deps.store, job),
    )


def refresh_status(deps: Deps, gh: InstallationClient, job_id: str) -> Job | None:
    """Render the job as stored now and edit its status comment (create it once).

    A per-job lock serialises publishers and the job is re-read inside it, so the last edit always
    shows the latest state and two tasks never both create the comment.
    """
    with deps.redis.lock(f"adapt:lock:status:{job_id}", timeout=120, blocking_timeout=60):
        job = deps.store.get(job_id)
        if job is None:
            return None
        body = status_body(deps, job)
        comment_id = comments.publish_status(gh, job, body)
        if job.status_comment_id != comment_id:

            def set_id(j: Job) -> Job:
                if j.status_comment_id == comment_id:
                    raise NoChange("id already stored")
                j = j.model_copy()
                j.status_comment_id = comment_id
                return j

            with contextlib.suppress(NoChange):
                job = deps.store.update(job_id, set_id)
        from bot.checks import refresh_job_check  # the job's check run follows the same state

        refresh_job_check(deps, gh, job)
        return job


def adopt_card_references(deps: Deps, job: Job, card: dict[str, dict[str, float]]) -> Job:
    """The model card's published scores (read by the pre-flight) join the job's references for
    the tasks the issue does not name: the issue's own figures win (runners.accuracy.references)."""
    merged, sources = merge_card(job.options.accuracy_references, card)
    if merged == (job.options.accuracy_references or {}):
        return job

    def put(j: Job) -> Job:
        j = j.model_copy(deep=True)
        j.options.accuracy_references = merged
        j.options.accuracy_reference_sources = sources
        return j

    try:
        return deps.store.update(job.id, put)
    except NoChange:
        return job


def enqueue_stage(deps: Deps, job: Job) -> None:
    """Send the job's current stage (running:<stage>) once per attempt."""
    stage = job.stage
    if job.phase != "running" or stage is None:
        return
    attempt = job.attempts.get(stage, 1)
    from bot.budget import stop_if_over  # the repository's device-hour budget, before any device time

    if stop_if_over(deps, job):
        return
    if not deps.store.claim_enqueue(job.id, stage, attempt):
        log.info("job %s: %s attempt %d already enqueued", job.id, stage, attempt)
        return
    if stage == "deliver":
        deps.queue.control("bot.tasks.deliver", job.id)
    else:
        send_runner_stage(deps, job, stage, attempt)


def send_runner_stage(deps: Deps, job: Job, stage: str, attempt: int) -> None:
    """Send a runner stage and start watching it (bot.tasks.watch re-sends it if its runner dies)."""
    request = runner_link.request_for(deps.store, job, stage, attempt, deps.settings.stage_timeout(stage))
    deps.store.mark_pending(job.id, stage, attempt, deps.settings.visibility_timeout_s)
    deps.queue.run_stage(request)
    deps.queue.control("bot.tasks.watch", job.id, stage, attempt, countdown=deps.settings.watch_interval_s)


def _reply(gh: InstallationClient, intent: Intent, kind: str, **ctx: Any) -> None:
    if intent.repo is None or intent.issue is None:
        return
    body = comments.render_reply(kind, user=intent.sender, command=intent.command_line, **ctx)
    comments.publish_reply(gh, intent.repo, intent.issue, body, comments.reply_key(intent.dedupe_key, kind))


def _refuse(gh: InstallationClient, intent: Intent, error: str) -> None:
    """A refusal: the reason as a reply, and a confused reaction on the command."""
    _reply(gh, intent, "refused", error=error)
    _react(gh, intent, "confused")


def _react(gh: InstallationClient, intent: Intent, content: str) -> None:
    if intent.comment_id is not None and intent.repo is not None:
        try:
            gh.add_reaction(intent.repo, intent.comment_id, content)
        except Exception:  # a missing reaction must not stop the command
            log.warning("reaction %s on comment %s failed", content, intent.comment_id, exc_info=True)


def _answer_on_jobs_issue(intent: Intent, job: Job) -> Intent:
    """A button on a run no PR lists (the base branch head) has no issue to answer on: its
    replies go to the issue of the job the run belongs to."""
    if intent.via == "check_run" and intent.issue is None:
        return intent.model_copy(update={"issue": job.issue, "is_pull_request": False})
    return intent


def _find_job(deps: Deps, intent: Intent) -> Job | None:
    assert intent.repo is not None
    if intent.job_id:
        job = deps.store.get(intent.job_id)
        if job is not None and job.repo == intent.repo:
            return job
    if intent.issue is not None:
        job = deps.store.latest_for(intent.repo, intent.issue)
        if job is not None:
            return job
        if intent.is_pull_request:
            return deps.store.for_pr(intent.repo, intent.issue)
    return None


# -- entry point -------------------------------------------------------------------------------------
def apply_intent(intent: Intent, deps: Deps) -> str:
    """Apply one intent; returns a short outcome for logs and tests."""
    if intent.kind == "installation":
        deps.redis.hset("adapt:installations", str(intent.installation_id), json.dumps(intent.detail))
        return f"installation {intent.detail.get('action')} recorded"
    if intent.repo is None:
        return "ignored: no repository"
    try:
        gh = installation_for(deps, intent.repo, intent.installation_id)
    except GitHubError as exc:
        if exc.status == 404:  # the App is not installed there (any more): nothing we may do
            return f"ignored: the App is not installed on {intent.repo}"
        raise
    if intent.kind == "pr_closed":
        return _pr_closed(intent, deps, gh)
    if intent.via == "pull_request":
        pr_job = deps.store.for_pr(intent.repo, intent.pr or 0)
        if pr_job is None:
            return "ignored: not a job's pull request"  # every other PR's pushes: not a word, no API call
        head = intent.detail.get("head_sha")
        if head and pr_job.pr_head_sha == head:  # a redelivery past every dedupe window
            return f"ignored: head {str(head)[:12]} of job {pr_job.id} was already re-gated"

    _react(gh, intent, "eyes")
    loaded = repo_config.load(gh, intent.repo, deps.settings, deps.redis)
    cfg = loaded.config

    if intent.kind == "invalid":
        _reply(gh, intent, "invalid", error=intent.error, usage=comments.usage_for(intent.error_command))
        _react(gh, intent, "confused")
        return f"invalid command: {intent.error}"
    if intent.kind == "help":
        _reply(gh, intent, "help", usage=comments.render_help(intent.help_topic))
        return "help sent"
    if intent.kind == "too_many":
        _reply(gh, intent, "too-many", detail=intent.detail)
        _react(gh, intent, "confused")
        return f"refused: {intent.detail.get('refused')} commands over the limit"
    if intent.kind == "start" and intent.via == "label" and intent.label != cfg.label:
        return f"ignored: label {intent.label!r} is not {cfg.label!r}"
    if BY_NAME[_command_name(intent)].needs_permission:  # labels too: triage users can label
        if intent.sender is None:
            return "ignored: no sender"
        ttl = deps.settings.permission_cache_s
        actors = [intent.sender, intent.editor]  # an edit acts as its author; the editor must pass too
        no = permissions.refusal(gh, intent.repo, actors, cfg.permission, deps.redis, ttl)
        if no is not None:
            if intent.via == "check_run" and intent.issue is None:
                return _refuse_press(intent, deps, gh, no)
            kind = "label-permission" if intent.via == "label" else "permission"
            _reply(gh, intent, kind, needed=no.needed, level=no.level, detail=cfg.label, who=no.user)
            _react(gh, intent, "confused")
            return f"refused: {no}"

    handler = {"start": _start, "status": _status, "cancel": _cancel, "rerun": _rerun}[intent.kind]
    return handler(intent, deps, gh, loaded)


def _refuse_press(intent: Intent, deps: Deps, gh: InstallationClient, no: permissions.Refusal) -> str:
    """A button pressed without the permission its command needs, on a run no PR lists (the base
    branch head, before the job has a PR): `_reply` has no issue there, so the refusal goes to the
    issue of the job the run belongs to (its id, this repository only). The run is left alone: its
    output and buttons stay the job's, for whoever may press them. With no job behind the run, a
    Cancel is answered on the run as for anyone (bot.checks.answer_press): nothing is there to
    protect, and nothing else will ever answer."""
    from bot.checks import JOB_CHECK, answer_press

    job = _find_job(deps, intent)
    if job is None:
        if intent.kind == "cancel":
            answer_press(gh, intent.repo or "", intent.detail, job_id=intent.job_id, sender=intent.sender)
            return f"refused: {no} (no job: answered on the check run)"
        return f"refused: {no} (no job behind the check run: nowhere to answer)"
    ident = "cancel" if intent.kind == "cancel" else f"rerun-{intent.stage}"
    action = CHECK_ACTION_BY_ID.get(ident)
    body = render(
        "comments/press_permission.md.j2",
        user=intent.sender,
        button=comments.code_span(action.label if action else ident, 40),
        check=JOB_CHECK,
        job=comments.code_span(job.id, 80),
        needed=no.needed,
        level=no.level,
        command=" ".join(p for p in (intent.kind, intent.stage) if p),
        prefix=PREFIX,
    )
    key = comments.reply_key(intent.dedupe_key, "press-permission")
    comments.publish_reply(gh, job.repo, job.issue, comments.fit(body), key)
    return f"refused: {no} (answered on #{job.issue})"


def _command_name(intent: Intent) -> str:
    return {"start": "run"}.get(intent.kind, intent.kind)


def _candidate_refusal(intent: Intent, deps: Deps, gh: InstallationClient, cfg: Any) -> str | None:
    """Naming a candidate (a branch, or `this` PR's head) needs its own permission: the refusal's
    outcome after replying, or None when the sender (and editor) hold it."""
    assert intent.repo is not None
    no = permissions.refusal(
        gh, intent.repo, [intent.sender, intent.editor], cfg.candidate_permission, deps.redis,
        deps.settings.permission_cache_s,
    )  # fmt: skip
    if no is None:
        return None
    _reply(gh, intent, "permission", needed=no.needed, level=no.level, detail=cfg.label, who=no.user)
    _react(gh, intent, "confused")
    return f"refused: --candidate: {no}"


def _start(intent: Intent, deps: Deps, gh: InstallationClient, loaded: repo_config.LoadedConfig) -> str:
    assert intent.repo is not None and intent.issue is not None
    cfg = loaded.config
    this_pr = bool((intent.options.get("candidate") or {}).get("this"))
    if this_pr and not intent.is_pull_request:
        _refuse(gh, intent, "`--candidate this` works in a comment on a pull request")
        return "refused: --candidate this outside a pull request"
    if intent.is_pull_request and not this_pr:
        job = _find_job(deps, intent)
        msg = (
            f"this pull request belongs to job `{job.id}`; use `/adapt rerun <stage>` to run stages again"
            if job
            else "`/adapt run` works on issues that name a model, not on pull requests"
        )
        _refuse(gh, intent, msg)
        return "refused: run on a pull request"
    pull: PullCandidate | None = None
    if this_pr:  # the PR's head, for the issue it links: the job runs (and reports) there
        if (refused := _candidate_refusal(intent, deps, gh, cfg)) is not None:
            return refused
        try:
            pull = pin_pull_candidate(gh, intent.repo, intent.issue, deps.settings.candidate_git_url)
            linked = gh.get_issue(intent.repo, pull.issue)
        except CandidateError as exc:
            _refuse(gh, intent, str(exc))
            return f"refused: --candidate this: {exc}"
        except GitHubError as exc:
            if exc.status != 404:
                raise
            linked_n = pull.issue if pull else "?"
            error = f"pull request #{intent.issue} links #{linked_n}, which is not an issue here"
            _refuse(gh, intent, error)
            return f"refused: --candidate this: {error}"
        if linked.get("pull_request"):
            error = f"pull request #{intent.issue} links #{pull.issue}, which is a pull request, not an issue"
            _refuse(gh, intent, error)
            return f"refused: --candidate this: {error}"
        intent = intent.model_copy(
            update={
                "issue": pull.issue,
                "is_pull_request": False,
                "issue_title": str(linked.get("title") or ""),
                "issue_body": str(linked.get("body") or ""),
                "pr": pull.pr,
            }
        )
    assert intent.repo is not None and intent.issue is not None  # (narrowed again after the copy)
    try:
        ref = find_model_ref(intent.issue_title, intent.issue_body)
    except ModelRefError as exc:
        _reply(gh, intent, "no-model", error=str(exc).replace(MODEL_USAGE, "").strip())
        _react(gh, intent, "confused")
        return f"no model: {exc}"
    opts = intent.options
    candidate = pull.candidate if pull is not None else None
    # a contributor branch: its own permission, pinned to a SHA here
    if opts.get("candidate") and pull is None:
        if (refused := _candidate_refusal(intent, deps, gh, cfg)) is not None:
            return refused
        try:
            candidate = pin_candidate(gh, opts["candidate"], deps.settings.candidate_git_url)
        except CandidateError as exc:
            _refuse(gh, intent, str(exc))
            return f"refused: --candidate: {exc}"
    hardware = opts.get("hardware") or cfg.defaults.hardware
    options = JobOptions(
        model=ref.display,
        hardware=hardware,
        tp=opts.get("tp", cfg.defaults.tp),
        max_model_len=opts.get("max_model_len", cfg.defaults.max_model_len),
        features=opts.get("features"),
        capacity_steps=opts.get("capacity_steps"),
        accuracy_references=parse_references(intent.issue_body) or None,
        candidate=candidate,
        profile=cfg.profile_for(hardware),
        issue=intent.issue,
        artifacts=cfg.artifacts,
        # the repository's opt-in: a checkpoint's own Python may run on the runner only if allowed
        trust_remote_code=cfg.remote_code.allow,
        adapter=cfg.adapter,  # the adapter step: from the repo config only, never from a comment
    )
    job = Job(
        repo=intent.repo,
        installation_id=gh.installation_id,
        issue=intent.issue,
        options=options,
        pool=cfg.pool_for(hardware),
        trigger_comment_id=intent.comment_id,
        requested_by=intent.sender if intent.via == "comment" else None,
        origin=intent.dedupe_key,
        repo_private=intent.repo_private,
    )
    if job.pool not in deps.settings.runner_pools:  # its runners' events would never be read
        error = (
            f"hardware `{hardware}` maps to runner pool `{job.pool}`, which this deployment does not serve "
            f"(ADAPT_BOT_RUNNER_POOLS: {', '.join(deps.settings.runner_pools)})"
        )
        _refuse(gh, intent, error)
        return f"refused: unknown pool {job.pool}"
    job = machine.begin(job, STAGES[0])
    limits = quotas.limits_for(deps.settings, cfg.quotas)
    over = quotas.admit_start(deps.redis, deps.store, job, intent.sender, limits)
    if over is not None:  # a clear refusal; there is no waiting queue
        _reply(gh, intent, "quota", detail=over, jobs=quotas.shown_jobs(deps.store, job.repo, over))
        _react(gh, intent, "confused")
        return f"refused: {over}"
    try:
        deps.store.create(job)
    except ActiveJobExists as exc:
        quotas.release(deps.redis, job, intent.sender)  # the slot this start took
        existing = deps.store.get(exc.job_id)
        if existing is None or existing.origin != intent.dedupe_key:
            if existing is not None:
                _reply(gh, intent, "already-active", job=existing, status_url=status_url(existing))
                _react(gh, intent, "confused")
            return f"refused: active job {exc.job_id}"
        job = existing  # this intent created it before being interrupted: resume
    if loaded.error:
        _reply(gh, intent, "config-error", error=loaded.error)
    try:
        refresh_status(deps, gh, job.id)
    finally:
        current = deps.store.get(job.id) or job
        start_first_stage(deps, current)
    _react(gh, intent, "rocket")
    if pull is not None:  # say on the PR where the job reports (its status comment is on the issue)
        c = pull.candidate
        detail = {"issue": pull.issue, "sha": c.sha, "repo": c.repo, "ref": c.ref}
        on_pr = intent.model_copy(update={"issue": pull.pr})
        _reply(gh, on_pr, "candidate-this", job=job, detail=detail, status_url=status_url(job))
        return f"started job {job.id} for #{pull.issue} with the head of #{pull.pr}"
    return f"started job {job.id}"


def start_first_stage(deps: Deps, job: Job) -> None:
    """A hub model gets its pre-flight first (`bot.tasks.preflight`: headers over HTTP, seconds, no
    runner time), which pins the revision and stops blocking defects; the runner's analyze follows.
    A `/models/...` checkpoint exists only on runners: straight to the runner."""
    from runners.model_ref import parse_model_ref

    hub_id = None
    with contextlib.suppress(ModelRefError):
        hub_id = parse_model_ref(job.options.model).hub_id
    if deps.settings.hub_preflight and hub_id is not None:
        if deps.store.claim_enqueue(job.id, "preflight", 1):
            deps.queue.control("bot.tasks.preflight", job.id)
    else:
        enqueue_stage(deps, job)


def _status(intent: Intent, deps: Deps, gh: InstallationClient, _loaded: Any) -> str:
    job = _find_job(deps, intent)
    if job is None:
        _reply(gh, intent, "no-job", detail="pull request" if intent.is_pull_request else None)
        return "no job"
    job = refresh_status(deps, gh, job.id) or job
    _reply(gh, intent, "status", job=job, status_url=status_url(job))
    return f"status of {job.id}: {job.state}"


def _cancel(intent: Intent, deps: Deps, gh: InstallationClient, _loaded: Any) -> str:
    """Every Cancel gets an answer where it was asked. A check-run button that no PR lists (the run
    on the base branch head, a fork's head) answers on the job's issue, or, with no job behind the
    run, on the run itself (bot.checks.answer_press)."""
    job = _find_job(deps, intent)
    if job is None:
        if intent.via == "check_run" and intent.issue is None:
            from bot.checks import answer_press

            answer_press(gh, intent.repo or "", intent.detail, job_id=intent.job_id, sender=intent.sender)
            return "no job (answered on the check run)"
        _reply(gh, intent, "no-job", detail="pull request" if intent.is_pull_request else None)
        return "no job"
    intent = _answer_on_jobs_issue(intent, job)
    deps.store.set_cancel(job)  # signal first: the running stage polls this flag
    try:
        job = deps.store.update(job.id, machine.request_cancel)
    except NoChange:
        job = deps.store.get(job.id) or job
    except TransitionError as exc:
        deps.store.clear_cancel(job)
        _refuse(gh, intent, str(exc))
        return f"refused: {exc}"
    refresh_status(deps, gh, job.id)
    _reply(gh, intent, "cancel", job=job)
    _react(gh, intent, "rocket")
    return f"cancel {job.id}: {job.state}"


def _rerun(intent: Intent, deps: Deps, gh: InstallationClient, loaded: Any) -> str:
    stage = intent.stage or ""
    job = _find_job(deps, intent)
    if job is None:
        _reply(gh, intent, "no-job", detail="pull request" if intent.is_pull_request else None)
        return "no job"
    intent = _answer_on_jobs_issue(intent, job)
    # retry-safe: a retry of an intent that already moved the job (a transient GitHub error after
    # the transition) finishes the steps after it instead of refusing its own rerun
    applied_key = f"adapt:rerun-applied:{intent.dedupe_key}"
    if deps.redis.get(applied_key) == job.id:
        return _after_rerun(intent, deps, gh, job, stage)
    limits = quotas.limits_for(deps.settings, loaded.config.quotas)
    over = quotas.admit_job(deps.redis, job, intent.sender, limits)
    if over is not None:  # a rerun makes a finished job active again: it needs a slot
        _reply(gh, intent, "quota", detail=over, jobs=quotas.shown_jobs(deps.store, job.repo, over))
        _react(gh, intent, "confused")
        return f"refused: {over}"
    push = _compare_push(intent, deps, gh, job)  # a push to the PR: what it changed (network first)
    try:
        pushed = None  # a push to the PR: the head the re-gate validates (delivery commits nothing)
        if intent.via == "pull_request" and intent.detail.get("head_sha"):
            pushed = str(intent.detail["head_sha"])

        def moved(j: Job) -> Job:
            j = machine.rerun(j, stage, pushed_head=pushed)
            if push is not None:  # the same stored update: the record and the candidate it implies
                j.pushed, j.options.candidate = push
            return j

        job = deps.store.update(job.id, moved)
    except (TransitionError, ActiveJobExists) as exc:
        msg = (
            str(exc)
            if isinstance(exc, TransitionError)
            else f"another job ({exc.job_id}) is active on this issue"
        )
        _refuse(gh, intent, msg)
        return f"refused: {msg}"
    deps.redis.set(applied_key, job.id, ex=RERUN_APPLIED_TTL_S)
    deps.store.clear_cancel(job)
    if job.pushed is not None and job.pushed.compare_error and push is not None:
        _reply(gh, intent, "push-compare", error=job.pushed.compare_error)
    return _after_rerun(intent, deps, gh, job, stage)


#: how many changed implementation files the status comment names (the rest are counted)
PUSH_FILES_SHOWN = 10


def _bots_own(path: str, delivered: set[str]) -> bool:
    """A file the bot itself delivers: the job's stored artifacts, or where delivery puts the docs
    registration and CI entries (runners.artifacts.target). Anything else is implementation."""
    from runners.artifacts.target import E2E_CONFIG_DIR, MODEL_LIST, NIGHTLY_CONFIG, TUTORIAL_DIR

    if path in delivered or path in (MODEL_LIST, NIGHTLY_CONFIG, "mkdocs.yml", "mkdocs.yaml"):
        return True
    return any(path.startswith(f"{d}/") for d in (TUTORIAL_DIR, E2E_CONFIG_DIR))


def _compare_push(
    intent: Intent, deps: Deps, gh: InstallationClient, job: Job
) -> tuple[PushedHead, Candidate | None] | None:
    """A maintainer's push (pull_request.synchronize): GitHub's compare of the bot's own delivered
    head with the pushed head. Files beyond the bot's docs/YAML -> the pushed head becomes the
    job's candidate (the runner installs that code); otherwise, or when the compare fails, the
    job's own candidate (None for most jobs) stays, so the re-gate is never lost. The base is the
    bot's head recorded at the first push, so later pushes are compared cumulatively."""
    head = str(intent.detail.get("head_sha") or "").lower()
    if intent.via != "pull_request" or not head or intent.repo is None:
        return None
    prior = job.pushed
    own = prior.job_candidate if prior is not None and prior.candidate else job.options.candidate
    base = (prior.bot_head if prior is not None else None) or str(intent.detail.get("before") or "")
    record = PushedHead(bot_head=base or None, head=head, job_candidate=own)
    docs_only = f"re-gating the docs/YAML only, without the pushed code as the candidate (head {head[:12]})"
    if not base:
        return record.model_copy(
            update={"compare_error": f"the push names no previous head; {docs_only}"}
        ), own
    try:
        compared = gh.compare(intent.repo, base, head)
    except (GitHubError, RetryLater) as exc:
        why = f"HTTP {exc.status}" if isinstance(exc, GitHubError) and exc.status else "GitHub kept failing"
        if isinstance(exc, GitHubError) and exc.status == 404:
            why += ": GitHub finds no common history (a force-push?)"
        error = f"comparing {base[:12]}...{head[:12]} failed ({why}); {docs_only}"
        log.warning("job %s: compare of the pushed head failed: %s", job.id, why)
        return record.model_copy(update={"compare_error": error}), own
    changed: set[str] = set()
    for f in compared.get("files") or []:
        if isinstance(f, dict):  # a rename counts on both sides
            changed |= {p for p in (f.get("filename"), f.get("previous_filename")) if isinstance(p, str)}
    delivered = set(deps.store.files(job.id))
    code = sorted(p for p in changed if not _bots_own(p, delivered))
    if not code:
        return record, own
    head_repo, head_ref = str(intent.detail.get("head_repo") or ""), str(intent.detail.get("head_ref") or "")
    try:
        url = deps.settings.candidate_git_url.format(repo=head_repo)
        cand = Candidate(repo=head_repo, ref=head_ref, sha=head, url=url)
    except ValueError as exc:
        error = f"the pushed head cannot be a candidate ({exc}); {docs_only}"
        return record.model_copy(update={"compare_error": error}), own
    shown = {"code_files": code[:PUSH_FILES_SHOWN], "code_total": len(code), "candidate": True}
    return record.model_copy(update=shown), cand


#: how long a rerun remembers it moved its job (the ledger gives up on an intent after 24 h)
RERUN_APPLIED_TTL_S = 2 * 24 * 3600


def _after_rerun(intent: Intent, deps: Deps, gh: InstallationClient, job: Job, stage: str) -> str:
    """Every step after the transition is idempotent: the stage is enqueued once per attempt, the
    status comment edited in place, the reply found by its marker."""
    try:
        refresh_status(deps, gh, job.id)
    finally:
        enqueue_stage(deps, deps.store.get(job.id) or job)
    _reply(gh, intent, "rerun", job=job, detail=stage)
    _react(gh, intent, "rocket")
    return f"rerun {stage} of {job.id}"


def _pr_closed(intent: Intent, deps: Deps, gh: InstallationClient) -> str:
    """The PR's life ended. Merged: the closing summary (once, by marker) and the issue closed when
    `delivery.close_issue_on_merge`; closed unmerged: the bot's own branch deleted. Then the job is
    archived (a running re-gate is cancelled first). Each step is idempotent and archiving comes
    last, so a redelivery after a crash finishes the steps and one after success does nothing."""
    assert intent.repo is not None
    job = deps.store.for_pr(intent.repo, intent.pr or 0)
    if job is None:
        return "ignored: not a job's pull request"
    if job.archived:
        return f"ignored: job {job.id} already archived"
    merged = bool(intent.merged)
    cfg = repo_config.load(gh, intent.repo, deps.settings, deps.redis).config
    done: list[str] = []
    if merged:
        close = cfg.delivery.close_issue_on_merge
        body = _render_closing(
            job, intent.pr or 0, merged_by=intent.sender, close_issue=close,
            status_url=status_url(job), jobs_url=deps.settings.public_url,
        )  # fmt: skip
        comments.publish_reply(gh, job.repo, job.issue, body, comments.reply_key("closing", job.id))
        done.append("summary posted")
        if close:
            gh.close_issue(job.repo, job.issue)
            done.append(f"issue #{job.issue} closed")
    else:
        branch = _bot_branch(job, intent.detail)
        if branch is not None:
            deleted = gh.delete_ref(job.repo, f"heads/{branch}")
            done.append(f"branch {branch} {'deleted' if deleted else 'already gone'}")
    if job.active:  # a re-gate still running for a PR that no longer exists
        deps.store.set_cancel(job)
        with contextlib.suppress(NoChange, TransitionError):
            deps.store.update(job.id, machine.request_cancel)
    with contextlib.suppress(NoChange):
        deps.store.update(job.id, lambda j: machine.archive(j, merged))
    refresh_status(deps, gh, job.id)
    what = "merged" if merged else "closed"
    return f"pr #{intent.pr} of {job.id} {what}: archived" + "".join(f"; {d}" for d in done)


def _render_closing(
    job: Job, pr: int, *, merged_by: str | None, close_issue: bool, status_url: str | None,
    jobs_url: str | None,
) -> str:  # fmt: skip
    from runners.links import job_url
    from runners.render import render

    return render(
        "comments/closing.md.j2",
        job=job,
        pr=pr,
        model=job.options.model,
        model_code=comments.code_span(job.options.model),
        merged_by=merged_by,
        close_issue=close_issue,
        status_url=status_url,
        job_url=job_url(jobs_url, job.id),
    )


def _bot_branch(job: Job, head: dict[str, Any]) -> str | None:
    """The PR's head branch when the bot made it: `adapt/...` as delivery names it for this job,
    on the job's (base) repository, never a fork's branch or one a human named."""
    from runners.artifacts import branch_name, model_names

    ref, repo = head.get("head_ref"), head.get("head_repo")
    expected = branch_name(model_names(job.options.model_copy(update={"issue": job.issue})), job.issue)
    if repo != job.repo or ref != expected or not expected.startswith("adapt/"):
        log.info("job %s: PR head %s:%s is not the bot's branch %s; kept", job.id, repo, ref, expected)
        return None
    return expected
