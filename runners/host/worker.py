"""A runner host's Celery worker: consumes ONE pool's queue and registers ONE task.

    python -m runners.host.worker --pool a2-8     (what `adapt-bot worker --pool a2-8` supervises)

The Celery app is built here, not in `bot.celery_app`: a runner process loads neither githubkit nor
any control-plane module. Its broker connection uses the pool's key prefix (kombu's
`global_keyprefix`), so the pool's ACL user reaches its queue and nothing else; remote control,
events, gossip, mingle and heartbeats are off because they would need pub/sub and shared keys.
"""

from __future__ import annotations

import argparse
import logging
import socket
import sys
from collections.abc import Sequence

from celery import Celery

from runners.host import keys
from runners.host.settings import RunnerSettings, effective_redis_url, get_runner_settings

#: The task name the control plane sends (`bot.runner_link.PoolPublisher`).
RUN_STAGE = "runners.host.task.run_stage"

#: Above the longest stage time limit (2 h) so an unacknowledged long stage is not redelivered;
#: the control plane's watchdog re-sends a stage whose runner died long before this.
VISIBILITY_TIMEOUT_S = 7800


def transport_options(pool: str, visibility_timeout_s: int = VISIBILITY_TIMEOUT_S) -> dict[str, object]:
    """Broker options both sides of a pool's queue must agree on (publisher and consumer)."""
    return {"global_keyprefix": keys.pool_prefix(pool), "visibility_timeout": visibility_timeout_s}


def make_runner_celery(pool: str, settings: RunnerSettings | None = None) -> Celery:
    settings = settings or get_runner_settings()
    try:
        url = effective_redis_url(settings)
    except RuntimeError as exc:
        raise SystemExit(str(exc)) from None
    app = Celery("adapt-bot-runner", broker=url, set_as_current=True)
    app.conf.update(
        task_default_queue=pool,
        task_serializer="json",
        accept_content=["json"],
        task_ignore_result=True,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        worker_enable_remote_control=False,
        worker_send_task_events=False,
        broker_transport_options=transport_options(pool),
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
        enable_utc=True,
    )

    def run_stage(request: dict[str, object]) -> str:
        from runners.host.task import run_stage as body

        return body(request)

    # No autoretry: a failed stage is a result, not an exception. Worker loss is handled by
    # reject_on_worker_lost + the redelivery cap in runners.host.task.
    app.task(name=RUN_STAGE)(run_stage)
    return app


def celery_argv(pool: str, loglevel: str = "info", name: str | None = None) -> list[str]:
    return [
        "worker",
        "-Q",
        pool,
        "-P",
        "prefork",
        "-c",
        "1",
        "-n",
        name or f"{pool}@{socket.gethostname()}",
        "--loglevel",
        loglevel.upper(),
        "--without-gossip",
        "--without-mingle",
        "--without-heartbeat",
    ]


def not_dumpable() -> bool:
    """Make this process non-dumpable (Linux `PR_SET_DUMPABLE` 0): a model server running as the
    same user can then no longer read this process's /proc/<pid>/environ or memory, where the
    pool's Redis password lives. Returns whether it took effect (False off Linux)."""
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return int(libc.prctl(4, 0, 0, 0, 0)) == 0  # PR_SET_DUMPABLE = 4
    except (OSError, AttributeError):
        return False


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m runners.host.worker", description=__doc__)
    parser.add_argument("--pool", required=True, help="the runner pool whose queue this host consumes")
    parser.add_argument("--loglevel", default="info")
    parser.add_argument("--name", default=None)
    args = parser.parse_args(argv)
    try:
        keys.check_pool(args.pool)
    except ValueError as exc:
        parser.error(str(exc))
    logging.basicConfig(level=args.loglevel.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not not_dumpable():
        logging.getLogger(__name__).warning("could not make the runner non-dumpable (not Linux?)")
    app = make_runner_celery(args.pool)
    app.worker_main(celery_argv(args.pool, args.loglevel, args.name))
    return 0


if __name__ == "__main__":
    sys.exit(main())
