"""The job's check run on a real job (real control and runner worker processes, a real
`vllm serve` of the tiny model on the cpu profile, the GitHub stand-in): it is on the base branch
head while the dummy gate runs, in progress with a Cancel button and the stages so far in its
summary; pressing Cancel (a `check_run.requested_action` webhook) stops the server group and the
check run completes as cancelled."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from bot.checks import JOB_CHECK
from tests.e2e.conftest import MODEL_NAME, Site, Workers, pids_with, wait_for, wait_gone
from tests.e2e.test_cancel_and_timeout import start_job
from tests.plugins.standin import REPO
from tests.standin import payloads
from tests.standin.git_api import check_runs_of, git_world

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


def job_run(gh: Any, job_id: str) -> dict[str, Any] | None:
    runs = [r for r in check_runs_of(gh, REPO) if r["name"] == JOB_CHECK and r["external_id"] == job_id]
    assert len(runs) <= 1, "one job check run while the job has no PR"
    return runs[0] if runs else None


def test_cancel_button_on_the_job_check_run_stops_a_running_gate(
    post: Callable[..., Any], github_standin: Any, deps: Any, site: Site, workers: Workers
) -> None:
    gh = github_standin
    workers.start("--control")
    workers.start("--pool", "cpu")
    model_dir = str(site.models_root / MODEL_NAME)
    base_sha = git_world(gh)["refs"][REPO]["refs/heads/main"]
    _n, job = start_job(post, gh, deps)
    wait_for(
        "the dummy gate's server to be starting",
        lambda: deps.store.get(job.id).state == "running:dummy-gate" and pids_with(model_dir),
        180,
        workers.all,
    )
    run = wait_for(
        "the check run to show the dummy gate",
        lambda: (r := job_run(gh, job.id)) and "Running dummy-gate" in r["output"]["title"] and r,
        30,
        workers.all,
    )
    assert run["head_sha"] == base_sha and run["status"] == "in_progress"
    assert [a["identifier"] for a in run["actions"]] == ["cancel"]
    assert "| analyze | ✅ passed |" in run["output"]["summary"]
    event = payloads.check_run_action(gh, REPO, 0, "cancel", job.id)
    event["check_run"].update(id=run["id"], head_sha=base_sha, pull_requests=[], name=JOB_CHECK)
    assert post("check_run", event).status_code == 202
    wait_for("the cancel flag", lambda: deps.store.cancel_set(job), 30, workers.all)
    wait_gone(model_dir, 10)  # the whole server process group, within 10 s of the flag
    wait_for("the job to be cancelled", lambda: deps.store.get(job.id).state == "cancelled", 30, workers.all)
    done = wait_for(
        "the check run to complete as cancelled",
        lambda: (r := job_run(gh, job.id)) and r["status"] == "completed" and r,
        30,
        workers.all,
    )
    assert done["conclusion"] == "cancelled" and done["output"]["title"] == "Cancelled at dummy-gate"
    assert "rerun-dummy-gate" in [a["identifier"] for a in done["actions"]]
    result = deps.store.get_result(job.id, "dummy-gate")
    assert result is not None and result.reason == "cancelled"
