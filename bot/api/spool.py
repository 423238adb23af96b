"""A local durable spool of verified deliveries the web process could not record in Redis.

Why: GitHub gives a webhook 10 s and never resends by itself. When Redis is away the webhook still
answers 202 within about a second, after appending the raw delivery (event, GUID, the `X-GitHub-*`
headers, the body) as one JSON line to `<data_dir>/spool/deliveries.jsonl` and fsync'ing it. The web
process replays the spool through the normal intake when it starts and every
`ADAPT_BOT_SPOOL_REPLAY_S`; dedupe on the delivery GUID makes a line replayed twice harmless, so a
replay that stops half-way simply starts again from the top next time.

The file holds webhook payloads (which may quote private repositories): mode 0600 in a 0700
directory on the web host's own disk (a PersistentVolume in Kubernetes, a volume in compose).
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import logging
import os
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import orjson

log = logging.getLogger(__name__)


class Spool:
    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.path = directory / "deliveries.jsonl"
        self._lock_path = directory / ".lock"

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing releases the lock

    def append(self, event: str, delivery: str, body: bytes, headers: dict[str, str]) -> None:
        """Append one delivery and fsync it (file and, when it was created, the directory)."""
        line = orjson.dumps(
            {
                "event": event,
                "delivery": delivery,
                "headers": headers,
                "body": base64.b64encode(body).decode(),
                "received_at": time.time(),
            }
        )
        with self._locked():
            created = not self.path.exists()
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(fd, line + b"\n")
                os.fsync(fd)
            finally:
                os.close(fd)
            if created:
                dfd = os.open(self.dir, os.O_RDONLY)
                try:
                    os.fsync(dfd)
                finally:
                    os.close(dfd)

    def _files(self) -> list[Path]:
        if not self.dir.exists():
            return []
        return sorted(self.dir.glob("replaying-*.jsonl"))

    def depth(self) -> int:
        """Deliveries waiting in the spool (lines), for /metrics and tests."""
        n = 0
        for f in [*self._files(), self.path]:
            with contextlib.suppress(FileNotFoundError):
                n += sum(1 for line in f.read_bytes().splitlines() if line.strip())
        return n

    def _claim(self) -> list[Path]:
        """Move the live file aside (new deliveries go to a fresh one) and list what to replay."""
        with self._locked():
            if self.path.exists() and self.path.stat().st_size > 0:
                self.path.rename(self.dir / f"replaying-{time.time_ns()}-{os.getpid()}.jsonl")
            return self._files()

    @staticmethod
    def _records(path: Path) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for n, line in enumerate(path.read_bytes().splitlines(), 1):
            if not line.strip():
                continue
            try:
                rec = orjson.loads(line)
                rec["body"] = base64.b64decode(rec["body"])
            except (orjson.JSONDecodeError, KeyError, ValueError, TypeError):
                # only a write cut short by a crash can leave a broken line: nothing was answered 202
                log.warning("spool %s line %d is not a complete record; skipped", path.name, n)
                continue
            out.append(rec)
        return out

    async def replay(self, accept: Callable[[dict[str, Any]], Awaitable[None]]) -> int:
        """Hand every spooled delivery to `accept`, in arrival order; a file is deleted once all of
        its lines went through. An exception stops the replay and keeps the file for next time."""
        if not self.path.exists() and not self._files():
            return 0
        fd = os.open(self.dir / ".replay-lock", os.O_RDWR | os.O_CREAT, 0o600)
        done = 0
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return 0  # another process sharing this directory is replaying it
            for path in self._claim():
                for record in self._records(path):
                    await accept(record)
                    done += 1
                path.unlink()
        finally:
            os.close(fd)
        if done:
            log.info("replayed %d spooled deliveries", done)
        return done
