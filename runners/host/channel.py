"""The runner's side of the channel: claim an attempt, keep it alive, read the cancel flag, send
events. Nothing here can read a job record or write anything the control plane acts on unchecked:
every event carries the attempt's token and is validated again on the control plane.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from runners.contracts import MAX_EVENT_BYTES, MAX_PROGRESS_CHARS, RunnerEvent, StageRequest
from runners.host import keys

log = logging.getLogger(__name__)

#: Inbox streams are capped (approximately) so a runner cannot fill Redis; the control plane
#: consumes them continuously, so this only bites a flood.
INBOX_MAXLEN = 10_000

_IF_OWNER = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call("
_REFRESH = _IF_OWNER + "'expire', KEYS[1], ARGV[2]) end return 0"
_RELEASE = _IF_OWNER + "'del', KEYS[1]) end return 0"


class EventTooLarge(ValueError):
    """A result that would exceed the channel's bound (the control plane would refuse it)."""


class RunnerChannel:
    """One attempt's channel (`request` names the pool, job, stage, attempt and token)."""

    def __init__(self, client: Any, request: StageRequest) -> None:
        self.r = client
        self.req = request
        self.pool = request.pool

    # -- claim and heartbeat ----------------------------------------------------------------------
    def _claim_key(self) -> str:
        return keys.claim(self.pool, self.req.job_id, self.req.stage, self.req.attempt)

    def claim(self, owner: str, ttl_s: int) -> bool:
        """One runner at a time per attempt; the claim lives while its heartbeat does."""
        return bool(self.r.set(self._claim_key(), owner, nx=True, ex=ttl_s))

    def heartbeat(self, owner: str, ttl_s: int) -> bool:
        return bool(self.r.eval(_REFRESH, 1, self._claim_key(), owner, ttl_s))

    def release(self, owner: str) -> None:
        self.r.eval(_RELEASE, 1, self._claim_key(), owner)

    def count_delivery(self) -> int:
        key = keys.deliveries(self.pool, self.req.job_id, self.req.stage, self.req.attempt)
        pipe = self.r.pipeline()
        pipe.incr(key)
        pipe.expire(key, 30 * 24 * 3600)
        return int(pipe.execute()[0])

    def cancel_set(self) -> bool:
        return bool(self.r.exists(keys.cancel_flag(self.pool, self.req.job_id)))

    # -- events -----------------------------------------------------------------------------------
    def _event(self, kind: str, **fields: Any) -> RunnerEvent:
        r = self.req
        return RunnerEvent.model_validate(
            {"kind": kind, "job_id": r.job_id, "stage": r.stage, "attempt": r.attempt, "token": r.token}
            | fields
        )

    def send(self, event: RunnerEvent) -> str:
        body = event.model_dump_json()
        if len(body.encode()) > MAX_EVENT_BYTES:
            raise EventTooLarge(f"{event.kind} event is {len(body.encode())} bytes (limit {MAX_EVENT_BYTES})")
        return str(self.r.xadd(keys.inbox(self.pool), {"event": body}, maxlen=INBOX_MAXLEN, approximate=True))

    def started(self) -> None:
        self.send(self._event("started"))

    def progress(self, line: str) -> None:
        self.send(self._event("progress", line=line[:MAX_PROGRESS_CHARS]))

    def result(self, event_fields: dict[str, Any]) -> str:
        return self.send(self._event("result", **event_fields))


class Heartbeat:
    """Refresh the attempt's claim while the stage runs (a thread: stages block in subprocess waits)."""

    def __init__(self, channel: RunnerChannel, owner: str, ttl_s: int) -> None:
        self.channel = channel
        self.owner = owner
        self.ttl_s = ttl_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="adapt-heartbeat", daemon=True)

    def _loop(self) -> None:
        while not self._stop.wait(max(1.0, self.ttl_s / 4)):
            try:
                self.channel.heartbeat(self.owner, self.ttl_s)
            except Exception:  # Redis restarting: the TTL leaves room for a few misses
                log.warning("heartbeat for job %s not refreshed", self.channel.req.job_id)

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)
        try:
            self.channel.release(self.owner)
        except Exception:
            log.warning("claim of job %s not released; it expires with its TTL", self.channel.req.job_id)
