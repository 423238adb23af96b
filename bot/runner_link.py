"""The control plane's side of the runner channel (see runners/host/keys.py for the key space).

Out: `send_stage` builds the attempt's `StageRequest` (options, earlier results, time limit and a
random per-attempt token) and publishes it to the pool's queue under the pool's key prefix.
In: `Inbox` consumes every pool's event stream (a Redis consumer group, so an event is handled
once and survives a control-worker crash) and `accept_event` decides what an event may change.

A runner event changes a job only when its pool is the job's pool, its token is the one sent for
that exact (stage, attempt), and the attempt is still current; a result must also pass
`bot.result_policy`. A result with a valid token but refused content fails the stage with reason
`result-refused` (reported on the issue); an event without a valid token is dropped and counted:
reporting it would let a runner make the App post on any issue.
"""

from __future__ import annotations

import functools
import hmac
import logging
import secrets
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from bot.jobs import machine
from bot.jobs.logs import LogStoreError
from bot.jobs.machine import NoChange
from bot.jobs.model import Job
from bot.jobs.store import JobStore
from bot.result_policy import Expected, refusals
from runners.contracts import MAX_EVENT_BYTES, RunnerEvent, StageRequest, StageResult, stages_before, utcnow
from runners.host import keys
from runners.host.worker import RUN_STAGE, transport_options

log = logging.getLogger(__name__)

GROUP = "control"
#: Events refused before they could be tied to an attempt (bad JSON, unknown job, wrong token).
DROPPED = "adapt:metrics:runner_events_dropped"


def _tokens_key(job_id: str) -> str:
    return f"adapt:job:{job_id}:tokens"


def attempt_token(r: Any, job_id: str, stage: str, attempt: int) -> str:
    """The attempt's token, created once (a watchdog re-send carries the same one)."""
    key, field = _tokens_key(job_id), f"{stage}:{attempt}"
    r.hsetnx(key, field, secrets.token_urlsafe(24))
    return str(r.hget(key, field))


def request_for(store: JobStore, job: Job, stage: str, attempt: int, timeout_s: int) -> StageRequest:
    results = store.results(job.id)
    return StageRequest(
        job_id=job.id,
        stage=stage,
        attempt=attempt,
        pool=job.pool,
        token=attempt_token(store.r, job.id, stage, attempt),
        options=job.options,
        previous={s: results[s] for s in stages_before(stage) if s in results},
        timeout_s=timeout_s,
    )


class PoolPublisher:
    """Publishes stage requests to a pool's queue with the pool's key prefix (one Celery app per
    pool, built on first use: kombu's prefix is a transport option of the connection)."""

    def __init__(self, broker_url: str, visibility_timeout_s: int) -> None:
        self.broker_url = broker_url
        self.visibility_timeout_s = visibility_timeout_s
        self._lock = threading.Lock()

    @functools.cache  # noqa: B019  (one publisher per process; pools are few)
    def _app(self, pool: str) -> Any:
        from celery import Celery

        app = Celery(f"adapt-bot-publish-{pool}", broker=self.broker_url, set_as_current=False)
        app.conf.update(
            task_serializer="json",
            accept_content=["json"],
            broker_transport_options=transport_options(pool, self.visibility_timeout_s),
            broker_connection_retry_on_startup=True,
        )
        return app

    def publish(self, request: StageRequest, soft_time_limit: int, time_limit: int) -> None:
        with self._lock:
            app = self._app(request.pool)
        app.send_task(
            RUN_STAGE,
            args=[request.model_dump(mode="json")],
            queue=request.pool,
            soft_time_limit=soft_time_limit,
            time_limit=time_limit,
        )


# -- the inbox ---------------------------------------------------------------------------------------
@dataclass
class Accepted:
    """What an event changed, and which control task must run next (name, args)."""

    outcome: str
    follow_up: tuple[str, tuple[Any, ...]] | None = None


def _drop(r: Any, pool: str, why: str) -> Accepted:
    log.warning("runner event on pool %s dropped: %s", pool, why)
    try:
        r.hincrby(DROPPED, pool, 1)
    except Exception:
        log.warning("could not count a dropped runner event", exc_info=True)
    return Accepted(f"dropped: {why}")


def parse_event(raw: str | None) -> RunnerEvent | str:
    """The event, or why it cannot be read."""
    if raw is None:
        return "entry has no event field"
    if len(raw) > 2 * MAX_EVENT_BYTES:
        return f"event of {len(raw)} characters"
    try:
        return RunnerEvent.model_validate_json(raw)
    except ValidationError as exc:
        return f"malformed event ({exc.error_count()} errors)"


def accept_event(store: JobStore, pool: str, raw: str | None, *, refresh_s: int = 60) -> Accepted:
    """Validate one runner event and apply what it may change (see the module docstring)."""
    r = store.r
    event = parse_event(raw)
    if isinstance(event, str):
        return _drop(r, pool, event)
    job = store.get(event.job_id) if keys_safe(event.job_id) else None
    if job is None:
        return _drop(r, pool, f"unknown job {event.job_id[:40]!r}")
    if job.pool != pool:
        return _drop(r, pool, f"job {job.id} runs on pool {job.pool}, not {pool}")
    want = r.hget(_tokens_key(job.id), f"{event.stage}:{event.attempt}")
    if want is None or not hmac.compare_digest(str(want), event.token):
        return _drop(r, pool, f"wrong token for job {job.id} {event.stage} attempt {event.attempt}")
    if job.state != f"running:{event.stage}" or job.attempts.get(event.stage) != event.attempt:
        return Accepted(f"stale: job is {job.state}")
    if event.kind == "started":
        try:
            store.update(job.id, lambda j: machine.mark_started(j, event.stage, event.attempt))
            store.clear_pending(job.id, event.stage, event.attempt)
        except NoChange:
            return Accepted("already started")
        return Accepted("started", ("bot.tasks.stage_started", (job.id, event.stage, event.attempt)))
    if event.kind == "progress":
        store.add_progress(job.id, event.stage, event.line or "")
        # keep the status comment alive during long stages, at most once per interval
        if store.claim_refresh(job.id, refresh_s):
            return Accepted("progress", ("bot.tasks.refresh", (job.id,)))
        return Accepted("progress")
    return _accept_result(store, job, event)


def keys_safe(job_id: str) -> bool:
    return 0 < len(job_id) <= 64 and job_id.replace("-", "").isalnum()


def _accept_result(store: JobStore, job: Job, event: RunnerEvent) -> Accepted:
    problems = refusals(event, Expected.for_job(job.options))
    stored = store.get_result(job.id, event.stage)
    if stored is not None and stored.attempt == event.attempt:
        return Accepted(
            "duplicate result", ("bot.tasks.stage_finished", (job.id, event.stage, event.attempt))
        )
    if problems:
        log.warning("job %s: result of %s refused: %s", job.id, event.stage, "; ".join(problems))
        result = StageResult(
            stage=event.stage,
            status="error",
            reason="result-refused",
            diagnosis="The runner's result was refused by the control plane: " + "; ".join(problems)[:1500],
            next_step=(
                "Check the runner host (a different adapt-bot version, or code that should not run "
                f"there), then `/adapt rerun {event.stage}`."
            ),
            finished_at=utcnow(),
            data={"refused": problems},
        )
    else:
        assert event.result is not None
        result = event.result
        if event.stage == "artifacts":
            store.save_files(job.id, event.files)
            store.save_reports(job.id, event.reports)
        store.save_logs(job.id, event.stage, event.logs)
    result.attempt = event.attempt
    store.save_result(job.id, result)
    return Accepted(
        "refused" if problems else "result",
        ("bot.tasks.stage_finished", (job.id, event.stage, event.attempt)),
    )


class Inbox:
    """Consumes the event streams of `pools` in a thread of the control worker.

    A consumer group per stream: an entry is acknowledged only after it was applied and its
    follow-up task queued, and entries a dead consumer left pending are claimed again after
    `reclaim_idle_ms`, so a control worker crash loses no event.
    """

    def __init__(
        self,
        store: JobStore,
        pools: Iterable[str],
        follow_up: Callable[[str, tuple[Any, ...]], None],
        consumer: str,
        block_ms: int = 2000,
        reclaim_idle_ms: int = 30_000,
        refresh_s: int = 60,
    ) -> None:
        self.refresh_s = refresh_s
        self.store = store
        self.r = store.r
        self.pools = [keys.check_pool(p) for p in pools]
        self.follow_up = follow_up
        self.consumer = consumer
        self.block_ms = block_ms
        self.reclaim_idle_ms = reclaim_idle_ms
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _ensure_groups(self) -> None:
        import redis

        for pool in self.pools:
            try:
                self.r.xgroup_create(keys.inbox(pool), GROUP, id="0", mkstream=True)
            except redis.ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise

    def _handle(self, stream: str, entry_id: str, fields: dict[str, str]) -> None:
        pool = stream.rsplit(":", 1)[1]
        accepted = accept_event(self.store, pool, fields.get("event"), refresh_s=self.refresh_s)
        if accepted.follow_up is not None:
            self.follow_up(*accepted.follow_up)
        self.r.xack(stream, GROUP, entry_id)
        self.r.xdel(stream, entry_id)

    def poll_once(self) -> int:
        """Handle what is waiting (reclaimed entries first); returns how many entries were handled."""
        self._ensure_groups()
        n = 0
        for pool in self.pools:
            stream = keys.inbox(pool)
            _next, claimed, *_ = self.r.xautoclaim(
                stream, GROUP, self.consumer, self.reclaim_idle_ms, "0-0", 100
            )
            for entry_id, fields in claimed:
                if fields is not None:
                    self._handle(stream, entry_id, fields)
                    n += 1
        streams = {keys.inbox(p): ">" for p in self.pools}
        for stream, entries in (
            self.r.xreadgroup(GROUP, self.consumer, streams, count=100, block=self.block_ms) or []
        ):
            for entry_id, fields in entries:
                self._handle(stream, entry_id, fields)
                n += 1
        return n

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.poll_once()
            except LogStoreError as exc:  # the result waits (pending) until its logs can be stored
                log.warning("%s; the stage result stays pending and is applied when it answers", exc)
                self._stop.wait(5.0)
            except Exception:  # Redis away: the entries stay pending and are handled later
                log.warning("runner inbox poll failed; will retry", exc_info=True)
                self._stop.wait(1.0)

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="adapt-runner-inbox", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
            self._thread = None
