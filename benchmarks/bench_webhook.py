"""Webhook intake figures (issue 2): throughput and latency of `adapt-bot serve` vs a bare FastAPI app.

    .venv/bin/python benchmarks/bench_webhook.py [--requests 4000] [--concurrency 16]

Starts a real redis-server, `adapt-bot serve --no-worker` (real Redis, real Celery publishing) and a
bare FastAPI app that only answers 200, both on uvicorn with one process, and fires real
`issue_comment` payloads (tests/fixtures/github-webhooks) at each with 16 keep-alive connections from
a small raw-socket HTTP/1.1 client (so the client is not the bottleneck). Two payload mixes:
  - "ignored": the fixture comment as GitHub sent it (verify, dedupe, route, count, 202)
  - "command": the same payload with `/adapt status` and a unique comment id (plus command parse,
    semantic dedupe, intent stored, Celery message published)
Then: the time from an `issues.labeled` delivery to the first status comment arriving at the GitHub
stand-in (serve with its control worker, App JWT -> installation token, repo config read, comment).
Targets on a 2-core machine: p99 <= 25 ms, throughput >= 60% of the bare app, label -> comment <= 1 s.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SECRET = "bench-webhook-secret-0123456789"  # a benchmark value


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(port: int, path: str = "/", timeout: float = 60) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            httpx.get(f"http://127.0.0.1:{port}{path}", timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing answered on port {port}")


def bare_app() -> Any:
    from fastapi import FastAPI
    from fastapi.responses import Response

    app = FastAPI()

    @app.post("/webhook")
    async def webhook() -> Response:
        return Response(status_code=200)

    @app.get("/")
    async def root() -> Response:
        return Response(status_code=200)

    return app


def start(argv: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        argv, env=env, cwd=ROOT, stdout=log.open("wb"), stderr=subprocess.STDOUT, start_new_session=True
    )


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


# -- a minimal HTTP/1.1 keep-alive client ---------------------------------------------------------
def build_requests(kind: str, n: int) -> list[bytes]:
    from tests.standin.payloads import fixture
    from tests.standin.server import sign

    base = fixture("issue_comment.created.1")
    out = []
    for i in range(n):
        p = copy.deepcopy(base)
        if kind == "command":
            p["comment"]["id"] = 10_000_000 + i
            p["comment"]["body"] = "/adapt status"
        body = json.dumps(p).encode()
        head = (
            "POST /webhook HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nX-GitHub-Event: issue_comment\r\n"
            f"X-GitHub-Delivery: {uuid.uuid4()}\r\nX-Hub-Signature-256: {sign(SECRET, body)}\r\n\r\n"
        ).encode()
        out.append(head + body)
    return out


async def _connection(port: int, queue: asyncio.Queue[bytes], lat: list[float], codes: list[int]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        while True:
            try:
                req = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            t0 = time.perf_counter()
            writer.write(req)
            await writer.drain()
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            if length:
                await reader.readexactly(length)
            lat.append(time.perf_counter() - t0)
            codes.append(int(head.split(b" ", 2)[1]))
    finally:
        writer.close()


async def _load(port: int, reqs: list[bytes], concurrency: int) -> tuple[float, list[float], list[int]]:
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    for r in reqs:
        queue.put_nowait(r)
    lat: list[float] = []
    codes: list[int] = []
    t0 = time.perf_counter()
    await asyncio.gather(*(_connection(port, queue, lat, codes) for _ in range(concurrency)))
    return time.perf_counter() - t0, lat, codes


def measure(port: int, kind: str, n: int, concurrency: int) -> dict[str, float]:
    asyncio.run(_load(port, build_requests(kind, 200), concurrency))  # warm-up
    elapsed, lat, codes = asyncio.run(_load(port, build_requests(kind, n), concurrency))
    bad = [c for c in codes if not 200 <= c < 300]
    if bad:
        raise RuntimeError(f"{len(bad)} non-2xx answers (e.g. {bad[0]})")
    lat.sort()
    return {
        "rps": n / elapsed,
        "p50": statistics.median(lat) * 1000,
        "p99": lat[int(len(lat) * 0.99) - 1] * 1000,
    }


# -- label -> first status comment -------------------------------------------------------------------
class GitHubSide:
    """The GitHub stand-in with an App key and one installed repository."""

    def __init__(self, tmp: Path) -> None:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import rsa

        from tests.standin.server import StandinServer
        from tests.standin.state import StandinState

        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        pub = key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        (tmp / "app.pem").write_bytes(pem)
        self.state = StandinState(app_id=4242, public_key_pem=pub.decode())
        self.server = StandinServer(self.state).start()
        self.repo = "octo-org/vllm-ascend"
        self.state.add_repo(self.repo, 77, collaborators={"maintainer": "write"})
        self.env = {
            "ADAPT_BOT_APP_ID": "4242",
            "ADAPT_BOT_PRIVATE_KEY": str(tmp / "app.pem"),
            "ADAPT_BOT_GITHUB_API_URL": self.server.url,
            "ADAPT_BOT_DEFAULT_PROFILE": "cpu",
            "ADAPT_BOT_DEFAULT_POOL": "cpu",
        }


def label_latency(port: int, side: GitHubSide, samples: int) -> list[float]:
    from tests.standin.payloads import issues_labeled
    from tests.standin.server import send_webhook

    state, repo = side.state, side.repo
    out: list[float] = []
    for i in range(samples + 1):
        n = state.add_issue(repo, f"model {i}", f"model: org/model-{i}")["number"]
        t0 = time.time()
        send_webhook(f"http://127.0.0.1:{port}/webhook", "issues", issues_labeled(state, repo, n), SECRET)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            posts = state.requests_to("POST", f"/repos/{repo}/issues/{n}/comments")
            if posts and posts[0].status == 201:
                if i:  # the first sample pays for the token exchange and connection set-up
                    out.append(posts[0].at - t0)
                break
            time.sleep(0.005)
        else:
            raise RuntimeError(f"no status comment for issue {n}")
        time.sleep(1.1)  # labels seconds apart: mutating requests are spaced >= 1 s (secondary limits)
    return out


def wait_idle(r: Any, timeout: float = 300) -> None:
    """Let the control worker finish the previous phase's intents (they share the 2 cores)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not r.zcard("adapt:outbox") and not r.zcard("adapt:outbox:claimed") and not r.llen("control"):
            time.sleep(1.0)
            return
        time.sleep(0.5)
    raise RuntimeError("the control worker did not catch up")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requests", type=int, default=4000)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--label-samples", type=int, default=10)
    ap.add_argument("--bare-server", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.bare_server:
        import uvicorn

        uvicorn.run(
            bare_app(), host="127.0.0.1", port=args.bare_server, log_level="warning", access_log=False
        )
        return 0

    import redis

    redis_bin = shutil.which("redis-server")
    if redis_bin is None:
        print("redis-server not found (apt-get install redis-server)", file=sys.stderr)
        return 2
    tmp = Path(tempfile.mkdtemp(prefix="bench-webhook-"))
    rport, sport, bport = free_port(), free_port(), free_port()
    redis_argv = [redis_bin, "--port", str(rport), "--bind", "127.0.0.1", "--dir", str(tmp)]
    redis_proc = start(
        [*redis_argv, "--appendonly", "yes", "--save", ""], dict(os.environ), tmp / "redis.log"
    )
    side = GitHubSide(tmp)
    env = {k: v for k, v in os.environ.items() if not k.startswith("ADAPT_BOT_")}
    env.update(side.env)
    env.update(
        {
            "ADAPT_BOT_WEBHOOK_SECRET": SECRET,
            "ADAPT_BOT_REDIS_URL": f"redis://127.0.0.1:{rport}/0",
            "ADAPT_BOT_DATA_DIR": str(tmp / "service"),
            "ADAPT_BOT_WORK_ROOT": str(tmp / "work"),
        }
    )
    # The deployed shape on one machine: the web process and its control worker (which publishes the
    # intent outbox and applies the intents against the GitHub stand-in); no runner.
    serve_argv = [sys.executable, "-m", "bot.cli", "serve", "--port", str(sport), "--no-runner"]
    serve = start([*serve_argv, "--log-level", "warning"], env, tmp / "serve.log")
    bare = start([sys.executable, __file__, "--bare-server", str(bport)], env, tmp / "bare.log")
    r = redis.Redis(port=rport)
    try:
        wait_http(sport, "/healthz")
        wait_http(bport)
        time.sleep(3)  # the control worker starts beside the web process
        rows = []
        for kind in ("ignored", "command"):
            b = measure(bport, kind, args.requests, args.concurrency)
            wait_idle(r)
            s = measure(sport, kind, args.requests, args.concurrency)
            rows.append((kind, s, b))
        wait_idle(r)
        lat = label_latency(sport, side, args.label_samples)
    finally:
        stop(serve)
        stop(bare)
        side.server.stop()
        stop(redis_proc)
    print(f"webhook intake, {args.requests} requests, {args.concurrency} connections, 1 uvicorn process each")
    print(f"{'payload':<9} {'':<12} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8}")
    for kind, srow, brow in rows:
        print(f"{kind:<9} {'adapt-bot':<12} {srow['rps']:>8.0f} {srow['p50']:>8.2f} {srow['p99']:>8.2f}")
        print(f"{'':<9} {'bare FastAPI':<12} {brow['rps']:>8.0f} {brow['p50']:>8.2f} {brow['p99']:>8.2f}")
        print(f"{'':<9} {'ratio':<12} {srow['rps'] / brow['rps']:>8.0%}")
    lat_ms = sorted(x * 1000 for x in lat)
    print(
        f"issues.labeled -> first status comment at the stand-in: p50 {statistics.median(lat_ms):.0f} ms, "
        f"max {max(lat_ms):.0f} ms over {len(lat_ms)} labels (after one warm-up)"
    )
    shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
