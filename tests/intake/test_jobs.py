"""Job state machine (pure) and the Redis store (compare-and-set, one active job per issue)."""

from __future__ import annotations

import threading
from typing import Any

import pytest
import redis

from bot.jobs import machine
from bot.jobs.machine import NoChange, TransitionError
from bot.jobs.model import Job, StageSummary
from bot.jobs.store import ActiveJobExists, JobStore
from runners.contracts import STAGES, JobOptions, StageResult

PASS = StageSummary(status="passed")


def new_job(**kw: Any) -> Job:
    return Job(repo="o/r", issue=1, options=JobOptions(model="Qwen/Qwen3-8B"), **kw)


def test_happy_path_walks_every_stage_in_order() -> None:
    job = machine.begin(new_job(), STAGES[0])
    seen = []
    while job.phase == "running" and job.stage != "deliver":
        seen.append(job.stage)
        job = machine.finish(job, job.stage, job.attempts[job.stage], PASS)
    assert seen == list(STAGES[:-1])
    assert job.state == "running:deliver"
    job = machine.succeed(job, pr_number=12)
    assert job.state == "succeeded" and job.pr_number == 12 and not job.active


def test_finish_is_idempotent_and_rejects_stale_attempts() -> None:
    job = machine.begin(new_job(), "analyze")
    done = machine.finish(job, "analyze", 1, PASS)
    with pytest.raises(NoChange):
        machine.finish(done, "analyze", 1, PASS)  # redelivered
    with pytest.raises(NoChange):
        machine.finish(job, "analyze", 2, PASS)  # wrong attempt


def test_failure_keeps_diagnosis_and_next_step() -> None:
    job = machine.begin(new_job(), "analyze")
    bad = StageSummary(status="failed", diagnosis="shard missing", next_step="download it")
    job = machine.finish(job, "analyze", 1, bad)
    assert job.state == "failed:analyze" and job.message == "shard missing" and job.next_step == "download it"
    job = machine.finish(machine.begin(new_job(), "analyze"), "analyze", 1, StageSummary(status="error"))
    assert job.next_step == "/adapt rerun analyze"


@pytest.mark.parametrize(
    ("setup", "expect_state", "flag"),
    [
        (lambda j: j, "cancelled", False),  # queued
        (lambda j: machine.begin(j, "analyze"), "cancelled", True),  # begun, not yet picked up
        (lambda j: machine.mark_started(machine.begin(j, "analyze"), "analyze", 1), "running:analyze", True),
        (lambda j: machine.wait(machine.begin(j, "analyze"), "why"), "cancelled", False),
    ],
)
def test_cancel(setup: Any, expect_state: str, flag: bool) -> None:
    job = machine.request_cancel(setup(new_job()))
    assert job.state == expect_state
    assert job.cancel_requested == flag


def test_cancel_while_running_ends_when_the_stage_reports() -> None:
    job = machine.mark_started(machine.begin(new_job(), "real-gate"), "real-gate", 1)
    job = machine.request_cancel(job)
    with pytest.raises(NoChange):
        machine.request_cancel(job)
    job = machine.finish(job, "real-gate", 1, StageSummary(status="failed", reason="cancelled"))
    assert job.state == "cancelled"
    with pytest.raises(TransitionError):
        machine.request_cancel(job)


def test_rerun_reuses_earlier_stages_and_refuses_while_running() -> None:
    job = machine.begin(new_job(), "analyze")
    for stage in STAGES[:3]:  # analyze, dummy-gate, features
        job = machine.finish(job, stage, 1, PASS)
    with pytest.raises(TransitionError, match="still running"):
        machine.rerun(job, "dummy-gate")
    job = machine.finish(job, "real-gate", 1, StageSummary(status="failed"))
    assert job.state == "failed:real-gate"
    with pytest.raises(TransitionError, match="needs real-gate"):
        machine.rerun(job, "capacity")
    again = machine.rerun(job, "features")
    assert again.state == "running:features" and again.attempts["features"] == 2
    assert set(again.stages) == {"analyze", "dummy-gate", "features"}
    assert again.stages["features"].status == "queued"
    with pytest.raises(TransitionError):
        machine.rerun(job, "nonsense")


def test_wait_then_rerun_deliver() -> None:
    job = machine.begin(new_job(), "analyze")
    for stage in STAGES[:-1]:
        job = machine.finish(job, stage, 1, PASS)
    job = machine.wait(job, "delivery not connected")
    assert job.state == "waiting" and job.active
    job = machine.rerun(job, "deliver")
    assert job.state == "running:deliver"


@pytest.fixture
def store(redis_url: str) -> JobStore:
    return JobStore(redis.Redis.from_url(redis_url, decode_responses=True))


def test_one_active_job_per_issue_under_concurrency(store: JobStore) -> None:
    created: list[str] = []
    refused: list[str] = []
    barrier = threading.Barrier(8)

    def start() -> None:
        job = machine.begin(new_job(), "analyze")
        barrier.wait()
        try:
            store.create(job)
            created.append(job.id)
        except ActiveJobExists as exc:
            refused.append(exc.job_id)

    threads = [threading.Thread(target=start) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(created) == 1 and len(refused) == 7
    assert set(refused) == set(created)
    assert store.active_for("o/r", 1).id == created[0]  # type: ignore[union-attr]
    assert store.state_counts() == {"running": 1}


def test_update_is_compare_and_set(store: JobStore) -> None:
    job = store.create(machine.begin(new_job(), "analyze"))
    results = []

    def finish() -> None:
        try:
            results.append(store.update(job.id, lambda j: machine.finish(j, "analyze", 1, PASS)).state)
        except NoChange:
            results.append("nochange")

    threads = [threading.Thread(target=finish) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == ["nochange"] * 5 + ["running:dummy-gate"]
    stored = store.get(job.id)
    assert stored is not None and stored.attempts == {"analyze": 1, "dummy-gate": 1}


def test_terminal_job_frees_the_issue_and_stays_findable(store: JobStore) -> None:
    job = store.create(machine.begin(new_job(), "analyze"))
    store.update(job.id, machine.request_cancel)
    assert store.active_for("o/r", 1) is None
    assert store.latest_for("o/r", 1).id == job.id  # type: ignore[union-attr]
    second = store.create(machine.begin(new_job(), "analyze"))
    with pytest.raises(ActiveJobExists):
        store.update(job.id, lambda j: machine.rerun(j, "analyze"))
    assert store.active_for("o/r", 1).id == second.id  # type: ignore[union-attr]
    assert store.state_counts() == {"running": 1, "cancelled": 1}


def test_results_files_progress_and_flags(store: JobStore) -> None:
    store.save_result("j1", StageResult(stage="analyze", status="passed"))
    assert store.get_result("j1", "analyze").status == "passed"  # type: ignore[union-attr]
    store.save_files("j1", {"docs/a.md": "x"})
    store.save_reports("j1", {"report.zh.md": "报告"})
    store.save_files("j1", {"docs/b.md": "y"})  # replaced whole
    assert store.files("j1") == {"docs/b.md": "y"} and store.reports("j1") == {"report.zh.md": "报告"}
    for i in range(60):
        store.add_progress("j1", "analyze", f"line {i}")
    assert store.progress("j1", 2)[0]["line"] == "line 59"
    assert len(store.progress("j1", 100)) == 50
    job = Job(id="j1", repo="o/r", issue=1, options=JobOptions(model="/models/m"))
    assert not store.cancel_set(job)
    store.set_cancel(job)
    assert store.cancel_set(job)
    assert store.r.exists("adapt:cancel:cpu:j1")  # in the key space the job's runner pool may read
    assert store.claim_enqueue("j1", "analyze", 1) and not store.claim_enqueue("j1", "analyze", 1)
