"""The runner watchdog: a stage whose runner died (no heartbeat, no queued message, no result)
is sent again; a live or queued one is left alone; a second copy of a claimed stage is dropped.
Real Redis, the real task bodies; the runner side through `runners.tasks.run_stage`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import bot.tasks
from runners.contracts import StageResult, utcnow
from runners.tasks import run_stage
from tests.intake.conftest import queued
from tests.intake.test_runner_task import models, started_job

__all__ = ["models"]


def test_queued_or_heartbeating_stage_is_left_alone(deps: Any) -> None:
    job = started_job(deps)
    deps.store.mark_pending(job.id, "analyze", 1, 60)
    assert bot.tasks.watch(job.id, "analyze", 1) == "alive"
    deps.redis.delete(deps.store._run_key(job.id, "analyze", 1, "pending"))
    assert deps.store.claim_run(job.id, "analyze", 1, "runner-a", 60)
    assert bot.tasks.watch(job.id, "analyze", 1) == "alive"
    assert queued(deps.redis, "cpu") == []  # nothing sent again


def test_lost_runner_gets_the_stage_sent_again_once(deps: Any) -> None:
    job = started_job(deps)
    # the runner claimed it, then died: its heartbeat expired
    assert deps.store.claim_run(job.id, "analyze", 1, "runner-a", 1)
    deps.redis.delete(deps.store._run_key(job.id, "analyze", 1, "hb"))
    assert bot.tasks.watch(job.id, "analyze", 1) == "resent"
    assert queued(deps.redis, "cpu") == [("runners.tasks.run_stage", [job.id, "analyze", 1], {})]
    assert deps.store.progress(job.id, 1)[0]["line"].startswith("runner lost")
    # the re-sent message is now pending: the next look does not send a third copy
    assert bot.tasks.watch(job.id, "analyze", 1) == "alive"
    assert len(queued(deps.redis, "cpu")) == 1


def test_a_finished_stage_whose_report_was_lost_is_reported(deps: Any, github_standin: Any) -> None:
    from bot.jobs import machine
    from bot.jobs.model import Job
    from runners.contracts import JobOptions
    from tests.plugins.standin import INSTALLATION, REPO

    n = github_standin.add_issue(REPO, "t", "model: Qwen/Qwen3-8B")["number"]
    job = deps.store.create(
        machine.begin(
            Job(repo=REPO, issue=n, installation_id=INSTALLATION, options=JobOptions(model="Qwen/Qwen3-8B")),
            "analyze",
        )
    )
    deps.store.save_result(
        job.id, StageResult(stage="analyze", status="passed", attempt=1, finished_at=utcnow())
    )
    assert bot.tasks.watch(job.id, "analyze", 1) == "running:dummy-gate"


def test_watch_of_a_stage_the_job_left_does_nothing(deps: Any) -> None:
    job = started_job(deps)
    assert bot.tasks.watch(job.id, "dummy-gate", 1) == "done"
    assert bot.tasks.watch(job.id, "analyze", 2) == "done"


def test_second_copy_of_a_claimed_stage_is_dropped(deps: Any, models: Path) -> None:
    job = started_job(deps)
    assert deps.store.claim_run(job.id, "analyze", 1, "another-runner", 60)
    assert run_stage(job.id, "analyze", 1) == "duplicate"
    assert deps.store.get_result(job.id, "analyze") is None
    # once the other runner's claim is gone, a copy runs, and releases its claim at the end
    deps.store.release_run(job.id, "analyze", 1, "another-runner")
    assert run_stage(job.id, "analyze", 1) == "passed"
    assert not deps.store.run_alive(job.id, "analyze", 1)
