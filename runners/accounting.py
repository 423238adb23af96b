"""Wall time of the external processes a job runs (vllm serve, lm_eval).

The figure that tells whether the bot is cheap to run is its own overhead: total job time minus
the time spent inside the model server and the evaluation harness. Each process a stage starts
records its lifetime here, one JSON line per process, in the workspace's logs. Parallel probes
overlap, so the total is the union of the intervals, not their sum.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

FILE_NAME = "processes.jsonl"


def record(logs_dir: Path, name: str, started: float, ended: float) -> None:
    logs_dir.mkdir(parents=True, exist_ok=True)
    line = json.dumps(
        {"name": name, "started": started, "ended": ended, "seconds": round(ended - started, 3)}
    )
    with (logs_dir / FILE_NAME).open("a", encoding="utf-8") as fh:
        fh.write(line + "\n")


@contextmanager
def timed(logs_dir: Path, name: str) -> Iterator[None]:
    started = time.time()
    try:
        yield
    finally:
        record(logs_dir, name, started, time.time())


def intervals(logs_dir: Path) -> list[tuple[float, float]]:
    path = logs_dir / FILE_NAME
    if not path.is_file():
        return []
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            d = json.loads(line)
            out.append((float(d["started"]), float(d["ended"])))
    return out


def union_seconds(spans: list[tuple[float, float]]) -> float:
    """Length of the union of [start, end] intervals."""
    total = 0.0
    cur_start: float | None = None
    cur_end = 0.0
    for start, end in sorted(spans):
        if cur_start is None or start > cur_end:
            if cur_start is not None:
                total += cur_end - cur_start
            cur_start, cur_end = start, end
        else:
            cur_end = max(cur_end, end)
    if cur_start is not None:
        total += cur_end - cur_start
    return total


def total_seconds(logs_dir: Path) -> float:
    return union_seconds(intervals(logs_dir))
