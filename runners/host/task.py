"""The runner-side Celery task: run ONE attempt of ONE stage on this host and hand back its result.

The task receives a `StageRequest` (everything the stage needs, including the attempt's token),
claims the attempt, keeps a heartbeat, runs `runners.pipeline.execute_stage`, and sends `started`,
`progress` and `result` events through its pool's inbox. It never reads a job record, never
talks to GitHub and never receives credentials; the control plane validates what it sends.
Cancellation is the job's cancel flag polled through the cancel token; the stage's time limit is
part of the same token, so a stage that runs too long stops itself (and its model server) cleanly,
with the Celery soft/hard limits as a backstop.
"""

from __future__ import annotations

import logging
import os
import socket
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from runners.contracts import MAX_FILE_BYTES, MAX_FILES, StageRequest, StageResult, utcnow
from runners.host import logs
from runners.host.channel import EventTooLarge, Heartbeat, RunnerChannel
from runners.host.settings import RunnerSettings, effective_redis_url, get_runner_settings
from runners.workspace import Workspace

log = logging.getLogger(__name__)


class ChannelCancel:
    """Cancel token: set when the job's cancel flag is set or the stage's deadline has passed."""

    def __init__(self, channel: RunnerChannel, deadline: float, poll_s: float = 0.5) -> None:
        self.channel = channel
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
                self._flag = self.channel.cancel_set()
            except Exception:  # Redis restarting: keep running, ask again next poll
                log.warning("cancel flag unreadable for job %s", self.channel.req.job_id)
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
        if len(out) >= MAX_FILES:
            log.warning("more than %d artifact files under %s; the rest are not sent", MAX_FILES, base)
            break
    return out


def collect_files(ws: Workspace) -> tuple[dict[str, str], dict[str, str]]:
    """(files to commit, repo-relative) and (reports: `*.md` directly under artifacts/, by name)."""
    return _texts(ws.repo_files, "**/*"), _texts(ws.artifacts, "*.md")


def _hydrate(ws: Workspace, previous: Mapping[str, StageResult]) -> None:
    """Put the earlier stages' results the request carries into this host's workspace."""
    for result in previous.values():
        if ws.load_result(result.stage) is None:
            ws.save_result(result)


_clients: dict[str, Any] = {}


def redis_client(settings: RunnerSettings) -> Any:
    """A pooled client as the pool's ACL user (retrying on a fresh connection after a restart)."""
    import redis
    from redis.backoff import ExponentialBackoff
    from redis.retry import Retry

    url = effective_redis_url(settings)
    if url not in _clients:
        _clients[url] = redis.Redis.from_url(
            url,
            decode_responses=True,
            retry=Retry(ExponentialBackoff(cap=2.0, base=0.1), 5),
            retry_on_error=[redis.ConnectionError, redis.TimeoutError, ConnectionResetError],
            health_check_interval=30,
        )
    return _clients[url]


def run_stage(request: dict[str, Any], work_root: str | None = None) -> str:
    """Celery task body (`runners.host.task.run_stage`); returns what happened, for the worker log."""
    try:
        req = StageRequest.model_validate(request)
    except ValidationError as exc:
        log.error("dropping a malformed stage request: %s", exc.errors()[:3])
        return "invalid"
    settings = get_runner_settings()
    channel = RunnerChannel(redis_client(settings), req)
    owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
    if not channel.claim(owner, settings.heartbeat_ttl_s):
        log.info(
            "job %s: %s attempt %d is held by a live runner; dropping this copy",
            req.job_id,
            req.stage,
            req.attempt,
        )
        return "duplicate"
    with Heartbeat(channel, owner, settings.heartbeat_ttl_s):
        return _run_claimed(channel, settings, req, Path(work_root) if work_root else settings.work_root)


def _run_claimed(
    channel: RunnerChannel, settings: RunnerSettings, req: StageRequest, root: Path | None
) -> str:
    from runners.pipeline import execute_stage

    ws = Workspace.for_job(req.job_id, root)
    done = ws.load_result(req.stage)
    if done is not None and done.attempt == req.attempt:  # finished here before; the event was lost
        _send_result(channel, ws, done)
        return "reported"

    deliveries = channel.count_delivery()
    if deliveries > settings.max_stage_attempts:
        result = StageResult(
            stage=req.stage,
            status="error",
            reason="worker-lost",
            diagnosis=f"the runner died {deliveries - 1} times while running {req.stage}",
            next_step=f"check the runner host's logs, then `/adapt rerun {req.stage}`",
            finished_at=utcnow(),
            attempt=req.attempt,
        )
        _send_result(channel, ws, result)
        return "worker-lost"

    if channel.cancel_set():  # cancelled while queued: do not start anything
        _send_result(channel, ws, _cancelled(req))
        return "cancelled"
    channel.started()
    _hydrate(ws, req.previous)
    cancel = ChannelCancel(channel, time.monotonic() + req.timeout_s)

    def progress(line: str) -> None:
        try:
            channel.progress(line)
        except Exception:
            log.warning("progress line lost for job %s", req.job_id)

    result = execute_stage(
        req.job_id,
        req.stage,
        req.options,
        attempt=req.attempt,
        cancel=cancel,
        progress=progress,
        work_root=root,
        target_repo=settings.target_repo,
        vllm_root=settings.vllm_root,
        vllm_ascend_root=settings.vllm_ascend_root,
        # the real gate, capacity and accuracy share one real-weight start (runners.shared_start):
        # a server kept between this stage's task and the next one watches the job's cancel flag
        share_servers=True,
        job_cancelled=channel.cancel_set,
    )
    if cancel.timed_out and not result.ok:
        result.reason = "timeout"
        result.diagnosis = f"{req.stage} exceeded its time limit of {req.timeout_s} s and was stopped"
        result.next_step = result.next_step or f"`/adapt rerun {req.stage}` (or raise the stage timeout)"
        ws.save_result(result)
    _send_result(channel, ws, result)
    return result.status


def _cancelled(req: StageRequest) -> StageResult:
    return StageResult(
        stage=req.stage,
        status="error",
        reason="cancelled",
        diagnosis=f"the job was cancelled before {req.stage} started on this runner",
        finished_at=utcnow(),
        attempt=req.attempt,
    )


def _too_large(result: StageResult, why: str) -> StageResult:
    return StageResult(
        stage=result.stage,
        status="error",
        reason="result-too-large",
        diagnosis=f"the {result.stage} result could not be sent back: {why}",
        next_step=f"check the files the stage wrote on the runner, then `/adapt rerun {result.stage}`",
        finished_at=utcnow(),
        attempt=result.attempt,
    )


def _send_result(channel: RunnerChannel, ws: Workspace, result: StageResult) -> None:
    fields: dict[str, Any] = {"result": result, "logs": logs.pack(ws.logs, result.started_at.timestamp() - 1)}
    if result.stage == "artifacts":
        fields["files"], fields["reports"] = collect_files(ws)
    try:
        channel.result(fields)
    except EventTooLarge:  # the result matters more than its logs
        log.warning(
            "job %s: %s result too large with its logs; sending it without", channel.req.job_id, result.stage
        )
        fields["logs"] = {}
        try:
            channel.result(fields)
        except EventTooLarge as exc:
            channel.result({"result": _too_large(result, str(exc))})
