"""Where the control plane keeps the logs runners ship: local disk by default, an S3-compatible
store (MinIO, Ceph RGW, Huawei OBS, AWS S3) when `ADAPT_BOT_LOG_STORE=s3://bucket/prefix`.

Logs are evidence a maintainer opens from the jobs page (`/jobs/<id>/logs/<stage>/<file>`), so
they live next to the job's record in a store meant for files, not in Redis. Both stores keep one
object per log, `<job id>/<stage>/<file>.gz`, holding the gzip bytes the runner shipped (already
bounded and scrubbed by runners.host.logs); nothing is decompressed on the way in. Every part of
a path is checked against the same vocabularies the channel validated (job ids, stage names,
runners.host.logs.LOG_NAME), so no key or path is ever built from other text.

A store that fails raises `LogStoreError`. The runner inbox then leaves the stage result pending
and applies it when the store answers again (bot.runner_link.Inbox): a result is never recorded
without its logs, and neither is lost.

S3: boto3 reads its own settings exactly as it does everywhere else — credentials and region
from `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY` / `AWS_REGION` or the shared files, the
endpoint of an S3-compatible service from `AWS_ENDPOINT_URL_S3` (or `AWS_ENDPOINT_URL`).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import logging
import os
import re
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

from runners.contracts import STAGES
from runners.host.logs import LOG_NAME

log = logging.getLogger(__name__)

_JOB_ID = re.compile(r"^[A-Za-z0-9-]{1,64}$")
_SUFFIX = ".gz"
#: S3 requests: bounded, retried by botocore's standard mode (throttling, 5xx, dropped connections)
S3_CONNECT_TIMEOUT_S = 5.0
S3_READ_TIMEOUT_S = 30.0
S3_ATTEMPTS = 3


class LogStoreError(Exception):
    """The log store could not be written or read (the message names the store, never a secret)."""


def _check(job_id: str, stage: str, file: str | None = None) -> None:
    if not _JOB_ID.match(job_id) or stage not in STAGES or (file is not None and not LOG_NAME.match(file)):
        raise ValueError(f"not a log name: {job_id[:64]!r} {stage[:40]!r} {str(file)[:130]!r}")


def split_name(name: str) -> tuple[str, str] | None:
    """`<stage>/<file>` -> (stage, file) when both are names a runner ships, else None."""
    stage, _, file = name.partition("/")
    return (stage, file) if stage in STAGES and LOG_NAME.match(file) else None


def gzip_bytes(blob: str) -> bytes:
    """The gzip bytes of a shipped blob (base64 as the channel carries it)."""
    try:
        return base64.b64decode(blob.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError) as exc:
        raise ValueError("log blob is not base64") from exc


class LogStore(Protocol):
    """A stage's logs replace that stage's earlier ones (a rerun); names are `<stage>/<file>`."""

    def save(self, job_id: str, stage: str, logs: Mapping[str, str]) -> None: ...
    def names(self, job_id: str) -> list[str]: ...
    def read(self, job_id: str, name: str) -> bytes | None: ...
    def describe(self) -> str: ...


@dataclass
class DiskLogs:
    """`<root>/<job id>/<stage>/<file>.gz`, each written to a temporary file, fsync'd and renamed
    into place, so a reader sees a whole log or none and a crash leaves no half file."""

    root: Path

    def describe(self) -> str:
        return f"the log directory {self.root}"

    def save(self, job_id: str, stage: str, logs: Mapping[str, str]) -> None:
        _check(job_id, stage)
        for file in logs:
            _check(job_id, stage, file)
        blobs = {file: gzip_bytes(blob) for file, blob in logs.items()}
        stage_dir = self.root / job_id / stage
        try:
            stage_dir.mkdir(parents=True, exist_ok=True)
            for file, data in blobs.items():
                fd, tmp = tempfile.mkstemp(dir=stage_dir, prefix=".incoming-")
                try:
                    with os.fdopen(fd, "wb") as fh:
                        fh.write(data)
                        fh.flush()
                        os.fsync(fh.fileno())
                    os.replace(tmp, stage_dir / (file + _SUFFIX))
                except BaseException:
                    with contextlib.suppress(OSError):
                        os.unlink(tmp)
                    raise
            for old in stage_dir.glob("*" + _SUFFIX):
                if old.name.removesuffix(_SUFFIX) not in blobs:
                    old.unlink()
        except OSError as exc:
            raise LogStoreError(f"cannot write logs to {self.describe()}: {exc.strerror or exc}") from None

    def names(self, job_id: str) -> list[str]:
        if not _JOB_ID.match(job_id):
            return []
        job_dir = self.root / job_id
        if not job_dir.is_dir():
            return []
        out = []
        for path in job_dir.glob("*/*" + _SUFFIX):
            name = f"{path.parent.name}/{path.name.removesuffix(_SUFFIX)}"
            if split_name(name):
                out.append(name)
        return sorted(out)

    def read(self, job_id: str, name: str) -> bytes | None:
        parts = split_name(name)
        if parts is None or not _JOB_ID.match(job_id):
            return None
        try:
            return (self.root / job_id / parts[0] / (parts[1] + _SUFFIX)).read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise LogStoreError(f"cannot read logs from {self.describe()}: {exc.strerror or exc}") from None


class S3Logs:
    """`s3://<bucket>/<prefix>/<job id>/<stage>/<file>.gz` in any S3-compatible store."""

    def __init__(self, bucket: str, prefix: str = "", client: Any = None) -> None:
        self.bucket = bucket
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        self._client = client

    @property
    def client(self) -> Any:
        if self._client is None:
            try:
                import boto3
                from botocore.config import Config
            except ImportError:  # pragma: no cover - the [s3] extra is part of every image
                raise LogStoreError(
                    "ADAPT_BOT_LOG_STORE is an s3:// URL but boto3 is not installed: "
                    "pip install 'adapt-bot[s3]'"
                ) from None
            config = Config(
                connect_timeout=S3_CONNECT_TIMEOUT_S,
                read_timeout=S3_READ_TIMEOUT_S,
                retries={"max_attempts": S3_ATTEMPTS, "mode": "standard"},
            )
            self._client = boto3.session.Session().client("s3", config=config)
        return self._client

    def describe(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"

    def _key(self, job_id: str, stage: str, file: str) -> str:
        return f"{self.prefix}{job_id}/{stage}/{file}{_SUFFIX}"

    def _fail(self, what: str, exc: Exception) -> LogStoreError:
        # botocore messages name the operation, the status and the store's error code; never keys
        return LogStoreError(f"cannot {what} {self.describe()}: {type(exc).__name__}: {str(exc)[:300]}")

    def _list(self, prefix: str) -> list[str]:
        keys: list[str] = []
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
            keys.extend(str(o["Key"]) for o in page.get("Contents", []))
        return keys

    def save(self, job_id: str, stage: str, logs: Mapping[str, str]) -> None:
        _check(job_id, stage)
        for file in logs:
            _check(job_id, stage, file)
        blobs = {file: gzip_bytes(blob) for file, blob in logs.items()}
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            for file, data in blobs.items():
                self.client.put_object(
                    Bucket=self.bucket,
                    Key=self._key(job_id, stage, file),
                    Body=data,
                    ContentType="text/plain; charset=utf-8",
                    ContentEncoding="gzip",
                )
            keep = {self._key(job_id, stage, f) for f in blobs}
            stale = [k for k in self._list(f"{self.prefix}{job_id}/{stage}/") if k not in keep]
            if stale:
                self.client.delete_objects(
                    Bucket=self.bucket, Delete={"Objects": [{"Key": k} for k in stale], "Quiet": True}
                )
        except (BotoCoreError, ClientError) as exc:
            raise self._fail("write logs to", exc) from None

    def names(self, job_id: str) -> list[str]:
        if not _JOB_ID.match(job_id):
            return []
        from botocore.exceptions import BotoCoreError, ClientError

        base = f"{self.prefix}{job_id}/"
        try:
            keys = self._list(base)
        except (BotoCoreError, ClientError) as exc:
            raise self._fail("list logs in", exc) from None
        names = (k[len(base) :].removesuffix(_SUFFIX) for k in keys if k.endswith(_SUFFIX))
        return sorted(n for n in names if split_name(n))

    def read(self, job_id: str, name: str) -> bytes | None:
        parts = split_name(name)
        if parts is None or not _JOB_ID.match(job_id):
            return None
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            obj = self.client.get_object(Bucket=self.bucket, Key=self._key(job_id, *parts))
            return bytes(obj["Body"].read())
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                return None
            raise self._fail("read logs from", exc) from None
        except BotoCoreError as exc:
            raise self._fail("read logs from", exc) from None


def parse_location(value: str | None, data_dir: Path) -> LogStore:
    """`ADAPT_BOT_LOG_STORE`: unset -> `<data_dir>/logs`; an absolute path; or `s3://bucket[/prefix]`."""
    if not value:
        return DiskLogs(data_dir / "logs")
    if value.startswith("s3://"):
        url = urlsplit(value)
        if not url.netloc or url.query or url.fragment:
            raise ValueError(f"ADAPT_BOT_LOG_STORE: {value[:200]!r} is not s3://<bucket>[/<prefix>]")
        return S3Logs(url.netloc, url.path)
    path = Path(value)
    if not path.is_absolute():
        raise ValueError(
            f"ADAPT_BOT_LOG_STORE: {value[:200]!r} is neither an absolute directory nor s3://<bucket>[/<prefix>]"
        )
    return DiskLogs(path)


def from_settings(settings: Any) -> LogStore:
    return parse_location(settings.log_store, settings.data_dir)
