"""`runners.tasks.run_stage` called directly (the body the cpu worker runs): the stage runs, its
result and files are stored durably in Redis, the control plane is told by id; stale and
redelivered messages do nothing twice; a message that keeps killing workers is capped."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from bot.jobs import machine
from bot.jobs.model import Job
from runners.contracts import JobOptions
from runners.tasks import RedisCancel, collect_files, run_stage
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


def started_job(deps: Any, model: str = "/models/tiny-llama") -> Job:
    job = machine.begin(Job(repo="o/r", issue=3, options=JobOptions(model=model)), "analyze")
    return deps.store.create(job)


def test_stage_runs_stores_its_result_and_reports_by_id(deps: Any, models: Path, tmp_path: Path) -> None:
    job = started_job(deps)
    assert run_stage(job.id, "analyze", 1) == "passed"
    stored = deps.store.get_result(job.id, "analyze")
    assert stored.status == "passed" and stored.attempt == 1
    assert deps.store.get(job.id).stages["analyze"].status == "running"  # marked started by the runner
    # progress lines are stored; the first one also refreshes the status comment (at most once
    # a minute, however many lines follow)
    assert deps.store.progress(job.id, 50)[0]["stage"] == "analyze"
    assert not deps.store.claim_refresh(job.id, 60)  # the next line within the minute sends nothing
    assert [m[:2] for m in queued(deps.redis, "control")] == [
        ("bot.tasks.stage_started", [job.id, "analyze", 1]),
        ("bot.tasks.refresh", [job.id]),
        ("bot.tasks.stage_finished", [job.id, "analyze", 1]),
    ]
    # redelivered after it finished (the report was lost): report again, do not run again
    deps.redis.delete("control")
    assert run_stage(job.id, "analyze", 1) == "reported"
    assert queued(deps.redis, "control") == [("bot.tasks.stage_finished", [job.id, "analyze", 1], {})]
    assert run_stage(job.id, "analyze", 2) == "stale"
    assert run_stage("no-such-job", "analyze", 1) == "missing"


def test_worker_loss_is_capped(deps: Any, models: Path) -> None:
    job = started_job(deps)
    for _ in range(deps.settings.max_stage_attempts):  # three deliveries that died with their worker
        deps.store.count_delivery(job.id, "analyze", 1)
    assert run_stage(job.id, "analyze", 1) == "worker-lost"
    result = deps.store.get_result(job.id, "analyze")
    assert result.status == "error" and result.reason == "worker-lost" and "rerun analyze" in result.next_step


def test_hostile_model_ids_fail_the_stage_without_touching_the_disk(deps: Any, models: Path) -> None:
    job = started_job(deps, model="../../etc/passwd")
    assert run_stage(job.id, "analyze", 1) == "failed"
    assert deps.store.get_result(job.id, "analyze").reason == "bad-model"


def test_cancel_token_polls_the_flag_and_the_deadline(deps: Any) -> None:
    token = RedisCancel(deps.store, "j", time.monotonic() + 60, poll_s=0)
    assert not token.is_set()
    deps.store.set_cancel("j")
    assert token.is_set() and not token.timed_out
    late = RedisCancel(deps.store, "k", time.monotonic() - 1)
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
