"""How fast the webhook answers GitHub while Redis is away (GitHub gives up after 10 s).

Two cases, 5 `issues.labeled` deliveries each, through the real app on uvicorn: Redis stopped
(connection refused) and Redis hung (a socket that accepts and never answers). Every delivery must
be answered 202 `spooled` and be in the local spool afterwards.

    .venv/bin/python benchmarks/bench_intake_redis_down.py
"""

from __future__ import annotations

import hashlib
import hmac
import json
import socket
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx

from bot.api.spool import Spool
from bot.app import create_app
from bot.config import Settings
from tests.standin.payloads import fixture
from tests.standin.server import ThreadedServer, free_port

SECRET = "bench-secret-0123456789"  # a local value, not a credential


class NoQueue:
    def run_stage(self, *_a: Any) -> None: ...

    def control(self, *_a: Any, **_k: Any) -> None: ...


def run(url: str, label: str, n: int = 5) -> None:
    data = Path(tempfile.mkdtemp())
    settings = Settings(webhook_secret=SECRET, redis_url=url, data_dir=data)
    server = ThreadedServer(create_app(settings, queue=NoQueue(), publish_outbox=False), "bench").start()
    body = json.dumps(fixture("issues.labeled.1")).encode()
    sig = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    times = []
    with httpx.Client(timeout=30) as c:
        for _ in range(n):
            headers = {
                "X-GitHub-Event": "issues",
                "X-GitHub-Delivery": str(uuid.uuid4()),
                "X-Hub-Signature-256": sig,
            }
            t0 = time.monotonic()
            r = c.post(server.url + "/webhook", content=body, headers=headers)
            times.append(time.monotonic() - t0)
            assert r.status_code == 202 and r.json()["status"] == "spooled", r.text
    server.stop()
    kept = Spool(data / "spool").depth()
    print(
        f"{label}: answered in {', '.join(f'{t:.2f}' for t in times)} s; {kept}/{n} deliveries in the spool"
    )


def main() -> None:
    run(f"redis://127.0.0.1:{free_port()}/0", "Redis stopped (connection refused)")
    hung = socket.socket()
    hung.bind(("127.0.0.1", 0))
    hung.listen(100)
    run(f"redis://127.0.0.1:{hung.getsockname()[1]}/0", "Redis hung (accepts, never answers)")


if __name__ == "__main__":
    main()
