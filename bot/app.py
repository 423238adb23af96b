"""`create_app(settings)`: the FastAPI application (no work at import time)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from fastapi import FastAPI

from bot.api import access, health, jobs, pages, webhook
from bot.api.intake import Intake, intake_client
from bot.api.outbox import Outbox
from bot.config import Settings, get_settings
from bot.intents import Queue
from bot.jobs import logs
from bot.jobs.store import JobStore
from bot.redis_conn import client

log = logging.getLogger(__name__)


def create_app(
    settings: Settings | None = None, queue: Queue | None = None, *, publish_outbox: bool = True
) -> FastAPI:
    """The web app. `publish_outbox=False` when a control worker publishes the intent outbox
    (`adapt-bot serve` arranges that), which keeps Celery's publishing cost off the web process."""
    settings = settings or get_settings()
    r = client(settings)
    if queue is None:
        from bot.celery_app import CeleryQueue, make_celery

        queue = CeleryQueue(make_celery(settings), settings)
    outbox = Outbox(r, queue)
    intake = Intake(settings, intake_client(settings))  # bounded timeouts; spools when Redis is away

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        if publish_outbox:
            outbox.start()
        intake.loop = asyncio.get_running_loop()
        flusher = asyncio.create_task(intake.flush_forever(1.0))
        replayer = asyncio.create_task(intake.replay_forever(settings.spool_replay_s))
        try:
            yield
        finally:
            flusher.cancel()
            replayer.cancel()
            if publish_outbox:
                await asyncio.to_thread(outbox.stop)
            with contextlib.suppress(Exception):
                await intake.flush()

    app = FastAPI(title="adapt-bot", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)
    app.state.settings = settings
    app.state.redis = r
    app.state.store = JobStore(r, logs.from_settings(settings))
    app.state.intake = intake
    app.state.access = access.Access(settings)
    for module in (webhook, jobs, pages, health, access):
        app.include_router(module.router)
    app.state.metrics_app = create_metrics_app(app)
    if settings.webhook_secret is None:
        log.warning("ADAPT_BOT_WEBHOOK_SECRET is not set: /webhook answers 503 until it is")
    return app


def create_metrics_app(main: FastAPI) -> FastAPI:
    """`/metrics` (and `/healthz`) on their own app, served on `ADAPT_BOT_METRICS_BIND` only."""
    metrics = FastAPI(title="adapt-bot metrics", docs_url=None, redoc_url=None, openapi_url=None)
    metrics.state.redis = main.state.redis
    metrics.state.intake = main.state.intake
    metrics.include_router(health.metrics_router)
    metrics.include_router(health.router)
    return metrics
