"""`create_app(settings)`: the FastAPI application (no work at import time)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from fastapi import FastAPI

from bot.api import health, jobs, webhook
from bot.api.intake import Intake
from bot.api.outbox import Outbox
from bot.config import Settings, get_settings
from bot.intents import Queue
from bot.jobs.store import JobStore
from bot.redis_conn import async_client, client

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
    intake = Intake(settings, async_client(settings))

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        if publish_outbox:
            outbox.start()
        flusher = asyncio.create_task(intake.flush_forever(1.0))
        try:
            yield
        finally:
            flusher.cancel()
            if publish_outbox:
                await asyncio.to_thread(outbox.stop)
            with contextlib.suppress(Exception):
                await intake.flush()

    app = FastAPI(title="adapt-bot", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)
    app.state.settings = settings
    app.state.redis = r
    app.state.store = JobStore(r)
    app.state.intake = intake
    for module in (webhook, jobs, health):
        app.include_router(module.router)
    if settings.webhook_secret is None:
        log.warning("ADAPT_BOT_WEBHOOK_SECRET is not set: /webhook answers 503 until it is")
    return app
