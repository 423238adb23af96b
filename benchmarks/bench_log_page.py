"""Log page cost (issue 15): rendering `/jobs/<id>/logs/<stage>/<file>` (one anchored element per
line, autoescaped) for a log at the runner's per-file bound, next to the `?raw=1` variant.

    .venv/bin/python benchmarks/bench_log_page.py [--repeat 5]

The log is the real vLLM log tests/fixtures/vllm-logs/head16-false-ready.log repeated up to
runners.host.logs.MAX_LOG_BYTES (the most a runner ships per file). Rendering is what the web
process does per request (the page is not cached); the raw variant only decodes the stored blob.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from bot.jobs.model import Job
from runners.contracts import JobOptions
from runners.host.logs import MAX_LOG_BYTES, decode, encode
from runners.render import render

LOG = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "vllm-logs" / "head16-false-ready.log"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    one = LOG.read_text()
    text = (one * (MAX_LOG_BYTES // len(one) + 1)).encode()[:MAX_LOG_BYTES].decode(errors="ignore")
    blob = encode(text)
    job = Job(repo="octo-org/vllm-ascend", issue=1, options=JobOptions(model="org/Tiny-Llama-1B"))
    page_s, raw_s, size = [], [], 0
    for _ in range(args.repeat):
        t = time.perf_counter()
        lines = decode(blob).splitlines()
        html = render(
            "pages/log.html",
            job=job,
            name="real-gate/real-gate.log",
            lines=lines,
            size=len(text),
            raw_href="?raw=1",
        )
        page_s.append(time.perf_counter() - t)
        size = len(html.encode())
        t = time.perf_counter()
        decode(blob)
        raw_s.append(time.perf_counter() - t)
    page, raw = statistics.median(page_s), statistics.median(raw_s)
    print(f"log: {len(text) / 2**20:.1f} MiB, {len(lines)} lines, stored blob {len(blob) / 2**10:.0f} KiB")
    print(f"html page: {page * 1000:.0f} ms median of {args.repeat}, {size / 2**20:.1f} MiB of HTML")
    print(f"raw:       {raw * 1000:.0f} ms median (decode only)")
    print(f"ratio page/raw: {page / raw:.1f}x; HTML/log size: {size / len(text):.2f}x")


if __name__ == "__main__":
    main()
