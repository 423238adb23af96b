"""Ship a stage's logs with its result: bounded, secrets scrubbed, gzip + base64 (pure but for the
file reads). The control plane stores them for the jobs pages; evidence excerpts cite their lines.

Only logs written during the stage (modified at or after its start) are sent; each is cut to its
last `MAX_LOG_BYTES` (the failure is at the end) and the whole set to `MAX_LOGS_BYTES`.
"""

from __future__ import annotations

import base64
import gzip
import io
import re
from pathlib import Path

#: Per log file and per stage (compressed size counts against the channel's event bound).
MAX_LOG_BYTES = 2 * 1024 * 1024
MAX_LOGS_BYTES = 6 * 1024 * 1024
LOG_NAME = re.compile(r"^[A-Za-z0-9._-]{1,128}\.(log|jsonl)$")

#: Credential shapes that may appear in a log (a URL with a password, bearer headers, GitHub and
#: Hugging Face tokens, private keys); replaced by `[redacted]`.
_SECRETS = [
    re.compile(r"(?i)(redis|rediss|https?)://([^:/@\s]+):([^@\s]+)@"),
    re.compile(r"(?i)(authorization:\s*(?:bearer|token)\s+)\S+"),
    re.compile(r"\b(gh[pousr]_[A-Za-z0-9_]{20,}|github_pat_[A-Za-z0-9_]{20,}|hf_[A-Za-z0-9]{20,})\b"),
    re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?-----END [A-Z ]*PRIVATE KEY-----", re.S),
]


def scrub(text: str) -> str:
    text = _SECRETS[0].sub(lambda m: f"{m.group(1)}://{m.group(2)}:[redacted]@", text)
    text = _SECRETS[1].sub(lambda m: f"{m.group(1)}[redacted]", text)
    text = _SECRETS[2].sub("[redacted]", text)
    return _SECRETS[3].sub("[redacted private key]", text)


def encode(text: str) -> str:
    return base64.b64encode(gzip.compress(text.encode("utf-8"), mtime=0)).decode("ascii")


def decode(blob: str, limit: int = MAX_LOG_BYTES + 1024) -> str:
    """Inverse of `encode`, refusing anything that inflates past `limit` bytes (a zip bomb)."""
    return inflate(base64.b64decode(blob.encode("ascii"), validate=True), limit)


def inflate(raw: bytes, limit: int = MAX_LOG_BYTES + 1024) -> str:
    """The text of gzip bytes, refusing anything that inflates past `limit` bytes (a zip bomb)."""
    try:
        with gzip.GzipFile(fileobj=io.BytesIO(raw)) as fh:
            data = fh.read(limit + 1)
    except (OSError, EOFError) as exc:
        raise ValueError(f"log is not gzip: {exc}") from None
    if len(data) > limit:
        raise ValueError(f"log inflates past {limit} bytes")
    return data.decode("utf-8", errors="replace")


def _tail(path: Path) -> str:
    size = path.stat().st_size
    with path.open("rb") as fh:
        if size > MAX_LOG_BYTES:
            fh.seek(size - MAX_LOG_BYTES)
            fh.readline()  # start on a line boundary
            head = f"[... {size - MAX_LOG_BYTES} earlier bytes not shipped ...]\n"
        else:
            head = ""
        return head + fh.read().decode("utf-8", errors="replace")


def pack(log_dir: Path, since: float) -> dict[str, str]:
    """name -> encoded scrubbed text of the logs written since `since` (epoch seconds)."""
    out: dict[str, str] = {}
    total = 0
    if not log_dir.is_dir():
        return out
    for path in sorted(log_dir.iterdir(), key=lambda p: p.stat().st_mtime, reverse=True):
        if not path.is_file() or not LOG_NAME.match(path.name) or path.stat().st_mtime < since:
            continue
        blob = encode(scrub(_tail(path)))
        if total + len(blob) > MAX_LOGS_BYTES:
            break
        out[path.name] = blob
        total += len(blob)
    return out
