"""Every Cancel press on a check run gets a visible answer (issue 15), through real
`check_run.requested_action` payloads, the GitHub stand-in, real Redis and the control queue:

- the job's run on the base branch head (GitHub lists no PR on it): the job is cancelled and the
  answer is a reply on the job's issue;
- the same for a job that has already ended: the reply says there is nothing to cancel;
- a run whose job the bot no longer knows: the run itself says so, loses its buttons, and is
  completed as neutral (nothing will update it again);
- such a press on a run a PR lists is answered on the PR, as before.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.artifacts.test_delivery_github import checkout_files
from tests.intake.test_flow import replies
from tests.intake.test_job_check import base_head_press, buttons, job_runs, labelled_job, orphan_run
from tests.plugins.standin import REPO
from tests.standin import payloads
from tests.standin.git_api import check_runs_of, seed_commit

GONE = "20250101-0123456789"  # a job id of the right shape that the store does not hold


def test_cancel_on_the_base_head_run_answers_on_the_issue_then_says_it_ended(
    post: Callable[..., Any],
    github_standin: Any,
    deps: Any,
    drain: Callable[[], list[Any]],
    mkdocs_repo: Path,
) -> None:
    gh = github_standin
    n, job, _base = labelled_job(post, gh, deps, drain, mkdocs_repo)
    (run,) = job_runs(gh, job.id)
    assert buttons(run) == ["cancel"]
    before = len(replies(gh, n))

    r = post("check_run", base_head_press(gh, run, job.id))
    assert r.json()["intents"] == ["cancel"]
    assert drain() == [f"cancel {job.id}: cancelled"]
    assert deps.store.get(job.id).state == "cancelled"
    answer = replies(gh, n)[before:]
    assert len(answer) == 1 and f"Job `{job.id}` is cancelled." in answer[0] and "@maintainer" in answer[0]
    (run,) = job_runs(gh, job.id)
    assert run["status"] == "completed" and run["conclusion"] == "cancelled"

    # pressed again once the job has ended (a new press: a new run id in its dedupe key)
    again = base_head_press(gh, {**run, "id": gh.next_id()}, job.id)
    post("check_run", again)
    (outcome,) = drain()
    assert outcome.startswith("refused: job") and "already ended (cancelled)" in outcome
    assert "already ended (cancelled); nothing to cancel" in replies(gh, n)[-1]
    assert len(replies(gh, n)) == before + 2


def test_cancel_on_a_run_whose_job_is_gone_answers_on_the_run(
    post: Callable[..., Any],
    github_standin: Any,
    deps: Any,
    drain: Callable[[], list[Any]],
    mkdocs_repo: Path,
    app_settings: Any,
) -> None:
    gh = github_standin
    sha = seed_commit(gh, REPO, checkout_files(mkdocs_repo))
    run = orphan_run(gh, app_settings, sha, GONE)
    calls = len(gh.requests_to("PATCH", f"/repos/{REPO}/check-runs/{run['id']}"))

    r = post("check_run", base_head_press(gh, run, GONE))
    assert r.json()["intents"] == ["cancel"]
    assert drain() == ["no job (answered on the check run)"]
    (run,) = [r for r in check_runs_of(gh, REPO) if r["external_id"] == GONE]
    assert len(gh.requests_to("PATCH", f"/repos/{REPO}/check-runs/{run['id']}")) == calls + 1
    assert run["status"] == "completed" and run["conclusion"] == "neutral" and buttons(run) == []
    assert run["output"]["title"] == "Nothing to cancel: no adapt-bot job behind this check"
    summary = run["output"]["summary"]
    assert "@maintainer pressed **Cancel**" in summary and f"`{GONE}`" in summary
    assert "nothing was cancelled" in summary and "`/adapt cancel`" in summary

    # the same press on a run a PR lists: the answer is a reply on that PR, as for a comment
    pr = gh.add_issue(REPO, "someone's PR", "", pull_request=True)["number"]
    post("check_run", payloads.check_run_action(gh, REPO, pr, "cancel", GONE))
    assert drain() == ["no job"]
    assert "There is no adaptation job for this pull request yet" in replies(gh, pr)[-1]
