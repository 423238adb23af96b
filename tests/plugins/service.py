"""The bot as a service in tests: its web app on a real uvicorn server (`bot_server`, `post`), its
dependencies aimed at the GitHub stand-in and the test Redis (`deps`), and real `adapt-bot worker`
processes (`Worker`, `wait_for`). Shared by the intake and end-to-end tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.plugins.standin import WEBHOOK_SECRET
from tests.standin.server import ThreadedServer, send_webhook

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def deps(app_settings: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    import bot.tasks
    from bot.celery_app import CeleryQueue, make_celery
    from bot.github import GitHubClient
    from bot.intents import Deps
    from bot.jobs.logs import from_settings
    from bot.jobs.store import JobStore
    from bot.redis_conn import client

    r = client(app_settings)
    d = Deps(
        settings=app_settings,
        redis=r,
        store=JobStore(r, from_settings(app_settings)),
        github=GitHubClient(app_settings, r),
        queue=CeleryQueue(make_celery(app_settings), app_settings),
    )
    monkeypatch.setattr(bot.tasks, "deps", lambda: d)
    return d


@pytest.fixture
def runner_settings(redis_server: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """What a `cpu` runner host is given: its pool's Redis user, its own work root; no App key,
    no webhook secret. Task bodies called in-process (`runners.host.task.run_stage`) use it."""
    from runners.host.settings import RunnerSettings

    settings = RunnerSettings(
        redis_url=redis_server.runner_url("cpu"), work_root=tmp_path / "work", heartbeat_ttl_s=30
    )
    monkeypatch.setattr("runners.host.task.get_runner_settings", lambda: settings)
    return settings


CONTROL_ONLY = (
    "ADAPT_BOT_WEBHOOK_SECRET",
    "ADAPT_BOT_PRIVATE_KEY",
    "ADAPT_BOT_APP_ID",
    "ADAPT_BOT_GITHUB_API_URL",
)


def as_runner_env(env: dict[str, str], redis_server: Any, pool: str = "cpu") -> dict[str, str]:
    """A runner worker's environment: the control plane's secrets removed, its Redis URL replaced
    by the pool's ACL user (what the deploy files give a runner host)."""
    out = {k: v for k, v in env.items() if k not in CONTROL_ONLY}
    out["ADAPT_BOT_REDIS_URL"] = redis_server.runner_url(pool)
    return out


@pytest.fixture
def runner_env(app_env: dict[str, str], redis_server: Any) -> dict[str, str]:
    return as_runner_env(app_env, redis_server)


@pytest.fixture
def bot_server(app_settings: Any, deps: Any) -> Iterator[ThreadedServer]:
    from bot.app import create_app

    app = create_app(app_settings, queue=deps.queue)
    server = ThreadedServer(app, "adapt-bot-web").start()
    metrics = ThreadedServer(app.state.metrics_app, "adapt-bot-metrics").start()  # its own port
    server.metrics_url = metrics.url  # type: ignore[attr-defined]
    yield server
    metrics.stop()
    server.stop()


@pytest.fixture
def post(bot_server: ThreadedServer) -> Callable[..., Any]:
    def _post(
        event: str, payload: Any, delivery: str | None = None, secret: str | None = WEBHOOK_SECRET, **kw: Any
    ) -> Any:
        return send_webhook(bot_server.url + "/webhook", event, payload, secret, delivery, **kw)

    return _post


class Worker:
    def __init__(self, argv: list[str], env: dict[str, str], log: Path) -> None:
        self.log = log
        self._fh = log.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bot.cli", "worker", *argv],
            env=env,
            cwd=REPO_ROOT,
            stdout=self._fh,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"worker exited {self.proc.returncode}:\n{self.log.read_text()[-3000:]}")
            if b" ready." in self.log.read_bytes():
                return
            time.sleep(0.2)
        raise AssertionError(f"worker not ready:\n{self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        self._fh.close()


def wait_for(
    what: str, fn: Callable[[], Any], timeout: float = 90, workers: list[Worker] | None = None
) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = fn()
        if value:
            return value
        time.sleep(0.2)
    logs = "\n".join(w.log.read_text()[-2500:] for w in workers or [])
    raise AssertionError(f"timed out waiting for {what}\n{logs}")
