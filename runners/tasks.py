"""The runner-side Celery task: run ONE stage of a job on this host, store the result, report.

Runs on a pool queue (`cpu`, `a2-8`, ...). It reads the job from Redis, never talks to GitHub and
never receives credentials; the control plane (`bot.tasks.stage_finished`) takes it from there.
Cancellation is a Redis flag polled through the cancel token; the stage's time limit is part of the
same token, so a stage that runs too long stops itself (and its model server) cleanly, with the
Celery soft/hard limits as a backstop.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from bot.config import get_settings
from bot.jobs import machine
from bot.jobs.machine import NoChange
from bot.jobs.store import JobStore
from bot.redis_conn import client
from runners.contracts import StageResult, utcnow
from runners.workspace import Workspace

log = logging.getLogger(__name__)

#: Text files larger than this are not shipped back through Redis.
MAX_FILE_BYTES = 2 * 1024 * 1024


class RedisCancel:
    """Cancel token: set when the job's cancel flag is set or the stage's deadline has passed."""

    def __init__(self, store: JobStore, job_id: str, deadline: float, poll_s: float = 0.5) -> None:
        self.store = store
        self.job_id = job_id
        self.deadline = deadline
        self.poll_s = poll_s
        self._last = 0.0
        self._flag = False
        self.timed_out = False

    def is_set(self) -> bool:
        if self._flag:
            return True
        now = time.monotonic()
        if now >= self.deadline:
            self.timed_out = self._flag = True
            return True
        if now - self._last >= self.poll_s:
            self._last = now
            try:
                self._flag = self.store.cancel_set(self.job_id)
            except Exception:  # Redis restarting: keep running, ask again next poll
                log.warning("cancel flag unreadable for job %s", self.job_id)
        return self._flag


def _texts(base: Path, pattern: str) -> dict[str, str]:
    out: dict[str, str] = {}
    if not base.is_dir():
        return out
    for path in sorted(base.glob(pattern)):
        if not path.is_file() or path.stat().st_size > MAX_FILE_BYTES:
            continue
        rel = path.relative_to(base).as_posix()
        try:
            out[rel] = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            log.warning("skipping non-text artifact %s", rel)
    return out


def collect_files(ws: Workspace) -> tuple[dict[str, str], dict[str, str]]:
    """(files to commit, repo-relative) and (reports: `*.md` directly under artifacts/, by name)."""
    return _texts(ws.repo_files, "**/*"), _texts(ws.artifacts, "*.md")


def _hydrate(ws: Workspace, stored: dict[str, StageResult], stage: str) -> None:
    """Put stored results of earlier stages into this host's workspace (a rerun may land elsewhere)."""
    from runners.pipeline import stages_before

    for s in stages_before(stage):
        if s in stored and ws.load_result(s) is None:
            ws.save_result(stored[s])


def run_stage(job_id: str, stage: str, attempt: int, work_root: str | None = None) -> str:
    settings = get_settings()
    store = JobStore(client(settings))
    job = store.get(job_id)
    if job is None:
        log.warning("job %s not found; dropping %s", job_id, stage)
        return "missing"
    if job.state != f"running:{stage}" or job.attempts.get(stage) != attempt:
        log.info("job %s is %s; %s attempt %d is stale", job_id, job.state, stage, attempt)
        return "stale"
    stored = store.get_result(job_id, stage)
    if stored is not None and stored.attempt == attempt:  # finished before; the report was lost
        _report(job_id, stage, attempt)
        return "reported"

    owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
    if not store.claim_run(job_id, stage, attempt, owner, settings.heartbeat_ttl_s):
        log.info("job %s: %s attempt %d is held by a live runner; dropping this copy", job_id, stage, attempt)
        return "duplicate"
    with Heartbeat(store, job_id, stage, attempt, owner, settings.heartbeat_ttl_s):
        return _run_claimed(store, settings, job, stage, attempt, work_root)


class Heartbeat:
    """Refresh the stage claim while the stage runs (a thread: stages block in subprocess waits)."""

    def __init__(
        self, store: JobStore, job_id: str, stage: str, attempt: int, owner: str, ttl_s: int
    ) -> None:
        self.args = (job_id, stage, attempt, owner)
        self.store = store
        self.ttl_s = ttl_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="adapt-heartbeat", daemon=True)

    def _loop(self) -> None:
        while not self._stop.wait(max(1.0, self.ttl_s / 4)):
            try:
                self.store.heartbeat(*self.args, self.ttl_s)
            except Exception:  # Redis restarting: the TTL leaves room for a few misses
                log.warning("heartbeat for job %s not refreshed", self.args[0])

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)
        try:
            self.store.release_run(*self.args)
        except Exception:
            log.warning("claim of job %s not released; it expires with its TTL", self.args[0])


def _run_claimed(
    store: JobStore, settings: Any, job: Any, stage: str, attempt: int, work_root: str | None
) -> str:
    from runners.pipeline import execute_stage

    job_id = job.id
    deliveries = store.count_delivery(job_id, stage, attempt)
    if deliveries > settings.max_stage_attempts:
        result = StageResult(
            stage=stage,
            status="error",
            reason="worker-lost",
            diagnosis=f"the runner died {deliveries - 1} times while running {stage}",
            next_step=f"check the runner host's logs, then `/adapt rerun {stage}`",
            finished_at=utcnow(),
            attempt=attempt,
        )
        store.save_result(job_id, result)
        _report(job_id, stage, attempt)
        return "worker-lost"

    try:
        store.update(job_id, lambda j: machine.mark_started(j, stage, attempt))
        _send("bot.tasks.stage_started", job_id, stage, attempt)
    except NoChange:
        pass
    root = Path(work_root) if work_root else None
    ws = Workspace.for_job(job_id, root)
    _hydrate(ws, store.results(job_id), stage)
    timeout = settings.stage_timeout(stage)
    cancel = RedisCancel(store, job_id, time.monotonic() + timeout)

    def progress(line: str) -> None:
        try:
            store.add_progress(job_id, stage, line)
            # keep the status comment alive during long stages, at most once per interval
            if store.claim_refresh(job_id, settings.status_refresh_s):
                _send("bot.tasks.refresh", job_id)
        except Exception:
            log.warning("progress line lost for job %s", job_id)

    result = execute_stage(
        job_id,
        stage,
        job.options,
        attempt=attempt,
        cancel=cancel,
        progress=progress,
        work_root=root,
        target_repo=settings.target_repo,
        vllm_root=settings.vllm_root,
        vllm_ascend_root=settings.vllm_ascend_root,
    )
    if cancel.timed_out and not result.ok:
        result.reason = "timeout"
        result.diagnosis = f"{stage} exceeded its time limit of {timeout} s and was stopped"
        result.next_step = result.next_step or f"`/adapt rerun {stage}` (or raise the stage timeout)"
    if stage == "artifacts":
        files, reports = collect_files(ws)
        store.save_files(job_id, files)
        store.save_reports(job_id, reports)
    store.save_result(job_id, result)
    _report(job_id, stage, attempt)
    return result.status


def _send(task: str, *args: object) -> None:
    from celery import current_app

    current_app.send_task(task, args=list(args), queue="control")


def _report(job_id: str, stage: str, attempt: int) -> None:
    _send("bot.tasks.stage_finished", job_id, stage, attempt)
