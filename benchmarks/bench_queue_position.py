"""What the status comment's queue position and device time cost per refresh (issue 12).

Starts a private redis-server, stores N jobs (half waiting in one pool, the rest running or ended)
with stage ledgers, and times the parts `bot.intents.status_body` adds: reading the recent jobs
(`JobStore.recent(QUEUE_SCAN)`), the pure position, the job's device ledger, and the whole body.

    .venv/bin/python benchmarks/bench_queue_position.py [--jobs 500] [--repeat 50]
"""

from __future__ import annotations

import argparse
import datetime as dt
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import redis

from bot import comments, quotas
from bot.intents import QUEUE_SCAN
from bot.jobs import machine
from bot.jobs.model import Job
from bot.jobs.store import JobStore
from bot.queue_position import position, waits
from runners.contracts import JobOptions, StageResult


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def median_ms(fn, repeat: int) -> float:  # type: ignore[no-untyped-def]
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    return sorted(times)[len(times) // 2]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--jobs", type=int, default=500)
    ap.add_argument("--repeat", type=int, default=50)
    args = ap.parse_args()
    port = free_port()
    with tempfile.TemporaryDirectory() as d:
        proc = subprocess.Popen(
            ["redis-server", "--port", str(port), "--save", "", "--appendonly", "no", "--dir", d],
            stdout=subprocess.DEVNULL,
        )
        try:
            r = redis.Redis(port=port, decode_responses=True)
            for _ in range(100):
                try:
                    r.ping()
                    break
                except redis.ConnectionError:
                    time.sleep(0.05)
            store = JobStore(r)
            t0 = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)
            mine = None
            for i in range(args.jobs):
                job = Job(repo="o/r", issue=i + 1, pool="a2-8", options=JobOptions(model="Qwen/Qwen3-8B"))
                job = machine.begin(job, "analyze", now=t0 + dt.timedelta(seconds=i))
                if i % 2:
                    job = machine.mark_started(job, "analyze", 1)
                store.create(job)
                res = StageResult(stage="analyze", status="passed", attempt=1, finished_at=t0)
                quotas.record_spent(r, job, res.model_copy(update={"data": {"device_seconds": 10.0 * i}}))
                if i == args.jobs - 2:
                    mine = job
            assert mine is not None
            recent = median_ms(lambda: store.recent(QUEUE_SCAN), args.repeat)
            jobs = store.recent(QUEUE_SCAN)
            pure = median_ms(lambda: position(mine, jobs), args.repeat)
            ledger = median_ms(lambda: quotas.job_spent(r, mine.id), args.repeat)

            def body(job: Job) -> str:  # as bot.intents.status_body: the line is scanned only if it waits
                q = position(job, store.recent(QUEUE_SCAN)) if waits(job) else None
                return comments.render_status(job, spent=quotas.job_spent(r, job.id), queue=q)

            whole = median_ms(lambda: body(mine), args.repeat)
            started = machine.mark_started(mine, "analyze", 1)
            running = median_ms(lambda: body(started), args.repeat)
            plain = median_ms(lambda: comments.render_status(mine), args.repeat)
            q = position(mine, jobs)
            scanned = min(args.jobs, QUEUE_SCAN)
            print(f"jobs stored {args.jobs}, scanned {scanned}; position {q.position} of {q.of}")
            print(f"JobStore.recent({QUEUE_SCAN}): {recent:.2f} ms (median of {args.repeat})")
            print(f"queue_position.position (pure): {pure:.3f} ms")
            print(f"quotas.job_spent (one HGETALL): {ledger:.3f} ms")
            print(f"status body of a waiting job (queue + device time): {whole:.2f} ms")
            print(f"status body of a running job (device time, no scan): {running:.2f} ms")
            print(f"status body with neither: {plain:.2f} ms")
        finally:
            proc.terminate()
            proc.wait(10)


if __name__ == "__main__":
    main()
