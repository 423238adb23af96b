"""A real S3 HTTP server for the log store's tests: moto's standalone server (`moto_server`, the
S3 API over HTTP on a loopback port), reached by boto3 through its own settings
(`AWS_ENDPOINT_URL_S3`, `AWS_ACCESS_KEY_ID`, ...), as an operator's MinIO or OBS would be."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import free_port

BUCKET = "adapt-bot-logs"
#: test credentials; the tests assert they never appear in a message
ACCESS_KEY = "AKIATESTLOGSTORE0001"
SECRET_KEY = "s3-secret-never-in-a-message-0123456789"


@dataclass
class S3Server:
    port: int
    log: Path
    proc: subprocess.Popen[bytes] | None = None
    env: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        moto = Path(sys.executable).parent / "moto_server"
        with self.log.open("ab") as fh:
            self.proc = subprocess.Popen(
                [str(moto), "-H", "127.0.0.1", "-p", str(self.port)], stdout=fh, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                httpx.get(self.url + "/moto-api/", timeout=1)
                return
            except httpx.HTTPError:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"moto_server exited: {self.log.read_text()[-2000:]}") from None
                time.sleep(0.2)
        raise RuntimeError("moto_server did not start in 30 s")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)

    def client(self) -> Any:
        import boto3

        return boto3.session.Session().client("s3")


@pytest.fixture
def s3_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[S3Server]:
    """A fresh S3 server with the bucket made; boto3 in this process points at it by its env vars
    (the same ones `s3_server.env` hands to worker processes)."""
    server = S3Server(port=free_port(), log=tmp_path / "moto.log")
    server.env = {
        "AWS_ENDPOINT_URL_S3": server.url,
        "AWS_ACCESS_KEY_ID": ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
        "AWS_DEFAULT_REGION": "us-east-1",
        # no ~/.aws files from the host
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
    }
    for k, v in server.env.items():
        monkeypatch.setenv(k, v)
    server.start()
    server.client().create_bucket(Bucket=BUCKET)
    try:
        yield server
    finally:
        server.stop()
