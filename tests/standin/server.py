"""Run the stand-in with uvicorn on 127.0.0.1:<free port> in a background thread; send webhooks."""

from __future__ import annotations

import hashlib
import hmac
import json
import socket
import threading
import time
import uuid
from typing import Any

import httpx
import uvicorn

from tests.standin.app import create_standin_app
from tests.standin.state import StandinState


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ThreadedServer:
    """Any ASGI app on uvicorn, 127.0.0.1:<free port>, in a daemon thread (a real HTTP server)."""

    def __init__(self, app: Any, name: str = "asgi-server") -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._app = app
        self._name = name

    def _build(self) -> None:
        config = uvicorn.Config(
            self._app, host="127.0.0.1", port=self.port, log_level="warning", access_log=False
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name=self._name, daemon=True)

    def start(self) -> Any:
        self._build()
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError(f"{self._name} did not start on port {self.port}")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(10)


class StandinServer(ThreadedServer):
    def __init__(self, state: StandinState) -> None:
        super().__init__(None, "github-standin")
        self.state = state
        state.api = self.url
        self._app = create_standin_app(state)


def sign(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def send_webhook(
    url: str,
    event: str,
    payload: dict[str, Any] | bytes,
    secret: str | None,
    delivery: str | None = None,
    *,
    client: httpx.Client | None = None,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    """POST a webhook the way GitHub does: raw JSON body, event/delivery headers, HMAC signature."""
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    h = {
        "Content-Type": "application/json",
        "User-Agent": "GitHub-Hookshot/standin",
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": delivery or str(uuid.uuid4()),
    }
    if secret is not None:
        h["X-Hub-Signature-256"] = sign(secret, body)
    h.update(headers or {})
    if client is not None:
        return client.post(url, content=body, headers=h)
    with httpx.Client(timeout=30) as c:
        return c.post(url, content=body, headers=h)
