"""`runners.host.task.run_stage` called directly (the body a `cpu` runner worker runs), as the
`cpu` pool's Redis ACL user, and the control plane's inbox consuming what it sent: the stage
runs, its events are accepted only for that attempt, the result is stored by the control plane
and the next control task is queued by id; redelivered messages do nothing twice; a message that
keeps killing workers is capped."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from bot import runner_link
from bot.jobs import machine
from bot.jobs.model import Job
from runners.contracts import JobOptions, StageRequest
from runners.host.channel import RunnerChannel
from runners.host.task import ChannelCancel, collect_files, redis_client, run_stage
from runners.workspace import Workspace
from tests.intake.conftest import queued


@pytest.fixture
def models(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    from tests.intake.test_chain import make_checkpoint

    root = tmp_path / "models"
    make_checkpoint(root, "tiny-llama")
    monkeypatch.setenv("ADAPT_BOT_MODELS_ROOT", str(root))
    monkeypatch.setenv("ADAPT_BOT_WORK_ROOT", str(tmp_path / "work"))
    return root


def started_job(deps: Any, model: str = "/models/tiny-llama", issue: int = 3) -> Job:
    job = machine.begin(Job(repo="o/r", issue=issue, options=JobOptions(model=model)), "analyze")
    return deps.store.create(job)


def request(deps: Any, job: Job, stage: str = "analyze", attempt: int = 1) -> dict[str, Any]:
    req = runner_link.request_for(deps.store, job, stage, attempt, timeout_s=600)
    return req.model_dump(mode="json")


def inbox(deps: Any) -> runner_link.Inbox:
    follow: list[tuple[str, tuple[Any, ...]]] = []
    box = runner_link.Inbox(
        deps.store, ["cpu"], lambda t, a: follow.append((t, a)), consumer="test", block_ms=10
    )
    box.follow = follow  # type: ignore[attr-defined]
    return box


def test_stage_runs_and_the_control_plane_stores_its_result(
    deps: Any, models: Path, runner_settings: Any
) -> None:
    job = started_job(deps)
    assert run_stage(request(deps, job)) == "passed"
    # nothing is stored on the control plane until its inbox accepted the runner's events
    assert deps.store.get_result(job.id, "analyze") is None
    box = inbox(deps)
    assert box.poll_once() >= 2
    stored = deps.store.get_result(job.id, "analyze")
    assert stored.status == "passed" and stored.attempt == 1
    assert deps.store.get(job.id).stages["analyze"].status == "running"  # marked started
    tasks = [t for t, _ in box.follow]  # type: ignore[attr-defined]
    assert tasks[0] == "bot.tasks.stage_started" and tasks[-1] == "bot.tasks.stage_finished"
    # progress lines are stored; the first one also refreshes the status comment (at most once
    # a minute, however many lines follow)
    assert deps.store.progress(job.id, 50)[0]["stage"] == "analyze"
    assert tasks.count("bot.tasks.refresh") <= 1
    # the stage's log came along (scrubbed, compressed) and is readable on the control plane
    assert "analyze/analyze.log" in deps.store.log_names(job.id)
    assert deps.store.log_text(job.id, "analyze/analyze.log")
    # redelivered after it finished (the event was lost): the stored result is sent again, not rerun
    assert run_stage(request(deps, job)) == "reported"
    assert box.poll_once() == 1
    assert box.follow[-1] == ("bot.tasks.stage_finished", (job.id, "analyze", 1))  # type: ignore[attr-defined]


def test_worker_loss_is_capped(deps: Any, models: Path, runner_settings: Any) -> None:
    job = started_job(deps)
    req = StageRequest.model_validate(request(deps, job))
    channel = RunnerChannel(redis_client(runner_settings), req)
    for _ in range(runner_settings.max_stage_attempts):  # three deliveries that died with their worker
        channel.count_delivery()
    assert run_stage(request(deps, job)) == "worker-lost"
    inbox(deps).poll_once()
    result = deps.store.get_result(job.id, "analyze")
    assert result.status == "error" and result.reason == "worker-lost" and "rerun analyze" in result.next_step


def test_hostile_model_ids_fail_the_stage_without_touching_the_disk(
    deps: Any, models: Path, runner_settings: Any
) -> None:
    job = started_job(deps, model="../../etc/passwd")
    assert run_stage(request(deps, job)) == "failed"
    inbox(deps).poll_once()
    assert deps.store.get_result(job.id, "analyze").reason == "bad-model"


def test_a_malformed_request_is_dropped(runner_settings: Any) -> None:
    assert run_stage({"job_id": "j", "stage": "analyze"}) == "invalid"


def test_cancel_token_polls_the_flag_and_the_deadline(deps: Any, runner_settings: Any) -> None:
    job = started_job(deps)
    req = StageRequest.model_validate(request(deps, job))
    channel = RunnerChannel(redis_client(runner_settings), req)
    token = ChannelCancel(channel, time.monotonic() + 60, poll_s=0)
    assert not token.is_set()
    deps.store.set_cancel(job)
    assert token.is_set() and not token.timed_out
    late = ChannelCancel(channel, time.monotonic() - 1)
    assert late.is_set() and late.timed_out


def test_artifact_files_and_reports_are_collected(tmp_path: Path) -> None:
    ws = Workspace.for_job("j1", tmp_path)
    (ws.repo_files / "docs" / "tutorials").mkdir(parents=True)
    (ws.repo_files / "docs" / "tutorials" / "m.md").write_text("# m")
    (ws.repo_files / "tests" / "e2e").mkdir(parents=True)
    (ws.repo_files / "tests" / "e2e" / "m.yaml").write_text("model_name: m\n")
    (ws.artifacts / "report.zh.md").write_text("报告")
    (ws.artifacts / "binary.bin").write_bytes(b"\xff\xfe")
    files, reports = collect_files(ws)
    assert files == {"docs/tutorials/m.md": "# m", "tests/e2e/m.yaml": "model_name: m\n"}
    assert reports == {"report.zh.md": "报告"}
    json.dumps(files)


def test_the_stage_message_goes_to_the_pools_prefixed_queue(deps: Any) -> None:
    """The control plane publishes under the pool's key prefix (where the pool's user can read)."""
    job = started_job(deps)
    from bot.intents import send_runner_stage

    send_runner_stage(deps, job, "analyze", 1)
    msgs = queued(deps.redis, "adapt:pool:cpu:cpu")
    assert [(name, args[0]["job_id"], args[0]["stage"], args[0]["attempt"]) for name, args, _ in msgs] == [
        ("runners.host.task.run_stage", job.id, "analyze", 1)
    ]
    assert deps.redis.llen("cpu") == 0


def test_logs_are_scrubbed_bounded_and_refused_when_they_inflate(tmp_path: Path) -> None:
    import base64
    import gzip

    from runners.host import logs

    d = tmp_path / "logs"
    d.mkdir()
    (d / "serve.log").write_text(
        "connect redis://runner-cpu:s3cret-pass@10.0.0.1:6379/0\n"
        "Authorization: Bearer abc.def\n"
        "token ghs_" + "a" * 36 + " and hf_" + "b" * 34 + "\n"
    )
    (d / "huge.log").write_bytes(b"x" * 10 + b"\n" + b"y" * (logs.MAX_LOG_BYTES + 10) + b"\nlast line\n")
    packed = logs.pack(d, since=0)
    text = logs.decode(packed["serve.log"])
    assert "s3cret" not in text and "abc.def" not in text and "ghs_" not in text and "hf_b" not in text
    assert text.count("[redacted]") == 4
    tail = logs.decode(packed["huge.log"])
    assert tail.endswith("last line\n") and "earlier bytes not shipped" in tail
    bomb = base64.b64encode(gzip.compress(b"0" * (logs.MAX_LOG_BYTES * 4))).decode()
    with pytest.raises(ValueError, match="inflates"):
        logs.decode(bomb)
