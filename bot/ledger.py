"""The intent ledger: every accepted delivery stays durable and visible in Redis until it is applied.

Why: an accepted webhook is a promise. GitHub does not resend a delivery we answered 2xx, so an
intent that failed on a GitHub outage must be retried by us (Celery countdown retries, for hours,
bounded by its age), must not be applied twice (one lock per delivery, a state per intent), and must
be visible while it waits (`/metrics`, the jobs page).

Keys (all on the service's Redis):

- `adapt:pending` ZSET: outbox entry (the delivery's intent ids, space-separated) -> accepted at (s)
- `adapt:pending:arm` HASH: entry -> token of the Celery message chain that owns it. Re-arming
  (after a Redis or worker restart) gives a new token; copies of older chains then do nothing, so a
  message parked in kombu's `unacked` until the visibility timeout can never apply anything twice.
- `adapt:pending:retries` / `adapt:pending:error` HASH: entry -> retries so far / last error
- `adapt:istate:<intent id>`: pending | applied | dropped | gave-up. The accept script re-arms a
  redelivered (or second-hook) copy of an intent that is neither pending nor applied, so dedupe
  never refuses GitHub's redelivery of something we did not do.
- `adapt:metrics:intents` HASH: counters (retries, applied, dropped, gave_up, rearmed)
"""

from __future__ import annotations

import contextlib
import logging
import random
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import redis

log = logging.getLogger(__name__)

PENDING = "adapt:pending"
ARM = "adapt:pending:arm"
RETRIES = "adapt:pending:retries"
ERRORS = "adapt:pending:error"
METRICS = "adapt:metrics:intents"
INTENT_TTL_S = 7 * 24 * 3600

APPLIED = "applied"
DROPPED = "dropped"
GAVE_UP = "gave-up"
IN_FLIGHT = "pending"


def state_key(intent_id: str) -> str:
    return f"adapt:istate:{intent_id}"


class Busy(Exception):
    """Another copy of this delivery is being applied right now; try again shortly."""


def is_transient(exc: BaseException) -> bool:
    """May a later attempt succeed? GitHub 5xx/timeouts/rate limits, Redis or network trouble."""
    from bot.github import GitHubError, RetryLater

    if isinstance(exc, GitHubError):
        return exc.transient
    return isinstance(
        exc,
        RetryLater
        | Busy
        | redis.ConnectionError
        | redis.TimeoutError
        | redis.exceptions.LockError
        | httpx.TransportError
        | ConnectionError
        | TimeoutError,
    )


def backoff_s(retries: int, base_s: float, max_s: float) -> float:
    """Exponential backoff with jitter: base * 2^retries, capped, times 0.75..1.25."""
    return min(max_s, base_s * 2 ** min(retries, 30)) * (0.75 + random.random() / 2)  # noqa: S311


@dataclass(frozen=True)
class PendingEntry:
    entry: str
    accepted_at: float
    retries: int
    error: str | None

    @property
    def ids(self) -> list[str]:
        return self.entry.split()


class Ledger:
    def __init__(self, r: Any) -> None:
        self.r = r  # sync client, decode_responses=True

    # -- arming ---------------------------------------------------------------------------------------
    def arm(self, entry: str) -> str:
        """A new owner token for the entry's message chain (the publisher sends it along)."""
        token = uuid.uuid4().hex[:16]
        self.r.hset(ARM, entry, token)
        return token

    def is_current(self, entry: str, token: str) -> bool:
        current = self.r.hget(ARM, entry)
        return current is None or current == token

    # -- applying -------------------------------------------------------------------------------------
    @contextlib.contextmanager
    def lock(self, entry: str, ttl_s: float = 30.0, wait_s: float = 10.0) -> Iterator[None]:
        """One applier per delivery. A lease of `ttl_s`, renewed every third of it while held: a
        worker that dies mid-apply (SIGKILL, Redis restart) blocks the next one for at most ttl_s."""
        lock = self.r.lock(
            f"adapt:lock:intent:{entry}", timeout=ttl_s, blocking_timeout=wait_s, thread_local=False
        )
        if not lock.acquire():
            raise Busy(f"intents {entry} are being applied by another worker")
        stop = threading.Event()

        def renew() -> None:
            while not stop.wait(ttl_s / 3):
                with contextlib.suppress(redis.RedisError):
                    lock.reacquire()

        renewer = threading.Thread(target=renew, name="adapt-intent-lease", daemon=True)
        renewer.start()
        try:
            yield
        finally:
            stop.set()
            renewer.join(5)
            with contextlib.suppress(redis.RedisError):
                lock.release()

    def state(self, intent_id: str) -> str | None:
        value = self.r.get(state_key(intent_id))
        return str(value) if value is not None else None

    def mark(self, intent_id: str, state: str) -> None:
        pipe = self.r.pipeline()
        pipe.set(state_key(intent_id), state, ex=INTENT_TTL_S)
        pipe.hincrby(METRICS, state.replace("-", "_"), 1)
        pipe.execute()

    def finish(self, entry: str) -> None:
        """Every intent of the entry is applied or dropped: it leaves the pending set."""
        pipe = self.r.pipeline()
        pipe.zrem(PENDING, entry)
        pipe.hdel(ARM, entry)
        pipe.hdel(RETRIES, entry)
        pipe.hdel(ERRORS, entry)
        pipe.execute()

    def age_s(self, entry: str) -> float | None:
        score = self.r.zscore(PENDING, entry)
        return None if score is None else max(0.0, time.time() - float(score))

    def note_retry(self, entry: str, error: str) -> int:
        pipe = self.r.pipeline()
        pipe.hincrby(RETRIES, entry, 1)
        pipe.hset(ERRORS, entry, error[:300])
        pipe.hincrby(METRICS, "retries", 1)
        return int(pipe.execute()[0])

    def give_up(self, entry: str) -> None:
        """Too old to retry: out of the pending set; a redelivery of it re-arms it."""
        for intent_id in entry.split():
            if self.state(intent_id) not in (APPLIED, DROPPED):
                self.mark(intent_id, GAVE_UP)
        self.finish(entry)

    # -- visibility -----------------------------------------------------------------------------------
    def pending(self, limit: int = 200) -> list[PendingEntry]:
        rows = self.r.zrange(PENDING, 0, limit - 1, withscores=True)
        if not rows:
            return []
        entries = [e for e, _ in rows]
        retries = self.r.hmget(RETRIES, entries)
        errors = self.r.hmget(ERRORS, entries)
        return [
            PendingEntry(e, float(score), int(n or 0), err)
            for (e, score), n, err in zip(rows, retries, errors, strict=True)
        ]

    def stats(self) -> dict[str, float]:
        pipe = self.r.pipeline(transaction=False)
        pipe.zcard(PENDING)
        pipe.zrange(PENDING, 0, 0, withscores=True)
        pipe.hgetall(METRICS)
        n, oldest, counters = pipe.execute()
        out = {f"counter:{k}": float(v) for k, v in counters.items()}
        out["pending"] = float(n)
        out["oldest_age_s"] = max(0.0, time.time() - float(oldest[0][1])) if oldest else 0.0
        return out
