"""A button press by someone without the permission its command needs, on the job's check run on
the base branch head (GitHub lists no PR on it, so the intent has no issue), is answered (issue 15),
through real `check_run.requested_action` payloads, the GitHub stand-in, real Redis and the control
queue:

- a read-only user presses Cancel: the job keeps running, the run keeps its output and its Cancel
  button (no PATCH), and exactly one reply on the job's issue says why; a permitted user's press
  afterwards still cancels;
- a read-only user presses Cancel on a run whose job is gone: the run itself says there is nothing
  to cancel (as it does for anyone: bot.checks.answer_press);
- a permitted user's Rerun press on that run is answered on the job's issue too.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.artifacts import builders as b
from tests.artifacts.test_delivery_github import checkout_files
from tests.intake.test_flow import replies
from tests.intake.test_job_check import base_head_press, buttons, finish, job_runs, labelled_job, orphan_run
from tests.plugins.standin import REPO
from tests.standin.git_api import check_runs_of, seed_commit

GONE = "20250101-0123456789"  # a job id of the right shape that the store does not hold


def test_a_read_only_press_on_the_base_head_run_is_refused_on_the_issue_and_changes_nothing(
    post: Callable[..., Any],
    github_standin: Any,
    deps: Any,
    drain: Callable[[], list[Any]],
    mkdocs_repo: Path,
) -> None:
    gh = github_standin
    n, job, _base = labelled_job(post, gh, deps, drain, mkdocs_repo)
    state = job.state
    (run,) = job_runs(gh, job.id)
    assert buttons(run) == ["cancel"] and run["status"] != "completed"
    before = len(replies(gh, n))
    patches = len(gh.requests_to("PATCH", f"/repos/{REPO}/check-runs/{run['id']}"))

    r = post("check_run", base_head_press(gh, run, job.id, sender="reader"))
    assert r.json()["intents"] == ["cancel"]
    (outcome,) = drain()
    assert outcome == f"refused: reader has read, needs write (answered on #{n})"
    job_now = deps.store.get(job.id)
    assert job_now.state == state and not deps.store.cancel_set(job_now)
    (answer,) = replies(gh, n)[before:]
    assert answer.startswith("@reader\n")
    assert f"You pressed `Cancel` on the `adapt-bot / job` check run of job `{job.id}`" in answer
    assert "needs **write** permission on this repository and you have **read**" in answer
    assert "`/adapt cancel`" in answer
    # the run is the job's, untouched: same output, still open, Cancel still there for maintainers
    (same,) = job_runs(gh, job.id)
    assert len(gh.requests_to("PATCH", f"/repos/{REPO}/check-runs/{run['id']}")) == patches
    assert same["status"] == run["status"] and same["output"] == run["output"] and buttons(same) == ["cancel"]

    # a redelivery of the same press posts nothing new
    post("check_run", base_head_press(gh, run, job.id, sender="reader"))
    drain()
    assert len(replies(gh, n)) == before + 1

    # a permitted user's press on the same run (a new press: a new run id in its dedupe key) works
    post("check_run", base_head_press(gh, {**run, "id": gh.next_id()}, job.id, sender="maintainer"))
    assert drain() == [f"cancel {job.id}: cancelled"]
    assert deps.store.get(job.id).state == "cancelled"
    assert f"Job `{job.id}` is cancelled." in replies(gh, n)[-1]
    assert len(replies(gh, n)) == before + 2


def test_a_read_only_press_on_a_run_whose_job_is_gone_is_answered_on_the_run(
    post: Callable[..., Any],
    github_standin: Any,
    drain: Callable[[], list[Any]],
    mkdocs_repo: Path,
    app_settings: Any,
) -> None:
    gh = github_standin
    sha = seed_commit(gh, REPO, checkout_files(mkdocs_repo))
    run = orphan_run(gh, app_settings, sha, GONE)

    post("check_run", base_head_press(gh, run, GONE, sender="reader"))
    assert drain() == ["refused: reader has read, needs write (no job: answered on the check run)"]
    (run,) = [r for r in check_runs_of(gh, REPO) if r["external_id"] == GONE]
    assert run["status"] == "completed" and run["conclusion"] == "neutral" and buttons(run) == []
    assert "@reader pressed **Cancel**" in run["output"]["summary"]


def test_a_permitted_rerun_press_on_the_base_head_run_is_answered_on_the_issue(
    post: Callable[..., Any],
    github_standin: Any,
    deps: Any,
    drain: Callable[[], list[Any]],
    mkdocs_repo: Path,
) -> None:
    gh = github_standin
    n, job, _base = labelled_job(post, gh, deps, drain, mkdocs_repo)
    finish(deps, job.id, b.analysis())  # analyze passed: the dummy gate is next
    drain()
    (run,) = job_runs(gh, job.id)
    post("check_run", base_head_press(gh, run, job.id, sender="maintainer"))
    assert drain() == [f"cancel {job.id}: cancelled"]
    (run,) = job_runs(gh, job.id)
    assert buttons(run) == ["rerun-dummy-gate"]  # the only rerun the job would accept
    stage = "dummy-gate"
    before = len(replies(gh, n))

    post("check_run", base_head_press(gh, run, job.id, sender="maintainer", button="rerun-dummy-gate"))
    assert drain() == [f"rerun {stage} of {job.id}"]
    assert deps.store.get(job.id).state != "cancelled"
    (answer,) = replies(gh, n)[before:]
    assert answer.startswith("@maintainer\n") and f"for job `{job.id}`" in answer
