"""CLI progress for long local runs: one line per event, elapsed time per stage.

On a terminal the current line is redrawn in place; elsewhere (CI, pipes) each update is its
own line, throttled so a 10-minute gate does not print thousands of lines.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO


class StageProgress:
    def __init__(self, total: int, stream: TextIO | None = None, min_interval_s: float = 5.0) -> None:
        self.total = total
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.min_interval_s = min_interval_s
        self.index = 0
        self.stage = ""
        self.started = time.monotonic()
        self._last_line = ""
        self._last_emit = 0.0

    def begin(self, stage: str) -> None:
        self.index += 1
        self.stage = stage
        self.started = time.monotonic()
        self._emit("running", force=True)

    def update(self, line: str) -> None:
        self._emit(line)

    def end(self, status: str, detail: str = "") -> None:
        suffix = f" — {detail}" if detail else ""
        self._emit(f"{status}{suffix}", force=True, final=True)

    def _emit(self, text: str, *, force: bool = False, final: bool = False) -> None:
        now = time.monotonic()
        if not force and not self.tty and now - self._last_emit < self.min_interval_s:
            return
        self._last_emit = now
        self._last_line = text
        elapsed = now - self.started
        msg = f"[{self.index}/{self.total}] {self.stage:<11} {_fmt(elapsed):>6}  {text}"
        if self.tty:
            self.stream.write("\r\x1b[2K" + msg[:200] + ("\n" if final else ""))
        else:
            self.stream.write(msg + "\n")
        self.stream.flush()


def _fmt(seconds: float) -> str:
    m, s = divmod(int(seconds), 60)
    return f"{m}:{s:02d}"
