"""Pure parts of issue 12/13's device-hours work: a waiting job's place in its pool's line, a job's
device-seconds from its ledger, the rolling 24 h window of a daily quota, the budget estimate and
how the status comment, the pre-flight comment and /metrics show them."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest

from bot import quotas
from bot.api.health import render_metrics
from bot.comments import fmt_device, render_status
from bot.config import Settings
from bot.jobs import machine
from bot.jobs.model import Job
from bot.preflight import REAL_STARTS, JobPlan, budget_verdict, estimate_for, render_preflight
from bot.queue_position import position, waiting, waits
from bot.repo_config import Quotas
from runners.contracts import JobOptions

T0 = dt.datetime(2026, 12, 1, 12, 0, tzinfo=dt.UTC)


def job(i: int, pool: str = "cpu", queued_s: float = 0.0, state: str = "queued") -> Job:
    j = Job(id=f"j{i}", repo="o/r", issue=i, pool=pool, options=JobOptions(model="Qwen/Qwen3-8B"))
    if state == "queued":
        return machine.begin(j, "analyze", now=T0 + dt.timedelta(seconds=queued_s))
    if state == "running":
        j = machine.begin(j, "analyze", now=T0 + dt.timedelta(seconds=queued_s))
        return machine.mark_started(j, "analyze", 1, now=T0 + dt.timedelta(seconds=queued_s + 1))
    return j


def test_queue_position_is_first_in_first_out_per_pool() -> None:
    a, b, c = job(1, queued_s=10), job(2, queued_s=5), job(3, queued_s=20)
    other_pool = job(4, pool="a2-8", queued_s=0)
    running = job(5, queued_s=1, state="running")
    jobs = [a, b, c, other_pool, running]
    assert [j.id for j in waiting(jobs, "cpu")] == ["j2", "j1", "j3"]
    pa = position(a, jobs)
    assert pa is not None and (pa.position, pa.of, pa.pool, pa.stage) == (2, 3, "cpu", "analyze")
    assert position(running, jobs) is None and not waits(running)  # a runner holds it: not waiting
    assert waits(a)
    op = position(other_pool, jobs)
    assert op is not None and (op.position, op.of) == (1, 1)
    # the job ahead starts: everyone behind moves up
    started = machine.mark_started(b, "analyze", 1, now=T0 + dt.timedelta(seconds=30))
    pc = position(c, [a, started, c])
    assert pc is not None and (pc.position, pc.of) == (2, 2)
    # its own record wins over a stale copy in the list; a job not in the list still counts itself
    assert position(c, [a, b]) == position(c, [a, b, c])
    # the control plane's own stage (deliver) and ended jobs never wait in a pool
    done = a.model_copy(update={"state": "failed:analyze"})
    assert position(done, jobs) is None


def test_job_spent_takes_every_attempt_in_the_total_and_the_latest_per_stage() -> None:
    got = quotas.spent_of({"dummy-gate:1": "40", "dummy-gate:2": "60.5", "real-gate:1": "100"})
    assert got.by_stage == {"dummy-gate": 60.5, "real-gate": 100.0}
    assert got.total == 200.5
    assert quotas.spent_of({}).total == 0.0


def test_rolling_window_and_when_a_used_up_quota_frees() -> None:
    now = 1_000_000.0
    entries = [
        ("j|a:1|3600.00", now - 90_000),  # outside the 24 h window
        ("j|b:1|3600.00", now - 80_000),
        ("j|c:1|1800.00", now - 1_000),
        ("junk", now),  # a malformed member counts as nothing
    ]
    spending = quotas.window_spent(entries, now)
    assert spending == [(now - 80_000, 3600.0), (now - 1_000, 1800.0)]
    assert quotas.over_device_limit(spending, 2.0) is None  # 1.5 h of 2 h
    hours, frees = quotas.over_device_limit(spending, 1.5) or (0, 0)
    assert hours == 1.5 and frees == now - 80_000 + quotas.DAY_S  # the 1 h entry leaving frees it
    hours, frees = quotas.over_device_limit(spending, 0.25) or (0, 0)
    assert frees == now - 1_000 + quotas.DAY_S  # only when both have left


def test_device_limits_lowered_never_raised() -> None:
    s = Settings()
    got = quotas.device_limits_for(s, Quotas(user_device_hours_per_day=10, repo_device_hours_per_day=10_000))
    assert (got.user, got.repo, got.installation) == (10, 256.0, 1024.0)
    unlimited = Settings(quota_user_device_hours=None)
    assert quotas.device_limits_for(unlimited, Quotas(user_device_hours_per_day=3)).user == 3
    assert quotas.limits_for(s).device == quotas.device_limits_for(s)
    used = quotas.DeviceExceeded("user", "alice", 65.0, 64.0, 1_764_633_600.0)
    assert (
        str(used) == "user device-hour quota of alice is used up (65.00 of 64 device-hours in the last 24 h)"
    )
    assert used.frees_at_utc == "2025-12-02 00:00 UTC"


def _analysis(tmp_path: Path) -> Any:
    from runners.analysis import analyze
    from tests.analysis.ckpt import dense_layer, write_config, write_shard

    write_config(tmp_path)
    write_shard(tmp_path / "model.safetensors", {**dense_layer(0), **dense_layer(1)})
    return analyze(tmp_path)


def test_budget_estimate_on_the_jobs_own_profile(tmp_path: Path) -> None:
    from runners import accounting
    from runners.profile import load_profile

    result = _analysis(tmp_path)
    cpu = estimate_for(result, JobPlan("cpu", "a2", None, budget_hours=0.5))
    spec = load_profile("cpu").capacity
    probes = sum(1 for f in result.features.values() if f.status == "applicable")
    expected = accounting.estimate_job(
        result.parameter_bytes, 1, spec, real_starts=REAL_STARTS, probe_starts=probes, serve_s=3360.0
    )
    assert cpu.devices == 1 and cpu.estimate_seconds == expected["device_seconds"]
    assert cpu.estimate_hours == expected["device_hours"] and cpu.over  # ~0.95 h > 0.5 h
    assert "over this repository's budget of 0.5 device-hours per job" in cpu.explain()
    a2 = estimate_for(result, JobPlan("ascend-a2", "a2", 4, budget_hours=1000))
    assert a2.devices == 4 and a2.tp == 4 and not a2.over
    a2_spec = load_profile("ascend-a2").capacity
    a2_expected = accounting.estimate_job(
        result.parameter_bytes, 4, a2_spec, real_starts=REAL_STARTS, probe_starts=probes, serve_s=3360.0
    )
    assert a2.estimate_seconds == a2_expected["device_seconds"] > 4 * 2 * 720  # real + dummy × compile
    # from the runner's JSON dump, as the analyze stage stores it; unreadable -> no verdict
    dumped = budget_verdict(result.model_dump(mode="json"), JobPlan("cpu", "a2", None, 0.5))
    assert dumped == cpu
    assert budget_verdict({"nonsense": 1}, JobPlan("cpu", "a2", None, 0.5)) is None
    assert not estimate_for(result, JobPlan("cpu", "a2", None, None)).over  # no budget, no stop
    body = render_preflight(result, cpu)
    assert f"estimated **{cpu.estimate_hours} device-hours**" in body
    assert "over this repository's budget of 0.5 device-hours per job: the job stops here" in body
    assert "`budget: {device_hours_per_job: N}`" in body and "/adapt rerun analyze" in body
    within = render_preflight(result, estimate_for(result, JobPlan("cpu", "a2", None, 5)))
    assert "within this repository's budget of 5 device-hours per job" in within
    assert "This job" not in render_preflight(result)


def test_status_comment_shows_device_time_and_the_queue() -> None:
    from bot.queue_position import QueuePosition

    j = machine.begin(job(1, state="new"), "analyze", now=T0)
    j = machine.finish(j, "analyze", 1, machine.StageSummary(status="passed", started_at=T0, finished_at=T0))
    spent = quotas.spent_of({"dummy-gate:1": "7200", "analyze:1": "0"})
    body = render_status(j, now=T0, spent=spent, queue=QueuePosition(2, 3, "cpu", "dummy-gate"))
    assert "**Waiting:** position 2 of 3 in pool `cpu`" in body
    assert "**Device time:** 7,200 device-seconds (2.0 device-hours) so far" in body
    plain = render_status(j, now=T0)
    assert "Waiting:" not in plain and "Device time" not in plain
    assert fmt_device(41.4) == "41 device-s" and fmt_device(5400) == "1.50 device-h"


def test_metrics_show_device_seconds_by_repository() -> None:
    text = render_metrics({}, {}, device_seconds={"o/r": 12.5, 'we"ird': 1.0})
    assert "# TYPE adapt_bot_device_seconds_total counter" in text
    assert 'adapt_bot_device_seconds_total{repo="o/r"} 12.50' in text
    assert 'adapt_bot_device_seconds_total{repo="we\\"ird"} 1.00' in text


def test_device_hour_limits_from_the_environment(monkeypatch: Any) -> None:
    monkeypatch.setenv("ADAPT_BOT_QUOTA_USER_DEVICE_HOURS", "12.5")
    monkeypatch.setenv("ADAPT_BOT_QUOTA_REPO_DEVICE_HOURS", "")  # empty: unlimited
    monkeypatch.setenv("ADAPT_BOT_QUOTA_INSTALLATION_DEVICE_HOURS", "unlimited")
    s = Settings(_env_file=None)  # type: ignore[call-arg]
    assert (s.quota_user_device_hours, s.quota_repo_device_hours, s.quota_installation_device_hours) == (
        12.5,
        None,
        None,
    )
    got = quotas.device_limits_for(s, Quotas(repo_device_hours_per_day=5))
    assert (got.user, got.repo, got.installation) == (12.5, 5, None)
    monkeypatch.setenv("ADAPT_BOT_QUOTA_USER_DEVICE_HOURS", "0")
    with pytest.raises(ValueError, match="quota_user_device_hours"):
        Settings(_env_file=None)  # type: ignore[call-arg]
