"""The server's output as a size-bounded log with line numbers the evidence can cite.

The head of the log is kept as written and the last lines past the cap are kept too (a crash at
the end of a long start-up still shows); lines are numbered as `grep -n` numbers them. No
knowledge of processes or HTTP here.
"""

from __future__ import annotations

import collections
import threading
import time
from pathlib import Path
from typing import IO

from runners.gates import evidence as ev

#: Log lines after which the server should answer /v1/models (used for the notice-latency figure).
READY_LINE_PATTERNS = ("Application startup complete",)


class LogSink:
    """Copies the server's output to a file, at most `max_bytes`: the head is kept as written, and
    past the cap the last lines are kept in memory and appended at close behind a marker line (a
    crash at the end of a long log still shows). Also timestamps the first ready line."""

    def __init__(self, path: Path, max_bytes: int) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self.written = 0
        self.dropped = 0
        self.lines: list[str] = []
        self.tail: collections.deque[str] = collections.deque()
        self.tail_bytes = 0
        self.ready_line_at: float | None = None
        self.ready_line_no: int | None = None
        self._lock = threading.Lock()
        self._rx = [ev._rx(p) for p in READY_LINE_PATTERNS]
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file: IO[str] = open(path, "w", encoding="utf-8")  # noqa: SIM115 - closed in close()
        self._thread: threading.Thread | None = None

    def follow(self, stream: IO[bytes]) -> None:
        self._thread = threading.Thread(target=self._pump, args=(stream,), daemon=True, name="serve-log")
        self._thread.start()

    def _pump(self, stream: IO[bytes]) -> None:
        for raw in iter(stream.readline, b""):
            self.add(raw.decode("utf-8", "replace"))
        stream.close()

    def add(self, line: str) -> None:
        if not line.endswith("\n"):
            line += "\n"
        now = time.monotonic()
        with self._lock:
            if self.ready_line_at is None and any(r.search(line) for r in self._rx):
                self.ready_line_at = now
                self.ready_line_no = len(self.lines) + 1 if not self.dropped else None
            size = len(line.encode("utf-8", "replace"))
            if self.written + size <= self.max_bytes and not self.dropped:
                self._file.write(line)
                self._file.flush()
                self.written += size
                self.lines.append(line.rstrip("\n"))
                return
            self.dropped += 1
            self.tail.append(line)
            self.tail_bytes += size
            while self.tail_bytes > self.max_bytes // 4 and len(self.tail) > 1:
                self.tail_bytes -= len(self.tail.popleft().encode("utf-8", "replace"))

    def snapshot(self) -> list[str]:
        with self._lock:
            out = list(self.lines)
            if self.dropped:
                out.append(self._marker())
                out.extend(x.rstrip("\n") for x in self.tail)
            return out

    def _marker(self) -> str:
        return (
            f"[adapt-bot] log capped at {self.max_bytes} bytes; "
            f"{self.dropped} lines after the cap, the last ones follow"
        )

    def wait_drained(self, timeout: float) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    def close(self) -> None:
        self.wait_drained(5)
        with self._lock:
            if self.dropped:
                self._file.write(self._marker() + "\n")
                self._file.writelines(self.tail)
            self._file.close()


def read_log_lines(path: Path) -> list[str]:
    """Lines split on "\n" only, so numbers match `grep -n` and editors (progress bars use "\r")."""
    try:
        text = path.read_bytes().decode("utf-8", "replace")  # no universal-newline translation
    except OSError:
        return []
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return lines
