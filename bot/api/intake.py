"""Webhook intake logic apart from HTTP: parse, route, dedupe, store intents, enqueue.

`Intake.accept()` runs in the event loop after the body is read and verified. Routing is pure and
comes first: a delivery that asks for nothing is answered without touching Redis (there is nothing
to dedupe). One that yields intents goes through one atomic Lua call (SET NX EX on the delivery
GUID and on each intent's semantic key, intent stored) and its intent ids are published to Celery.
Outcome counters are kept per process and added to Redis every second (and before /metrics), so
several web processes report the same totals without a round trip per delivery.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import re
import uuid
from collections import Counter
from dataclasses import dataclass
from typing import Any

import orjson
import redis
import redis.asyncio

from bot import repo_config
from bot.api.outbox import OUTBOX, WAKE
from bot.api.spool import Spool
from bot.behaviours import ROUTER
from bot.config import Settings
from bot.events import EventContext
from bot.ledger import PENDING

log = logging.getLogger(__name__)

DELIVERIES = "adapt:metrics:deliveries"
INTENT_TTL_S = 7 * 24 * 3600
_EVENT_NAME = re.compile(r"^[a-z_]{1,50}$")

# One round trip per delivery that asks for something: dedupe the delivery GUID, then each
# intent's semantic key; new intents are stored and their ids, space-separated and in order, added
# to the outbox and to the pending ledger (bot.ledger) as one entry. Atomic, so concurrent copies
# of one event cannot both pass. A duplicate (same GUID, or another hook's copy) of an intent that
# was accepted but is neither pending nor applied (given up after its retry window, dropped, lost)
# is armed again instead of refused: dedupe marks what was done, not what was seen.
# KEYS: delivery key, outbox, outbox wake list, pending ledger, then (semantic key, intent key)
# per intent. ARGV: dedupe ttl, intent ttl, then (semantic ttl, intent json, intent id) per intent.
# Returns -1 for a duplicate delivery, -2 for a redelivery that re-armed intents, else a list of
# 1/2/0 (new/re-armed/duplicate) per intent.
_ACCEPT_LUA = """
local t = redis.call('TIME')
local now_us = tonumber(t[1]) * 1000000 + tonumber(t[2])
local now_s = tonumber(t[1]) + tonumber(t[2]) / 1000000
local function rearmable(id)
  if not id or id == '' or redis.call('EXISTS', 'adapt:intent:' .. id) == 0 then
    return false
  end
  local st = redis.call('GET', 'adapt:istate:' .. id)
  return st ~= 'pending' and st ~= 'applied'
end
local function enqueue(ids)
  local entry = table.concat(ids, ' ')
  redis.call('ZADD', KEYS[2], now_us, entry)
  redis.call('ZADD', KEYS[4], now_s, entry)
  for _, id in ipairs(ids) do
    redis.call('SET', 'adapt:istate:' .. id, 'pending', 'EX', ARGV[2])
  end
  redis.call('LPUSH', KEYS[3], '1')
  redis.call('LTRIM', KEYS[3], 0, 99)
  return entry
end
local prev = redis.call('GET', KEYS[1])
if prev then
  local again = {}
  for id in string.gmatch(prev, '%S+') do
    if rearmable(id) then again[#again + 1] = id end
  end
  if #again == 0 then
    return -1
  end
  enqueue(again)
  redis.call('HINCRBY', 'adapt:metrics:intents', 'rearmed', #again)
  return -2
end
local fresh = {}
local ids = {}
for i = 1, (#KEYS - 4) / 2 do
  local id = ARGV[3 * i + 2]
  if redis.call('SET', KEYS[3 + 2 * i], id, 'NX', 'EX', ARGV[3 * i]) then
    redis.call('SET', KEYS[4 + 2 * i], ARGV[3 * i + 1], 'EX', ARGV[2])
    ids[#ids + 1] = id
    fresh[i] = 1
  else
    local other = redis.call('GET', KEYS[3 + 2 * i])
    if rearmable(other) then
      ids[#ids + 1] = other
      fresh[i] = 2
      redis.call('HINCRBY', 'adapt:metrics:intents', 'rearmed', 1)
    else
      fresh[i] = 0
    end
  end
end
local entry = '-'
if #ids > 0 then
  -- one outbox entry per delivery: its intents are applied in the order they were written
  entry = enqueue(ids)
end
redis.call('SET', KEYS[1], entry, 'EX', ARGV[1])
return fresh
"""


def verify_signature(secret: bytes, body: bytes, header: str | None) -> bool:
    """Constant-time check of `X-Hub-Signature-256` (sha256=<hex HMAC of the raw body>)."""
    if not header or not header.startswith("sha256="):
        return False
    expected = "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected.encode(), header.strip().encode("ascii", "replace"))


@dataclass
class Answer:
    status: int
    body: dict[str, Any]


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def metric_event(event: str) -> str:
    return event if _EVENT_NAME.match(event or "") else "other"


def intake_client(settings: Settings) -> redis.asyncio.Redis:
    """The web process's Redis client: short timeouts and one quick retry, so a Redis outage costs
    a delivery about a second (then it is spooled), never GitHub's 10 s."""
    from redis.asyncio.retry import Retry
    from redis.backoff import ConstantBackoff

    from bot.redis_conn import redis_url

    t = settings.intake_redis_timeout_s
    return redis.asyncio.Redis.from_url(
        redis_url(settings),
        decode_responses=True,
        socket_timeout=t,
        socket_connect_timeout=t,
        retry=Retry(ConstantBackoff(0.05), 1),
        retry_on_error=[redis.ConnectionError, redis.TimeoutError, ConnectionResetError],
        health_check_interval=30,
    )


class Intake:
    """Runs in the web process's event loop (async Redis); Celery publishing is the outbox's job."""

    def __init__(self, settings: Settings, r: redis.asyncio.Redis) -> None:
        self.settings = settings
        secret = settings.webhook_secret
        self.secret = secret.get_secret_value().encode() if secret is not None else b""
        self.r: Any = r  # decode_responses=True
        self._accept = self.r.register_script(_ACCEPT_LUA)
        self._pending: Counter[str] = Counter()
        #: Hard bound on one Redis step of a delivery (GitHub gives up after 10 s).
        self.redis_deadline_s = settings.intake_redis_timeout_s + 0.5
        self.spool = Spool(settings.data_dir / "spool") if settings.spool_enabled else None
        #: The event loop this intake's async client belongs to (the metrics app may run elsewhere).
        self.loop: asyncio.AbstractEventLoop | None = None

    def count(self, event: str, outcome: str) -> None:
        """Count locally; `flush` adds the counts to Redis (every second, and before /metrics)."""
        self._pending[f"{metric_event(event)}|{outcome}"] += 1

    async def flush(self) -> None:
        pending, self._pending = self._pending, Counter()
        if not pending:
            return
        try:
            pipe = self.r.pipeline(transaction=False)
            for key, n in pending.items():
                pipe.hincrby(DELIVERIES, key, n)
            await pipe.execute()
        except Exception:
            self._pending.update(pending)  # keep them for the next flush
            raise

    async def flush_forever(self, every_s: float = 1.0) -> None:
        while True:
            await asyncio.sleep(every_s)
            try:
                await self.flush()
            except Exception:
                log.warning("could not flush delivery counters to Redis", exc_info=True)

    async def trigger_labels(self, repo: str | None) -> frozenset[str] | None:
        if repo is None:
            return frozenset({self.settings.label})
        known = await self.r.smembers(repo_config.labels_key(repo))
        if not known:
            return None  # never seen this repo's config: let the control plane decide
        return frozenset({self.settings.label, *known})

    async def _spool(
        self, event: str, delivery: str, body: bytes, headers: dict[str, str] | None, exc: BaseException
    ) -> Answer:
        """Redis is away: keep the verified delivery on local disk and answer GitHub now."""
        if self.spool is None:
            raise exc
        await asyncio.to_thread(self.spool.append, event, delivery, body, headers or {})
        log.warning(
            "Redis unavailable (%s): delivery %s %s spooled to %s; replayed when Redis is back",
            type(exc).__name__,
            delivery,
            event,
            self.spool.path,
        )
        self.count(event, "spooled")
        return Answer(202, {"status": "spooled", "delivery": delivery})

    async def replay_spool(self) -> int:
        """Feed spooled deliveries through `accept` (Redis must be back); returns how many."""
        if self.spool is None:
            return 0

        async def one(record: dict[str, Any]) -> None:
            answer = await self.accept(
                record["event"], record["delivery"], record["body"], record.get("headers"), spool=False
            )
            log.info("replayed spooled delivery %s: %s", record["delivery"], answer.body.get("status"))

        return await self.spool.replay(one)

    async def replay_forever(self, every_s: float) -> None:
        while True:
            try:
                await self.replay_spool()
            except Exception:
                log.warning("spooled deliveries not replayed yet (Redis still away?)", exc_info=True)
            await asyncio.sleep(every_s)

    async def accept(
        self,
        event: str,
        delivery: str,
        body: bytes,
        headers: dict[str, str] | None = None,
        *,
        spool: bool = True,
    ) -> Answer:
        """Called with a verified body and present headers: parse, route (pure), dedupe, enqueue.

        Redis calls are bounded (`redis_deadline_s`); when Redis is away a delivery that needs it
        goes to the local spool (fsync'd) and is answered 202 at once (`spool=False` on replay)."""
        if not spool:
            return await self._accept_now(event, delivery, body, headers)
        try:
            return await self._accept_now(event, delivery, body, headers)
        except (redis.RedisError, OSError, TimeoutError) as exc:
            return await self._spool(event, delivery, body, headers, exc)

    async def _accept_now(
        self, event: str, delivery: str, body: bytes, headers: dict[str, str] | None
    ) -> Answer:
        try:
            payload = orjson.loads(body)  # 5x faster than json on 10-50 KB payloads: the hot path
        except orjson.JSONDecodeError:
            self.count(event, "bad_request")
            return Answer(400, {"error": "body is not valid JSON"})
        if not isinstance(payload, dict):
            self.count(event, "bad_request")
            return Answer(400, {"error": "body is not a JSON object"})
        if event == "ping":
            self.count(event, "ping")
            return Answer(200, {"ok": True, "pong": True, "zen": str(payload.get("zen", ""))[:200]})

        limits = {"max_commands_per_comment": self.settings.max_commands_per_comment}
        ctx = EventContext(event=event, delivery=delivery, payload=payload, extra=limits)
        redis_away: BaseException | None = None
        if event == "issues" and payload.get("action") == "labeled":
            try:
                labels = await asyncio.wait_for(self.trigger_labels(ctx.repo), self.redis_deadline_s)
            except (redis.RedisError, OSError, TimeoutError) as exc:
                labels = None  # unknown: route it, the control plane compares with the repo's config
                redis_away = exc  # and do not wait for Redis a second time below
            ctx = EventContext(event, delivery, payload, trigger_labels=labels)
        outcome = ROUTER.dispatch(ctx)
        if not outcome.intents:
            # Nothing to create, so nothing to dedupe: no Redis round trip on this (common) path.
            log.info("delivery %s %s.%s ignored: %s", delivery, event, ctx.action or "-", outcome.reason)
            self.count(event, "ignored")
            return Answer(202, {"status": "ignored", "reason": outcome.reason})

        if redis_away is not None:
            raise redis_away  # accept() spools it
        private = _dict(payload.get("repository")).get("private")
        if isinstance(private, bool):  # the jobs pages follow the repository's visibility
            outcome.intents[:] = [i.model_copy(update={"repo_private": private}) for i in outcome.intents]
        ttl = self.settings.dedupe_ttl_s
        ids = [uuid.uuid4().hex for _ in outcome.intents]
        keys = [f"adapt:delivery:{delivery}", OUTBOX, WAKE, PENDING]
        args: list[Any] = [ttl, INTENT_TTL_S]
        for intent, intent_id in zip(outcome.intents, ids, strict=True):
            keys += [f"adapt:sem:{intent.dedupe_key}", f"adapt:intent:{intent_id}"]
            args += [intent.dedupe_ttl_s or ttl, intent.model_dump_json(), intent_id]
        fresh = await asyncio.wait_for(self._accept(keys=keys, args=args), self.redis_deadline_s)
        if fresh == -1:
            self.count(event, "duplicate")
            return Answer(202, {"status": "duplicate", "delivery": delivery})
        if fresh == -2:
            self.count(event, "rearmed")
            log.info("delivery %s was accepted before but never applied: armed again", delivery)
            return Answer(202, {"status": "rearmed", "delivery": delivery})
        new = [intent.kind for intent, f in zip(outcome.intents, fresh, strict=True) if int(f) in (1, 2)]
        if not new:
            self.count(event, "duplicate")
            return Answer(202, {"status": "duplicate", "delivery": delivery})
        self.count(event, "accepted")
        return Answer(202, {"status": "accepted", "intents": new, "duplicates": len(ids) - len(new)})
