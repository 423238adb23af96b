"""The intent outbox: the webhook answers as soon as an intent is stored; a publisher thread hands it
to Celery moments later.

Why: publishing a Celery message costs milliseconds of Python per call, more than everything else
the webhook does, and it must not sit on the request path (answer fast, never after doing work).
The Lua call that dedupes a delivery also adds the new intent ids to `adapt:outbox` atomically, so
nothing is lost if the process dies after answering: ids are claimed with a lease, published, then
acknowledged; a claim whose lease expired (publisher died mid-way) goes back to the outbox and any
web process's publisher sends it. A crash between publish and acknowledge can publish an intent
twice; applying is exactly-once anyway (bot.ledger: lock, per-intent state, owner token).

Every entry stays in the pending ledger until it is applied. A publisher re-arms all pending
entries when it starts and whenever Redis restarts under it (its `run_id` changes): a message that
kombu parked in `unacked` (until the visibility timeout, hours) or a countdown retry held by a
worker that died is sent again at once with a new owner token, and the old copy, if it ever comes
back, finds its token stale and does nothing.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from bot.intents import Queue
from bot.ledger import PENDING, Ledger

log = logging.getLogger(__name__)

OUTBOX = "adapt:outbox"
CLAIMED = "adapt:outbox:claimed"
#: The accept script pushes a token here; publishers block on it (BLPOP) instead of polling.
WAKE = "adapt:outbox:wake"

_CLAIM_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local expired = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now)
for _, id in ipairs(expired) do
  redis.call('ZREM', KEYS[2], id)
  redis.call('ZADD', KEYS[1], now, id)
end
local ids = redis.call('ZRANGE', KEYS[1], 0, tonumber(ARGV[2]) - 1)
for _, id in ipairs(ids) do
  redis.call('ZREM', KEYS[1], id)
  redis.call('ZADD', KEYS[2], now + tonumber(ARGV[1]), id)
end
return ids
"""


# Put every pending entry that is not already waiting in the outbox (or being published) back in.
_REARM_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local n = 0
for _, entry in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  if not redis.call('ZSCORE', KEYS[2], entry) and not redis.call('ZSCORE', KEYS[3], entry) then
    redis.call('ZADD', KEYS[2], now, entry)
    n = n + 1
  end
end
if n > 0 then
  redis.call('HINCRBY', 'adapt:metrics:intents', 'rearmed', n)
end
return n
"""


class Outbox:
    def __init__(
        self,
        r: Any,
        queue: Queue,
        lease_s: float = 30.0,
        poll_s: float = 1.0,
        *,
        sweeper: Callable[[], list[str]] | None = None,
        sweep_every_s: float = 300.0,
    ) -> None:
        #: The control worker's redelivery sweep (bot.api.redeliver), run from this thread.
        self.sweeper = sweeper
        self.sweep_every_s = sweep_every_s
        self._next_sweep = 0.0
        self.r = r  # a sync client: the publisher is a thread
        self.queue = queue
        self.lease_s = lease_s
        self.poll_s = poll_s
        self._claim = r.register_script(_CLAIM_LUA)
        self._rearm = r.register_script(_REARM_LUA)
        self.ledger = Ledger(r)
        self._run_id: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def publish_pending(self, batch: int = 100) -> int:
        """Claim, publish and acknowledge waiting intents; returns how many were sent."""
        sent = 0
        while True:
            ids = self._claim(keys=[OUTBOX, CLAIMED], args=[self.lease_s, batch])
            if not ids:
                return sent
            done: list[str] = []
            try:
                for entry in ids:
                    self.queue.control("bot.tasks.apply_intent", entry, self.ledger.arm(entry))
                    done.append(entry)
            finally:
                if done:
                    self.r.zrem(CLAIMED, *done)
                sent += len(done)

    def rearm_pending(self) -> int:
        """Send every pending entry again (new owner token): after a start or a Redis restart."""
        n = int(self._rearm(keys=[PENDING, OUTBOX, CLAIMED]))
        if n:
            log.info("outbox: re-armed %d pending deliveries", n)
        return n

    def _watch_restart(self) -> None:
        run_id = str(self.r.info("server")["run_id"])
        if run_id != self._run_id:  # first look, or Redis restarted under us
            self.rearm_pending()
            self._run_id = run_id

    def _sweep_when_due(self) -> None:
        if self.sweeper is None or time.monotonic() < self._next_sweep:
            return
        self._next_sweep = time.monotonic() + self.sweep_every_s
        try:
            self.sweeper()
        except Exception:  # GitHub away: the next sweep asks again
            log.warning("redelivery sweep failed; will retry", exc_info=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._watch_restart()
                self._sweep_when_due()
                self.r.blpop([WAKE], timeout=self.poll_s)  # woken by the accept script, or poll
                self.publish_pending()
            except Exception:  # broker or Redis away: the claims expire and are retried
                log.warning("outbox publish failed; will retry", exc_info=True)
                self._stop.wait(1.0)

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="adapt-outbox", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
            self._thread = None
        try:
            self.publish_pending()  # hand over what arrived during shutdown
        except Exception:
            log.warning("outbox not empty at shutdown; another web process will publish it", exc_info=True)
