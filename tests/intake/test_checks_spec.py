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


def passed(*stages: str) -> dict[str, StageSummary]:
    return {s: StageSummary(status="passed") for s in stages}


BEFORE_ACCURACY = ("analyze", "dummy-gate", "features", "real-gate", "capacity")


def test_finished_jobs_conclusions_and_buttons() -> None:
    failed = job(
        state="failed:accuracy",
        stages={**passed(*BEFORE_ACCURACY), "accuracy": StageSummary(status="failed", reason="timeout")},
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
    done = job(state="succeeded", stages=passed(*BEFORE_ACCURACY, "accuracy", "artifacts", "deliver"))
    for level, expected in (
        ("validated", "success"),
        ("serves-not-validated", "neutral"),
        ("failed", "failure"),
    ):
        assert conclusion_for(done, Verdict(level=level, profile="cpu")) == expected  # type: ignore[arg-type]
    assert conclusion_for(done, None) == "neutral"
    assert ids(actions_for(done)) == ["rerun-real-gate", "rerun-dummy-gate", "rerun-accuracy"]
    assert actions_for(done.model_copy(update={"archived": True})) == ()  # reruns are refused then


def test_only_the_reruns_the_job_would_accept_are_offered() -> None:
    """A button that would be refused is not a button: a rerun needs the stages before it passed
    (bot.jobs.machine.rerun_blocker), so a job cancelled at analyze offers none, and one that failed
    its real gate offers the real gate and the dummy gate, not accuracy."""
    at_analyze = job(state="cancelled", stages={"analyze": StageSummary(status="failed", reason="cancelled")})
    assert actions_for(at_analyze) == ()
    assert job_check_spec(at_analyze, None).actions == ()
    real = job(
        state="failed:real-gate",
        stages={
            **passed("analyze", "dummy-gate", "features"),
            "real-gate": StageSummary(status="failed", reason="mismatch"),
        },
    )
    assert ids(actions_for(real)) == ["rerun-real-gate", "rerun-dummy-gate"]
    for a in actions_for(real):
        assert a.stage is not None and machine.rerun_blocker(real, a.stage) is None
    assert machine.rerun_blocker(real, "accuracy") == (
        "accuracy needs real-gate to have passed first; `/adapt rerun real-gate`"
    )


def test_the_run_left_behind_on_an_old_commit() -> None:
    spec = job_check_spec(machine.begin(job(), "features"), None, moved_to="PR #7 at abc123")
    assert (spec.status, spec.conclusion, spec.actions) == ("completed", "neutral", ())
    assert spec.title == "Continued on PR #7 at abc123" and "continues on PR #7 at abc123" in spec.summary
