"""bot.checks.job_check_spec: the job's check run as data, from the job alone (pure)."""

from __future__ import annotations

from bot.checks import JOB_CHECK, actions_for, conclusion_for, job_check_spec
from bot.jobs import machine
from bot.jobs.model import Job, StageSummary
from runners.contracts import JobOptions
from runners.verdict import Verdict


def job(**kw: object) -> Job:
    return Job(repo="o/r", issue=3, options=JobOptions(model="Qwen/Qwen3-8B"), **kw)  # type: ignore[arg-type]


def ids(actions: tuple[object, ...]) -> list[str]:
    return [a.identifier for a in actions]  # type: ignore[attr-defined]


def test_queued_running_and_cancelling() -> None:
    spec = job_check_spec(job(), None)
    assert (spec.name, spec.status, spec.conclusion, spec.title) == (JOB_CHECK, "queued", None, "Queued")
    running = machine.begin(job(), "analyze")
    spec = job_check_spec(running, None, details_url="https://bot.example/jobs/x")
    assert spec.status == "in_progress" and ids(spec.actions) == ["cancel"]
    assert spec.title == "Running analyze (1 of 8)" and "https://bot.example/jobs/x" in spec.summary
    started = machine.mark_started(running, "analyze", 1)
    stopping = machine.request_cancel(started)
    assert job_check_spec(stopping, None).title == "Cancelling: analyze is stopping"


def test_finished_jobs_conclusions_and_buttons() -> None:
    failed = job(
        state="failed:accuracy", stages={"accuracy": StageSummary(status="failed", reason="timeout")}
    )
    assert conclusion_for(failed, None) == "failure"
    assert ids(actions_for(failed)) == ["rerun-accuracy", "rerun-real-gate", "rerun-dummy-gate"]
    spec = job_check_spec(failed, None)
    assert spec.status == "completed" and "(`timeout`)" in spec.summary
    cancelled = job(
        state="cancelled", stages={"dummy-gate": StageSummary(status="failed", reason="cancelled")}
    )
    assert conclusion_for(cancelled, None) == "cancelled"
    assert job_check_spec(cancelled, None).title == "Cancelled at dummy-gate"
    done = job(state="succeeded")
    for level, expected in (
        ("validated", "success"),
        ("serves-not-validated", "neutral"),
        ("failed", "failure"),
    ):
        assert conclusion_for(done, Verdict(level=level, profile="cpu")) == expected  # type: ignore[arg-type]
    assert conclusion_for(done, None) == "neutral"
    assert ids(actions_for(done)) == ["rerun-real-gate", "rerun-dummy-gate", "rerun-accuracy"]
    assert actions_for(done.model_copy(update={"archived": True})) == ()  # reruns are refused then


def test_the_run_left_behind_on_an_old_commit() -> None:
    spec = job_check_spec(machine.begin(job(), "features"), None, moved_to="PR #7 at abc123")
    assert (spec.status, spec.conclusion, spec.actions) == ("completed", "neutral", ())
    assert spec.title == "Continued on PR #7 at abc123" and "continues on PR #7 at abc123" in spec.summary
