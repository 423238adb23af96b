"""The runner watchdog: a stage whose runner died (no heartbeat, no queued message, no result)
is sent again; a live or queued one is left alone; a second copy of a claimed stage is dropped.
Real Redis, the real task bodies; the runner side through `runners.host.task.run_stage` as the
pool's ACL user."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import bot.tasks
from runners.contracts import StageRequest, StageResult, utcnow
from runners.host.channel import RunnerChannel
from runners.host.task import redis_client, run_stage
from tests.intake.conftest import stage_requests
from tests.intake.test_runner_task import inbox, models, request, started_job

__all__ = ["models"]


def channel(deps: Any, job: Any, runner_settings: Any) -> RunnerChannel:
    return RunnerChannel(redis_client(runner_settings), StageRequest.model_validate(request(deps, job)))


def test_queued_or_heartbeating_stage_is_left_alone(deps: Any, runner_settings: Any) -> None:
    job = started_job(deps)
    deps.store.mark_pending(job.id, "analyze", 1, 60)
    assert bot.tasks.watch(job.id, "analyze", 1) == "alive"
    deps.store.clear_pending(job.id, "analyze", 1)
    assert channel(deps, job, runner_settings).claim("runner-a", 60)  # as the pool's user
    assert bot.tasks.watch(job.id, "analyze", 1) == "alive"
    assert stage_requests(deps.redis) == []  # nothing sent again


def test_lost_runner_gets_the_stage_sent_again_once(deps: Any, runner_settings: Any) -> None:
    job = started_job(deps)
    # the runner claimed it, then died: its heartbeat expired
    ch = channel(deps, job, runner_settings)
    assert ch.claim("runner-a", 1)
    ch.release("runner-a")
    token = request(deps, job)["token"]
    assert bot.tasks.watch(job.id, "analyze", 1) == "resent"
    assert stage_requests(deps.redis) == [(job.id, "analyze", 1)]
    assert request(deps, job)["token"] == token  # the same attempt keeps its token
    assert deps.store.progress(job.id, 1)[0]["line"].startswith("runner lost")
    # the re-sent message is now pending: the next look does not send a third copy
    assert bot.tasks.watch(job.id, "analyze", 1) == "alive"
    assert len(stage_requests(deps.redis)) == 1


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


def test_second_copy_of_a_claimed_stage_is_dropped(deps: Any, models: Path, runner_settings: Any) -> None:
    job = started_job(deps)
    ch = channel(deps, job, runner_settings)
    assert ch.claim("another-runner", 60)
    assert run_stage(request(deps, job)) == "duplicate"
    inbox(deps).poll_once()
    assert deps.store.get_result(job.id, "analyze") is None
    # once the other runner's claim is gone, a copy runs, and releases its claim at the end
    ch.release("another-runner")
    assert run_stage(request(deps, job)) == "passed"
    assert not deps.store.run_alive(job, "analyze", 1)
