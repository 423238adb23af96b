"""The Celery app, built from settings (nothing at import time), and its task registrations.

Queues: `control` (control-plane tasks: GitHub writes, job transitions). Runner pools (`cpu`,
`a2-8`, `a3-16`, ...) have their own Celery app on the runner side (`runners.host.worker`) and
their own key prefix; the control plane publishes to them through `bot.runner_link`. Long hardware
stages: late acks, prefetch 1, reject-on-worker-lost (attempts capped in the job record), a
visibility timeout above the longest stage limit, and per-stage soft/hard time limits at send time.
Control messages carry plain ids (job id, stage, attempt, intent id); a stage request carries the
`StageRequest` contract (options, earlier results, the attempt's random token): never a GitHub
credential or a webhook payload.
"""

from __future__ import annotations

import functools
import logging
from typing import Any

from celery import Celery, Task

from bot.config import Settings, get_settings
from bot.redis_conn import redis_url
from runners.contracts import StageRequest

log = logging.getLogger(__name__)

CONTROL_QUEUE = "control"

#: task name -> "module:function" (plain functions; the shells below add retry policy)
CONTROL_TASKS: dict[str, str] = {
    "bot.tasks.apply_intent": "bot.tasks:apply_intent",
    "bot.tasks.stage_started": "bot.tasks:stage_started",
    "bot.tasks.stage_finished": "bot.tasks:stage_finished",
    "bot.tasks.deliver": "bot.tasks:deliver",
    "bot.tasks.refresh": "bot.tasks:refresh",
    "bot.tasks.watch": "bot.tasks:watch",
    "bot.tasks.reconcile": "bot.tasks:reconcile",
    "bot.tasks.report_failure": "bot.tasks:report_failure",
    "bot.tasks.preflight": "bot.tasks:preflight",
    "bot.tasks.open_draft_pr": "bot.tasks:open_draft_pr",
}


def _target(spec: str) -> Any:
    import importlib

    module, func = spec.split(":")
    return getattr(importlib.import_module(module), func)


def make_celery(settings: Settings | None = None) -> Celery:
    settings = settings or get_settings()
    url = redis_url(settings)
    app = Celery("adapt-bot", broker=url, set_as_current=True)
    vt = settings.visibility_timeout_s
    app.conf.update(
        task_default_queue=CONTROL_QUEUE,
        task_routes={"bot.tasks.*": {"queue": CONTROL_QUEUE}},
        task_serializer="json",
        accept_content=["json"],
        task_ignore_result=True,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        broker_transport_options={"visibility_timeout": vt},
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
        worker_send_task_events=True,
        enable_utc=True,
    )
    app.conf.adapt_settings = settings
    _register(app)
    return app


def _register(app: Celery) -> None:
    from bot.github import RetryLater

    def intent_shell(self: Task, *args: Any) -> Any:
        """apply_intent: every transient failure comes back with a countdown (never a sleep),
        with backoff, until the delivery is too old (bot.tasks.retry_intent_in decides)."""
        from bot import tasks

        try:
            return tasks.apply_intent(*args)
        except Exception as exc:
            intent_ids, arm = args[0], (args[1] if len(args) > 1 else None)
            countdown = tasks.retry_intent_in(intent_ids, arm, exc)
            if countdown is None:
                return ["given up"]
            raise self.retry(countdown=countdown, exc=exc) from None

    # max_retries=None on the TASK: Celery reads `retry(max_retries=None)` as "the task's default"
    # (3), which ended an outage's retry chain after the fourth attempt; the age limit is the bound
    app.task(name="bot.tasks.apply_intent", bind=True, max_retries=None)(intent_shell)

    for name, spec in CONTROL_TASKS.items():
        if name == "bot.tasks.apply_intent":
            continue

        def shell(self: Task, *args: Any, _spec: str = spec) -> Any:
            try:
                return _target(_spec)(*args)
            except RetryLater as exc:  # GitHub asked for a long wait: come back later, don't sleep
                raise self.retry(countdown=exc.wait_s, exc=exc, max_retries=10) from None

        app.task(
            name=name,
            bind=True,
            autoretry_for=(ConnectionError, TimeoutError),
            retry_backoff=2,
            retry_backoff_max=120,
            retry_jitter=True,
            max_retries=8,
        )(shell)


@functools.cache
def get_celery() -> Celery:
    return make_celery()


class CeleryQueue:
    """`bot.intents.Queue` on Celery: control tasks by name on `control`; stage requests to the
    job's pool through `bot.runner_link.PoolPublisher` (the pool's key prefix)."""

    def __init__(self, app: Celery, settings: Settings) -> None:
        from bot.runner_link import PoolPublisher

        self.app = app
        self.settings = settings
        self.pools = PoolPublisher(redis_url(settings), settings.visibility_timeout_s)

    def run_stage(self, request: StageRequest) -> None:
        limit = request.timeout_s
        self.pools.publish(request, soft_time_limit=limit + 60, time_limit=limit + 120)

    def control(self, task: str, *args: Any, countdown: float | None = None) -> None:
        self.app.send_task(task, args=list(args), queue=CONTROL_QUEUE, countdown=countdown)


def __getattr__(name: str) -> Any:
    """`celery -A bot.celery_app worker` support: `app` is built on first access, not at import."""
    if name == "app":
        return get_celery()
    raise AttributeError(name)
