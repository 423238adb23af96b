"""Webhook intake logic apart from HTTP: verify, dedupe, route, store intents, enqueue.

`Intake.accept()` runs after the body is read. Dedupe is atomic (SET NX EX) on the delivery GUID
and on each intent's semantic key; deliveries and outcomes are counted in Redis so several web
processes report the same /metrics.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
import uuid
from dataclasses import dataclass
from typing import Any

import redis

from bot import repo_config
from bot.behaviours import ROUTER
from bot.config import Settings
from bot.events import EventContext
from bot.intents import Queue

log = logging.getLogger(__name__)

DELIVERIES = "adapt:metrics:deliveries"
_EVENT_NAME = re.compile(r"^[a-z_]{1,50}$")


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


def count(r: redis.Redis, event: str, outcome: str) -> None:
    event = event if _EVENT_NAME.match(event or "") else "other"
    r.hincrby(DELIVERIES, f"{event}|{outcome}", 1)


class Intake:
    def __init__(self, settings: Settings, r: redis.Redis, queue: Queue) -> None:
        self.settings = settings
        self.r: Any = r  # decode_responses=True
        self.queue = queue

    def trigger_labels(self, repo: str | None) -> frozenset[str] | None:
        if repo is None:
            return frozenset({self.settings.label})
        known = self.r.smembers(repo_config.labels_key(repo))
        if not known:
            return None  # never seen this repo's config: let the control plane decide
        return frozenset({self.settings.label, *known})

    def accept(self, event: str, delivery: str, body: bytes) -> Answer:
        """Called with a verified body and present headers."""
        try:
            payload = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            count(self.r, event, "bad_request")
            return Answer(400, {"error": "body is not valid JSON"})
        if not isinstance(payload, dict):
            count(self.r, event, "bad_request")
            return Answer(400, {"error": "body is not a JSON object"})
        if event == "ping":
            count(self.r, event, "ping")
            return Answer(200, {"ok": True, "pong": True, "zen": str(payload.get("zen", ""))[:200]})

        ttl = self.settings.dedupe_ttl_s
        if not self.r.set(f"adapt:delivery:{delivery}", "1", nx=True, ex=ttl):
            count(self.r, event, "duplicate")
            return Answer(202, {"status": "duplicate", "delivery": delivery})

        ctx = EventContext(event=event, delivery=delivery, payload=payload)
        if event == "issues" and payload.get("action") == "labeled":
            ctx = EventContext(event, delivery, payload, trigger_labels=self.trigger_labels(ctx.repo))
        outcome = ROUTER.dispatch(ctx)
        if not outcome.intents:
            log.info("delivery %s %s.%s ignored: %s", delivery, event, ctx.action or "-", outcome.reason)
            count(self.r, event, "ignored")
            return Answer(202, {"status": "ignored", "reason": outcome.reason})

        queued: list[str] = []
        duplicates = 0
        for intent in outcome.intents:
            key = f"adapt:sem:{intent.dedupe_key}"
            if not self.r.set(key, delivery, nx=True, ex=intent.dedupe_ttl_s or ttl):
                duplicates += 1
                continue
            intent_id = uuid.uuid4().hex
            self.r.set(f"adapt:intent:{intent_id}", intent.model_dump_json(), ex=7 * 24 * 3600)
            self.queue.control("bot.tasks.apply_intent", intent_id)
            queued.append(intent.kind)
        if not queued:
            count(self.r, event, "duplicate")
            return Answer(202, {"status": "duplicate", "delivery": delivery})
        count(self.r, event, "accepted")
        return Answer(202, {"status": "accepted", "intents": queued, "duplicates": duplicates})
