"""The control plane's log store (bot.jobs.logs): local disk by default, an S3-compatible store
when configured (here a real S3 HTTP server, moto_server, reached by boto3 through its own AWS_*
settings). Stage logs come from the real runner body (`runners.host.task.run_stage`) through the
inbox, and the web app serves them from the store; a store outage leaves the result pending, not
lost, and the messages never carry the store's credentials."""

from __future__ import annotations

import base64
import gzip
import logging
import os
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from bot.jobs.logs import DiskLogs, LogStoreError, S3Logs, parse_location
from runners.host.logs import encode
from runners.host.task import run_stage
from tests.intake.test_runner_task import inbox, models, request, started_job  # noqa: F401 (fixture)
from tests.plugins.s3 import ACCESS_KEY, BUCKET, SECRET_KEY, S3Server

JOB = "0123456789abcdef"


def stores(tmp_path: Path, s3: S3Server | None) -> list[Any]:
    out: list[Any] = [DiskLogs(tmp_path / "logs")]
    if s3 is not None:
        out.append(S3Logs(BUCKET, "jobs"))
    return out


@pytest.mark.parametrize("kind", ["disk", "s3"])
def test_a_stage_replaces_its_own_logs_and_only_its_own(kind: str, tmp_path: Path, request: Any) -> None:
    s3 = request.getfixturevalue("s3_server") if kind == "s3" else None
    store = stores(tmp_path, s3)[-1]
    store.save(JOB, "real-gate", {"real-gate.log": encode("one\ntwo\n"), "serve.log": encode("a")})
    store.save(JOB, "dummy-gate", {"dummy-gate.log": encode("dummy\n")})
    assert store.names(JOB) == ["dummy-gate/dummy-gate.log", "real-gate/real-gate.log", "real-gate/serve.log"]
    assert gzip.decompress(store.read(JOB, "real-gate/real-gate.log")) == b"one\ntwo\n"
    # a rerun of the real gate ships one log: the stage's old second log goes, dummy-gate's stays
    store.save(JOB, "real-gate", {"real-gate.log": encode("rerun\n")})
    assert store.names(JOB) == ["dummy-gate/dummy-gate.log", "real-gate/real-gate.log"]
    assert gzip.decompress(store.read(JOB, "real-gate/real-gate.log")) == b"rerun\n"
    assert store.read(JOB, "real-gate/serve.log") is None
    assert store.names("another-job") == []
    # names are the channel's vocabularies, nothing else becomes a path or a key
    for job_id, stage, file in [
        ("../etc", "real-gate", "x.log"),
        (JOB, "../../etc", "x.log"),
        (JOB, "real-gate", "../x.log"),
        (JOB, "real-gate", "x.txt"),
        ("a/b", "real-gate", "x.log"),
    ]:
        with pytest.raises(ValueError, match="not a log name"):
            store.save(job_id, stage, {file: encode("x")})
    for name in ("real-gate/../dummy-gate/dummy-gate.log", "nope/x.log", "real-gate", ""):
        assert store.read(JOB, name) is None
    assert store.read("../" + JOB, "real-gate/real-gate.log") is None
    with pytest.raises(ValueError, match="not base64"):
        store.save(JOB, "analyze", {"analyze.log": "not base64!"})


def test_disk_writes_leave_no_partial_files_and_fail_with_the_directory(tmp_path: Path) -> None:
    store = DiskLogs(tmp_path / "logs")
    store.save(JOB, "analyze", {"analyze.log": encode("x" * 100_000)})
    stage_dir = tmp_path / "logs" / JOB / "analyze"
    assert [p.name for p in stage_dir.iterdir()] == ["analyze.log.gz"]
    blocked = DiskLogs(tmp_path / "file")
    (tmp_path / "file").write_text("a file where the directory should be")
    with pytest.raises(LogStoreError, match=r"cannot write logs to the log directory .*file"):
        blocked.save(JOB, "analyze", {"analyze.log": encode("x")})


def test_the_setting_says_what_to_write_instead(tmp_path: Path) -> None:
    from bot.config import Settings

    assert isinstance(parse_location(None, tmp_path), DiskLogs)
    assert parse_location(None, tmp_path).root == tmp_path / "logs"  # type: ignore[attr-defined]
    s3 = parse_location("s3://bucket/some/prefix/", tmp_path)
    assert isinstance(s3, S3Logs) and s3.describe() == "s3://bucket/some/prefix/"
    for bad in ("relative/dir", "s3://", "s3://b?x=1", "ftp://host/x"):
        with pytest.raises(ValueError, match="ADAPT_BOT_LOG_STORE"):
            Settings(log_store=bad)


@pytest.mark.usefixtures("models", "runner_settings")
def test_logs_of_a_real_stage_reach_s3_and_the_jobs_page_through_an_outage(
    s3_server: S3Server, app_settings: Any, deps: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """The analyze stage runs (runner body), the inbox stores its logs in S3, the web app serves
    them. With the store down the inbox keeps the event pending: no result without its logs, and
    nothing lost; once the store answers the same event is applied."""
    from bot.app import create_app
    from bot.jobs.store import JobStore
    from tests.standin.server import ThreadedServer

    deps.store = JobStore(deps.redis, S3Logs(BUCKET, "jobs"))
    job = started_job(deps)
    # a public repository's job: its pages need no sign-in
    job = deps.store.update(job.id, lambda j: j.model_copy(update={"repo_private": False}))
    assert run_stage(request(deps, job)) == "passed"

    s3_server.stop()
    box = inbox(deps)
    box.reclaim_idle_ms = 0  # re-read the pending entries at once (production: 30 s)
    with pytest.raises(LogStoreError) as down:
        box.poll_once()
    message = str(down.value)
    assert message.startswith("cannot write logs to s3://adapt-bot-logs/jobs/")
    assert SECRET_KEY not in message and ACCESS_KEY not in message
    assert deps.store.get_result(job.id, "analyze") is None  # not recorded without its logs
    # the control worker's inbox thread says so in its log, once per retry, without a traceback
    with caplog.at_level(logging.WARNING, logger="bot.runner_link"):
        box.start()
        deadline = time.monotonic() + 10
        while "stays pending" not in caplog.text and time.monotonic() < deadline:
            time.sleep(0.05)
        box.stop()
    (record,) = [r for r in caplog.records if "stays pending" in r.getMessage()][:1]
    assert record.exc_info is None and "s3://adapt-bot-logs/jobs/" in record.getMessage()
    assert SECRET_KEY not in caplog.text
    assert deps.store.get_result(job.id, "analyze") is None

    s3_server.start()  # moto keeps nothing across a restart; an operator's store keeps its bucket
    s3_server.client().create_bucket(Bucket=BUCKET)
    assert box.poll_once() >= 1
    assert deps.store.get_result(job.id, "analyze").status == "passed"
    assert deps.store.log_names(job.id) == ["analyze/analyze.log"]
    text = deps.store.log_text(job.id, "analyze/analyze.log")
    assert text and "Architecture  LlamaForCausalLM" in text

    # the web process reads the same store (its settings name it), with nothing on local disk
    settings = app_settings.model_copy(update={"log_store": "s3://adapt-bot-logs/jobs"})
    app = create_app(settings, queue=deps.queue, publish_outbox=False)
    server = ThreadedServer(app).start()
    try:
        r = httpx.get(f"{server.url}/jobs/{job.id}/logs/analyze/analyze.log", params={"raw": 1})
    finally:
        server.stop()
    assert r.status_code == 200 and r.text == text
    assert not (Path(settings.data_dir) / "logs").exists()
    # what the operator's store holds: the gzip bytes the runner shipped, under the job's prefix
    keys = [o["Key"] for o in s3_server.client().list_objects_v2(Bucket=BUCKET)["Contents"]]
    assert keys == [f"jobs/{job.id}/analyze/analyze.log.gz"]
    assert os.environ["AWS_ENDPOINT_URL_S3"] == s3_server.url


def test_a_stored_blob_that_is_not_bounded_gzip_is_not_served(deps: Any, tmp_path: Path) -> None:
    from bot.jobs.store import JobStore

    store = JobStore(deps.redis, DiskLogs(tmp_path / "logs"))
    store.save_logs(JOB, "analyze", {"analyze.log": base64.b64encode(b"plain, not gzip").decode()})
    with pytest.raises(ValueError, match="not gzip"):
        store.log_text(JOB, "analyze/analyze.log")
    bomb = gzip.compress(b"\0" * (3 * 1024 * 1024))
    store.save_logs(JOB, "analyze", {"analyze.log": base64.b64encode(bomb).decode()})
    with pytest.raises(ValueError, match="inflates past"):
        store.log_text(JOB, "analyze/analyze.log")


def test_pages_say_the_logs_are_kept_while_the_store_is_down(
    s3_server: S3Server, app_settings: Any, deps: Any
) -> None:
    from bot.app import create_app
    from bot.jobs.store import JobStore
    from tests.standin.server import ThreadedServer

    settings = app_settings.model_copy(update={"log_store": "s3://adapt-bot-logs/jobs"})
    deps.store = JobStore(deps.redis, S3Logs(BUCKET, "jobs"))
    job = started_job(deps)
    job = deps.store.update(job.id, lambda j: j.model_copy(update={"repo_private": False}))
    deps.store.save_logs(job.id, "analyze", {"analyze.log": encode("line one\n")})
    server = ThreadedServer(create_app(settings, queue=deps.queue, publish_outbox=False)).start()
    try:
        up = httpx.get(f"{server.url}/jobs/{job.id}")
        assert up.status_code == 200 and f'href="/jobs/{job.id}/logs/analyze/analyze.log"' in up.text
        s3_server.stop()
        page = httpx.get(f"{server.url}/jobs/{job.id}", timeout=60)
        log_page = httpx.get(f"{server.url}/jobs/{job.id}/logs/analyze/analyze.log", timeout=60)
    finally:
        server.stop()
    # the job page still shows the job, and says why the log links are missing
    assert page.status_code == 200 and "The log store is not answering right now" in page.text
    assert "/logs/analyze/analyze.log" not in page.text
    assert log_page.status_code == 503 and "The logs are kept" in log_page.text
    for text in (page.text, log_page.text):
        assert "s3://" not in text and SECRET_KEY not in text and s3_server.url not in text
