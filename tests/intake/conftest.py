"""Intake fixtures: `drain`, which takes the real Celery messages off the `control` queue in Redis
and runs the task bodies directly (tests that need a worker process start one). The web app,
its dependencies and `post` are shared fixtures in tests/plugins/service.py."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable
from typing import Any

import pytest


def decode_message(raw: str) -> tuple[str, list[Any], dict[str, Any]]:
    msg = json.loads(raw)
    body = msg["body"]
    if msg["properties"].get("body_encoding") == "base64":
        body = base64.b64decode(body).decode()
    args, kwargs, _embed = json.loads(body)
    return msg["headers"]["task"], args, kwargs


def settle(r: Any, timeout: float = 10) -> None:
    """Wait until the web process's outbox publisher has handed every accepted intent to Celery."""
    from bot.api.outbox import CLAIMED, OUTBOX

    deadline = time.monotonic() + timeout
    while r.zcard(OUTBOX) or r.zcard(CLAIMED):
        if time.monotonic() > deadline:
            raise AssertionError("outbox did not drain")
        time.sleep(0.01)


def queued(r: Any, queue: str) -> list[tuple[str, list[Any], dict[str, Any]]]:
    """Messages due on a Celery queue in Redis, oldest first (without consuming them).

    Delayed messages (with an `eta`: the runner watchdog's next look) are left out."""
    settle(r)
    raws = reversed(r.lrange(queue, 0, -1))
    return [decode_message(raw) for raw in raws if not json.loads(raw)["headers"].get("eta")]


def stage_requests(r: Any, pool: str = "cpu") -> list[tuple[str, str, int]]:
    """(job id, stage, attempt) of the stage requests waiting on a runner pool's queue (which
    lives under the pool's key prefix, `adapt:pool:<pool>:`)."""
    out = []
    for name, args, _kw in queued(r, f"adapt:pool:{pool}:{pool}"):
        assert name == "runners.host.task.run_stage", name
        out.append((args[0]["job_id"], args[0]["stage"], args[0]["attempt"]))
    return out


@pytest.fixture
def drain(deps: Any) -> Callable[[], list[Any]]:
    """Run every message on the control queue (and those they enqueue) through the task bodies.

    Delayed messages (an `eta`, i.e. sent with a countdown — the runner watchdog) are not due yet:
    they are collected in `drain.later` instead of being run.
    """
    import bot.tasks

    later: list[tuple[str, list[Any]]] = []

    def _drain(limit: int = 100) -> list[Any]:
        outcomes = []
        settle(deps.redis)
        for _ in range(limit):
            raw = deps.redis.rpop("control")
            if raw is None:
                return outcomes
            name, args, _kwargs = decode_message(raw)
            assert name.startswith("bot.tasks."), name
            if json.loads(raw)["headers"].get("eta"):
                later.append((name, args))
                continue
            assert all(isinstance(a, (str, int)) for a in args), f"message carries more than ids: {args}"
            result = getattr(bot.tasks, name.rsplit(".", 1)[1])(*args)
            outcomes.extend(result if isinstance(result, list) else [result])
        raise AssertionError("control queue did not drain")

    _drain.later = later  # type: ignore[attr-defined]
    return _drain
