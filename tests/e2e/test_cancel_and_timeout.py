"""Stopping a running gate, through real worker processes and a real `vllm serve`:
`/adapt cancel` stops it within 10 s with the server's process group gone, and a stage that
exceeds its time limit fails with a clear reason in the status comment, its server gone too."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import pytest

from tests.e2e.conftest import MODEL_NAME, Site, Workers, pids_with, wait_for, wait_gone
from tests.plugins.standin import REPO
from tests.standin import payloads

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

STATUS = "<!-- adapt-bot:status job="


def status_body(gh: Any, n: int) -> str:
    found = [c["body"] for c in gh.comments_on(REPO, n) if STATUS in c["body"]]
    assert len(found) <= 1, "one status comment per job"
    return found[0] if found else ""


def start_job(post: Callable[..., Any], gh: Any, deps: Any) -> tuple[int, Any]:
    n = gh.add_issue(REPO, f"[New Model]: {MODEL_NAME}", f"model: /models/{MODEL_NAME}")["number"]
    assert post("issues", payloads.issues_labeled(gh, REPO, n)).status_code == 202
    return n, wait_for("the job", lambda: deps.store.latest_for(REPO, n), 30)


def test_cancel_stops_a_running_gate_within_10_s(
    post: Callable[..., Any], github_standin: Any, deps: Any, site: Site, workers: Workers
) -> None:
    gh = github_standin
    workers.start("--control")
    workers.start("--pool", "cpu")
    model_dir = str(site.models_root / MODEL_NAME)
    n, job = start_job(post, gh, deps)
    wait_for(
        "the dummy gate's server to be starting",
        lambda: deps.store.get(job.id).state == "running:dummy-gate" and pids_with(model_dir),
        180,
        workers.all,
    )
    c = gh.add_comment(REPO, n, "/adapt cancel", "maintainer")
    assert post("issue_comment", payloads.issue_comment(gh, REPO, n, c)).status_code == 202
    wait_for("the cancel flag", lambda: deps.store.cancel_set(job), 30, workers.all)
    flagged = time.monotonic()
    gone_after = wait_gone(model_dir, 10)  # the whole server process group, within 10 s
    wait_for("the job to be cancelled", lambda: deps.store.get(job.id).state == "cancelled", 30, workers.all)
    wait_for("the status comment to say so", lambda: "Cancelled" in status_body(gh, n), 30, workers.all)
    result = deps.store.get_result(job.id, "dummy-gate")
    assert result is not None and result.reason == "cancelled"
    total = time.monotonic() - flagged
    print(f"cancel flag -> server group gone: {gone_after:.1f} s; -> job cancelled: {total:.1f} s")


@pytest.fixture
def short_dummy_gate(site: Site) -> Site:
    """The dummy gate gets 15 s: far less than the tiny model's ~30-50 s to ready on these cores."""
    site.env["ADAPT_BOT_STAGE_TIMEOUTS"] = json.dumps({"dummy-gate": 15})
    return site


def test_stage_over_its_time_limit_fails_with_a_clear_reason(
    post: Callable[..., Any], github_standin: Any, deps: Any, short_dummy_gate: Site, workers: Workers
) -> None:
    gh = github_standin
    site = short_dummy_gate
    workers.start("--control")
    workers.start("--pool", "cpu")
    model_dir = str(site.models_root / MODEL_NAME)
    n, job = start_job(post, gh, deps)
    done = wait_for(
        "the job to fail", lambda: (j := deps.store.get(job.id)) and not j.active and j, 240, workers.all
    )
    assert done.state == "failed:dummy-gate"
    result = deps.store.get_result(job.id, "dummy-gate")
    assert result is not None and result.reason == "timeout"
    assert "time limit of 15 s" in (result.diagnosis or "")
    body = wait_for(
        "the failure in the status comment",
        lambda: "time limit" in status_body(gh, n) and status_body(gh, n),
        60,
    )
    assert "Failed at **dummy-gate**" in body and "/adapt rerun dummy-gate" in body
    wait_gone(model_dir, 10)
