"""Issues 12 and 13 on the control plane: device-seconds per stage and job in the status comment
and /metrics, the daily device-hour quotas, the per-repository budget that stops a job before its
first device stage, and a waiting job's place in its pool's line. Real webhook payloads into the
web app, real Celery messages in a real redis-server run by the control task bodies, answered on
the GitHub stand-in; runner stages are their stored results (as in test_flow.py). The assertions
are about what GitHub ends up showing."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

import bot.tasks
from bot import quotas, repo_config
from bot.jobs import machine
from tests.intake.conftest import stage_requests
from tests.intake.test_chain import chain_env, make_checkpoint, workers
from tests.intake.test_device_hours_units import _analysis
from tests.intake.test_flow import command, finish_stage, label, ours, replies, status_comments
from tests.intake.test_preflight import hub, preflight_comments, tiny_repo
from tests.plugins.service import Worker, wait_for
from tests.plugins.standin import REPO
from tests.standin import payloads
from tests.standin.hub import HubStandin

__all__ = ["chain_env", "hub", "workers"]  # fixtures of test_preflight.py and test_chain.py


def new_issue(gh: Any, i: int = 0) -> int:
    return int(gh.add_issue(REPO, f"[New model] Qwen3-8B #{i}", "model: Qwen/Qwen3-8B")["number"])


def status_of(gh: Any, n: int) -> str:
    (c,) = status_comments(gh, n)
    return str(c["body"])


def set_config(deps: Any, gh: Any, text: str) -> None:
    gh.repos[REPO].files[".github/adapt-bot.yml"] = text
    deps.redis.delete(repo_config.cache_key(REPO))  # as if the 60 s cache had expired


def test_device_seconds_are_shown_counted_once_and_a_used_up_daily_quota_refuses(
    post: Callable[..., Any],
    github_standin: Any,
    deps: Any,
    drain: Callable[[], list[Any]],
    bot_server: Any,
) -> None:
    gh = github_standin
    set_config(deps, gh, "quotas: {user_device_hours_per_day: 1}\n")
    a = new_issue(gh, 1)
    label(post, gh, a)
    assert drain()[0].startswith("started job ")
    job = deps.store.active_for(REPO, a)
    finish_stage(deps, job.id, "analyze", data={"device_seconds": 0.0})
    assert finish_stage(deps, job.id, "dummy-gate", data={"device_seconds": 4000.0}) == "running:features"
    drain()
    body = status_of(gh, a)
    assert "| dummy-gate | ✅ passed |" in body and "| 0s · 1.11 device-h |" in body
    assert "**Device time:** 4,000 device-seconds (1.11 device-hours) so far" in body
    # a redelivered "finished" of the same attempt is counted once
    assert bot.tasks.stage_finished(job.id, "dummy-gate", 1) == "stale"
    metrics = httpx.get(bot_server.metrics_url + "/metrics").text
    assert f'adapt_bot_device_seconds_total{{repo="{REPO}"}} 4000.00' in metrics
    # the active slot is free again, the device-hours of the last 24 h are not
    command(post, gh, a, "/adapt cancel")
    assert drain() == [f"cancel {job.id}: cancelled"]
    b = new_issue(gh, 2)
    label(post, gh, b)
    expected = (
        "refused: user device-hour quota of maintainer is used up (1.11 of 1 device-hours in the last 24 h)"
    )
    assert drain() == [expected]
    (reply,) = replies(gh, b)
    assert "the daily device-hour quota of maintainer is used up: 1.11 device-hours" in reply
    assert "limit 1." in reply and "Starts are admitted again from 20" in reply
    assert "`quotas: {user_device_hours_per_day: N}`" in reply
    assert deps.store.active_for(REPO, b) is None and status_comments(gh, b) == []
    command(post, gh, a, "/adapt rerun dummy-gate")  # a rerun spends device-hours too
    assert drain() == [expected]
    # another user's quota is their own
    c = new_issue(gh, 3)
    label(post, gh, c, sender="admin-user")
    assert drain()[0].startswith("started job ")
    # ...but the repository's spending is shared: a repo limit refuses them too
    set_config(deps, gh, "quotas: {repo_device_hours_per_day: 1}\n")
    e = new_issue(gh, 4)
    label(post, gh, e, sender="admin-user")
    assert drain() == [
        f"refused: repo device-hour quota of {REPO} is used up (1.11 of 1 device-hours in the last 24 h)"
    ]
    (reply,) = replies(gh, e)
    assert "daily device-hour quota of this repository is used up" in reply
    assert "`quotas: {repo_device_hours_per_day: N}`" in reply


def test_a_repository_budget_stops_a_job_before_its_first_device_stage(
    post: Callable[..., Any],
    github_standin: Any,
    deps: Any,
    drain: Callable[[], list[Any]],
    tmp_path: Path,
) -> None:
    gh = github_standin
    set_config(deps, gh, "budget: {device_hours_per_job: 0.5}\n")
    n = new_issue(gh)
    label(post, gh, n)
    assert drain()[0].startswith("started job ")
    job = deps.store.active_for(REPO, n)
    analysis = _analysis(tmp_path).model_dump(mode="json")  # the runner's analyze result
    finish_stage(deps, job.id, "analyze", data=analysis)
    drain()
    assert deps.store.get(job.id).state == "failed:dummy-gate"
    assert (job.id, "dummy-gate", 1) not in stage_requests(deps.redis)  # no runner got it
    body = status_of(gh, n)
    assert "❌ Failed at **dummy-gate**: `over-budget`" in body
    assert "the estimate is 0.95 device-hours" in body and "budget of 0.5 device-hours per job" in body
    # (the status comment quotes diagnoses and next steps inert: backticks become quotes)
    assert "'budget: {device_hours_per_job: N}'" in body and "'/adapt rerun dummy-gate'" in body
    report = [c["body"] for c in ours(gh, n) if "<!-- adapt-bot:report job=" in c["body"]]
    assert len(report) == 1 and "over-budget" in report[0]
    # raised: the same rerun now sends the stage
    set_config(deps, gh, "budget: {device_hours_per_job: 2}\n")
    command(post, gh, n, "/adapt rerun dummy-gate")
    assert drain()[0] == f"rerun dummy-gate of {job.id}"
    assert (job.id, "dummy-gate", 2) in stage_requests(deps.redis)
    # the estimate stays on the status comment once the analysis is in, before any device time
    assert "**Estimate:** about 0.95 device-hours for the whole job (1 device per server on `cpu`, TP 1;" in (
        status_of(gh, n)
    )
    assert "running for" in status_of(gh, n) or "waiting" in status_of(gh, n).lower()


def test_a_waiting_job_shows_its_place_in_the_pool_and_moves_up(
    post: Callable[..., Any], github_standin: Any, deps: Any, drain: Callable[[], list[Any]]
) -> None:
    gh = github_standin
    issues = [new_issue(gh, i) for i in range(3)]
    for n, who in zip(issues, ["maintainer", "maintainer", "admin-user"], strict=True):
        label(post, gh, n, sender=who)
        assert drain()[0].startswith("started job ")
    jobs = [deps.store.active_for(REPO, n) for n in issues]
    assert "**Waiting:** position 3 of 3 in pool `cpu`" in status_of(gh, issues[2])
    assert "**Waiting:** position 1 of 1 in pool `cpu`" in status_of(gh, issues[0])  # when it was alone
    # the first job's runner starts (what runner_link.Inbox does with a `started` event)
    deps.store.update(jobs[0].id, lambda j: machine.mark_started(j, "analyze", 1))
    bot.tasks.stage_started(jobs[0].id, "analyze", 1)
    drain()
    assert "Waiting:" not in status_of(gh, issues[0]) and "running for" in status_of(gh, issues[0])
    assert "**Waiting:** position 1 of 2 in pool `cpu`" in status_of(gh, issues[1])
    assert "**Waiting:** position 2 of 2 in pool `cpu`" in status_of(gh, issues[2])


def test_a_hub_models_preflight_shows_the_estimate_and_stops_it_over_the_budget(
    post: Callable[..., Any],
    github_standin: Any,
    deps: Any,
    drain: Callable[[], list[Any]],
    hub: HubStandin,
    tmp_path: Path,
) -> None:
    gh = github_standin
    d = tmp_path / "ckpt"
    d.mkdir()
    tiny_repo(d)
    hub.add_repo("tiny-org/Tiny-Llama", d)
    set_config(deps, gh, "budget: {device_hours_per_job: 0.5}\n")
    n = int(gh.add_issue(REPO, "[New model] Tiny-Llama", "model: tiny-org/Tiny-Llama")["number"])
    label(post, gh, n)
    outcomes = drain()
    assert "failed: over-budget" in outcomes, outcomes
    job = deps.store.latest_for(REPO, n)
    assert job.state == "failed:analyze" and stage_requests(deps.redis) == []  # no runner time at all
    (pre,) = preflight_comments(gh, n)
    assert "**This job**: estimated **0.95 device-hours**" in pre and "profile `cpu` at TP 1" in pre
    assert "over this repository's budget of 0.5 device-hours per job: the job stops here" in pre
    assert "`budget: {device_hours_per_job: N}`" in pre
    body = status_of(gh, n)
    assert "`over-budget`" in body and "the estimate is 0.95 device-hours" in body
    # within the budget: the same pre-flight says so and the runner's analyze is sent
    set_config(deps, gh, "budget: {device_hours_per_job: 3}\n")
    m = int(gh.add_issue(REPO, "[New model] Tiny-Llama again", "model: tiny-org/Tiny-Llama")["number"])
    label(post, gh, m)
    assert "passed" in drain()
    (pre,) = preflight_comments(gh, m)
    assert "within this repository's budget of 3 device-hours per job" in pre
    assert [s for _, s, _ in stage_requests(deps.redis)] == ["analyze"]


def test_the_budget_holds_through_worker_processes_on_the_runners_own_analysis(
    post: Callable[..., Any], github_standin: Any, deps: Any, workers: list[Worker], chain_env: dict[str, str]
) -> None:
    """A control worker and a cpu runner worker (`adapt-bot worker`): the runner analyses a
    /models checkpoint (no hub, so no pre-flight), and the control worker refuses to send the
    dummy gate over the repository's budget; no vllm serve is ever started."""
    gh = github_standin
    gh.repos[REPO].files[".github/adapt-bot.yml"] = "budget: {device_hours_per_job: 0.25}\n"
    make_checkpoint(Path(chain_env["ADAPT_BOT_MODELS_ROOT"]), "tiny-llama")
    n = gh.add_issue(REPO, "[New model] tiny-llama", "model: /models/tiny-llama")["number"]
    post("issues", payloads.issues_labeled(gh, REPO, n))
    job = wait_for(
        "the job to end", lambda: (j := deps.store.latest_for(REPO, n)) and not j.active and j, 120, workers
    )
    assert job.state == "failed:dummy-gate" and job.stages["analyze"].status == "passed"
    assert job.stages["dummy-gate"].reason == "over-budget"
    body = wait_for("the stop in the status comment", lambda: _body_with(gh, n, "`over-budget`"), 30, workers)
    assert "device-hours per job" in body and "budget of 0.25" in body
    wait_for("the failure report", lambda: _body_with(gh, n, "<!-- adapt-bot:report job="), 30, workers)
    logs = Path(chain_env["ADAPT_BOT_WORK_ROOT"]) / job.id / "logs"
    assert not (logs / "processes.jsonl").exists()  # no server or reference process ran
    assert deps.store.get_result(job.id, "dummy-gate") is None
    # the control worker filed the runner's own figure for analyze (no server: 0 device-seconds)
    assert deps.store.get_result(job.id, "analyze").data["device_seconds"] == 0.0
    assert quotas.job_spent(deps.redis, job.id).by_stage == {"analyze": 0.0}
    assert len(status_comments(gh, n)) == 1


def _body_with(gh: Any, n: int, text: str) -> str | None:
    return next((c["body"] for c in ours(gh, n) if text in c["body"]), None)
