"""Intake fixtures: the bot's web app on a real uvicorn server, its dependencies aimed at the
stand-in and the test Redis, and `drain`, which takes the real Celery messages off the `control`
queue in Redis and runs the task bodies directly (tests that need a worker process start one)."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.plugins.standin import WEBHOOK_SECRET
from tests.standin.server import ThreadedServer, send_webhook


@pytest.fixture
def deps(app_settings: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    import bot.tasks
    from bot.celery_app import CeleryQueue, make_celery
    from bot.github import GitHubClient
    from bot.intents import Deps
    from bot.jobs.store import JobStore
    from bot.redis_conn import client

    r = client(app_settings)
    d = Deps(
        settings=app_settings,
        redis=r,
        store=JobStore(r),
        github=GitHubClient(app_settings, r),
        queue=CeleryQueue(make_celery(app_settings), app_settings),
    )
    monkeypatch.setattr(bot.tasks, "deps", lambda: d)
    monkeypatch.setattr("runners.tasks.get_settings", lambda: app_settings)
    return d


@pytest.fixture
def bot_server(app_settings: Any, deps: Any) -> Iterator[ThreadedServer]:
    from bot.app import create_app

    server = ThreadedServer(create_app(app_settings, queue=deps.queue), "adapt-bot-web").start()
    yield server
    server.stop()


@pytest.fixture
def post(bot_server: ThreadedServer) -> Callable[..., Any]:
    def _post(
        event: str, payload: Any, delivery: str | None = None, secret: str | None = WEBHOOK_SECRET, **kw: Any
    ) -> Any:
        return send_webhook(bot_server.url + "/webhook", event, payload, secret, delivery, **kw)

    return _post


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
    """Messages waiting on a Celery queue in Redis, oldest first (without consuming them)."""
    settle(r)
    return [decode_message(raw) for raw in reversed(r.lrange(queue, 0, -1))]


@pytest.fixture
def drain(deps: Any) -> Callable[[], list[Any]]:
    """Run every message on the control queue (and those they enqueue) through the task bodies."""
    import bot.tasks

    def _drain(limit: int = 100) -> list[Any]:
        outcomes = []
        settle(deps.redis)
        for _ in range(limit):
            raw = deps.redis.rpop("control")
            if raw is None:
                return outcomes
            name, args, _kwargs = decode_message(raw)
            assert name.startswith("bot.tasks."), name
            assert all(isinstance(a, (str, int)) for a in args), f"message carries more than ids: {args}"
            result = getattr(bot.tasks, name.rsplit(".", 1)[1])(*args)
            outcomes.extend(result if isinstance(result, list) else [result])
        raise AssertionError("control queue did not drain")

    return _drain
