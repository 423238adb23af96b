"""`adapt-bot worker`: a Celery worker for the control queue and/or runner pool queues.

One per runner host: `adapt-bot worker --pool a2-8`. The control plane: `adapt-bot worker --control`.
Runner workers take one stage at a time (prefork, concurrency 1, prefetch 1); the control worker
uses threads (its tasks wait on GitHub, not on CPU).
"""

from __future__ import annotations

import argparse
import socket

HELP = "run a Celery worker: --pool POOL for a runner host, --control for the control plane"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--pool", action="append", default=[], metavar="POOL", help="runner pool queue (repeatable)"
    )
    parser.add_argument("--control", action="store_true", help="consume the control queue")
    parser.add_argument(
        "--concurrency", type=int, default=None, help="parallel tasks (default: control 4, runner 1)"
    )
    parser.add_argument("--loglevel", default="info")
    parser.add_argument("--name", default=None, help="worker node name (default: <queues>@<host>)")


def celery_argv(args: argparse.Namespace) -> list[str]:
    from bot.celery_app import CONTROL_QUEUE

    queues = ([CONTROL_QUEUE] if args.control else []) + list(args.pool)
    if not queues:
        raise SystemExit("adapt-bot worker: give --pool POOL and/or --control")
    runner = bool(args.pool)
    concurrency = args.concurrency or (1 if runner else 4)
    exec_pool = "prefork" if runner else "threads"
    name = args.name or f"{'+'.join(queues)}@{socket.gethostname()}"
    return [
        "worker",
        "-Q",
        ",".join(queues),
        "-P",
        exec_pool,
        "-c",
        str(concurrency),
        "-n",
        name,
        "--loglevel",
        args.loglevel.upper(),
        "--without-gossip",
        "--without-mingle",
    ]


def _publish_outbox_while_running() -> None:
    """The control worker also publishes the intent outbox (see bot.api.outbox), off the web path."""
    from celery import signals

    from bot.api.outbox import Outbox
    from bot.celery_app import CeleryQueue, get_celery
    from bot.config import get_settings
    from bot.redis_conn import client

    state: dict[str, Outbox] = {}

    @signals.worker_ready.connect(weak=False)
    def _start(**_kw: object) -> None:
        settings = get_settings()
        box = Outbox(client(settings), CeleryQueue(get_celery(), settings))
        box.start()
        state["box"] = box

    @signals.worker_shutdown.connect(weak=False)
    def _stop(**_kw: object) -> None:
        if "box" in state:
            state.pop("box").stop()


def main(args: argparse.Namespace) -> int:
    import logging

    from bot.celery_app import make_celery

    logging.basicConfig(level=args.loglevel.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    app = make_celery()
    if args.control:
        _publish_outbox_while_running()
    app.worker_main(celery_argv(args))
    return 0
