"""Wall time of the external processes a job runs (vllm serve, lm_eval).

The figure that tells whether the bot is cheap to run is its own overhead: total job time
minus the time spent inside the model server and the evaluation harness. Each process that
a stage starts records its lifetime here, one JSON line per process, in the workspace.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

FILE_NAME = "processes.jsonl"


def record(logs_dir: Path, name: str, seconds: float, argv0: str = "") -> None:
    logs_dir.mkdir(parents=True, exist_ok=True)
    line = json.dumps({"name": name, "argv0": argv0, "seconds": round(seconds, 3), "ended": time.time()})
    with (logs_dir / FILE_NAME).open("a", encoding="utf-8") as fh:
        fh.write(line + "\n")


@contextmanager
def timed(logs_dir: Path, name: str, argv0: str = "") -> Iterator[None]:
    start = time.monotonic()
    try:
        yield
    finally:
        record(logs_dir, name, time.monotonic() - start, argv0)


def total_seconds(logs_dir: Path) -> float:
    path = logs_dir / FILE_NAME
    if not path.is_file():
        return 0.0
    total = 0.0
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            total += float(json.loads(line)["seconds"])
    return total
