"""A button press by someone without the permission its command needs, on the job's check run on
the base branch head (GitHub lists no PR on it, so the intent has no issue), is answered (issue 15),
through real `check_run.requested_action` payloads, the GitHub stand-in, real Redis and the control
queue:

- a read-only user presses Cancel: the job keeps running, the run keeps its output and its Cancel
  button (no PATCH), and exactly one reply on the job's issue says why; a permitted user's press
  afterwards still cancels;
- a read-only user presses Cancel on a run whose job is gone: the run itself says there is nothing
  to cancel (as it does for anyone: bot.checks.answer_press).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.artifacts.test_delivery_github import checkout_files
from tests.intake.test_flow import label, new_issue, replies
from tests.intake.test_job_check import buttons, job_runs
from tests.plugins.standin import INSTALLATION, REPO
from tests.standin import payloads
from tests.standin.git_api import check_runs_of, seed_commit

GONE = "20250101-0123456789"  # a job id of the right shape that the store does not hold


def press(gh: Any, run: dict[str, Any], job_id: str | None, sender: str) -> dict[str, Any]:
    """The real payload of a Cancel press on a run no PR lists (GitHub sends `pull_requests: []`)."""
    p = payloads.check_run_action(gh, REPO, 0, "cancel", job_id, sender=sender)
    p["check_run"].update(id=run["id"], head_sha=run["head_sha"], status=run["status"], pull_requests=[])
    return p


def test_a_read_only_press_on_the_base_head_run_is_refused_on_the_issue_and_changes_nothing(
    post: Callable[..., Any],
    github_standin: Any,
    deps: Any,
    drain: Callable[[], list[Any]],
    mkdocs_repo: Path,
) -> None:
    gh = github_standin
    seed_commit(gh, REPO, checkout_files(mkdocs_repo))
    n = new_issue(gh)
    label(post, gh, n)
    drain()
    job = deps.store.active_for(REPO, n)
    state = job.state
    (run,) = job_runs(gh, job.id)
    assert buttons(run) == ["cancel"] and run["status"] != "completed"
    before = len(replies(gh, n))
    patches = len(gh.requests_to("PATCH", f"/repos/{REPO}/check-runs/{run['id']}"))

    r = post("check_run", press(gh, run, job.id, sender="reader"))
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
    post("check_run", press(gh, run, job.id, sender="reader"))
    drain()
    assert len(replies(gh, n)) == before + 1

    # a permitted user's press on the same run (a new press: a new run id in its dedupe key) works
    post("check_run", press(gh, {**run, "id": gh.next_id()}, job.id, sender="maintainer"))
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
    from bot.github import GitHubClient

    gh = github_standin
    sha = seed_commit(gh, REPO, checkout_files(mkdocs_repo))
    inst = GitHubClient(app_settings).installation(INSTALLATION)
    owner, name = REPO.split("/")
    data = {
        "name": "adapt-bot / job",
        "head_sha": sha,
        "status": "in_progress",
        "external_id": GONE,
        "output": {"title": "Running analyze (1 of 8)", "summary": "…"},
        "actions": [{"label": "Cancel", "description": "Cancel this job", "identifier": "cancel"}],
    }
    inst.gh.rest.checks.create(owner, name, data=data)
    (run,) = [r for r in check_runs_of(gh, REPO) if r["external_id"] == GONE]

    post("check_run", press(gh, run, GONE, sender="reader"))
    assert drain() == ["refused: reader has read, needs write (no job: answered on the check run)"]
    (run,) = [r for r in check_runs_of(gh, REPO) if r["external_id"] == GONE]
    assert run["status"] == "completed" and run["conclusion"] == "neutral" and buttons(run) == []
    assert "@reader pressed **Cancel**" in run["output"]["summary"]
