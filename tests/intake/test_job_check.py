"""The job's own check run and the PR's draft life, against the GitHub stand-in (real webhook
payload shapes, real Redis, the control tasks run off the real `control` queue by `drain`).

A job's check run ("adapt-bot / job") exists from the first stage on, on the base branch head,
in progress with a Cancel button; every stage updates its summary; the real gate's pass opens
the PR as a draft (tutorial + nav commit) and the check run moves to the PR head; delivery
replaces the commit, marks the PR ready for review only when the job is validated (the stand-in
records the draft transitions), and completes the check run with the verdict's conclusion and
rerun buttons. A Cancel click (a `check_run.requested_action` payload) completes it as cancelled.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import bot.tasks
from bot.checks import JOB_CHECK
from bot.jobs import machine
from runners.contracts import StageResult, utcnow
from runners.links import job_url
from tests.artifacts import builders as b
from tests.artifacts.test_delivery_github import checkout_files
from tests.intake.test_flow import label, new_issue
from tests.plugins.standin import INSTALLATION, REPO
from tests.standin import payloads
from tests.standin.git_api import check_runs_of, pulls_of, seed_commit

MODEL = "acme/Foo-7B"  # not in the sample checkout: its tutorial is new


def job_runs(gh: Any, job_id: str) -> list[dict[str, Any]]:
    return sorted(
        (r for r in check_runs_of(gh, REPO) if r["name"] == JOB_CHECK and r["external_id"] == job_id),
        key=lambda r: r["id"],
    )


def buttons(run: dict[str, Any]) -> list[str]:
    return [a["identifier"] for a in run.get("actions") or []]


def labelled_job(
    post: Callable[..., Any], gh: Any, deps: Any, drain: Callable[[], list[Any]], repo: Path, body: str = ""
) -> tuple[int, Any, str]:
    """The target repo seeded from the `repo` checkout, a new issue labelled and its first intent
    applied: (issue number, the job it started, the base branch head)."""
    base_sha = seed_commit(gh, REPO, checkout_files(repo))
    n = new_issue(gh, body) if body else new_issue(gh)
    label(post, gh, n)
    drain()
    return n, deps.store.active_for(REPO, n), base_sha


def base_head_press(
    gh: Any, run: dict[str, Any], job_id: str | None, sender: str = "maintainer", button: str = "cancel"
) -> dict[str, Any]:
    """The real payload of a press on a run no PR lists (GitHub sends `pull_requests: []`)."""
    p = payloads.check_run_action(gh, REPO, 0, button, job_id, sender=sender)
    p["check_run"].update(id=run["id"], head_sha=run["head_sha"], status=run["status"], pull_requests=[])
    return p


def orphan_run(gh: Any, app_settings: Any, head_sha: str, job_id: str) -> dict[str, Any]:
    """A job check run, in progress with a Cancel button, whose job id the store does not hold
    (created through the App's own client, as the bot made it before the job was gone)."""
    from bot.github import GitHubClient

    inst = GitHubClient(app_settings).installation(INSTALLATION)
    owner, name = REPO.split("/")
    data = {
        "name": JOB_CHECK,
        "head_sha": head_sha,
        "status": "in_progress",
        "external_id": job_id,
        "output": {"title": "Running analyze (1 of 8)", "summary": "…"},
        "actions": [{"label": "Cancel", "description": "Cancel this job", "identifier": "cancel"}],
    }
    inst.gh.rest.checks.create(owner, name, data=data)
    (run,) = [r for r in check_runs_of(gh, REPO) if r["external_id"] == job_id]
    return run


def finish(deps: Any, job_id: str, result: StageResult) -> Any:
    """What a runner leaves behind (the stored result of the current attempt), then the task."""
    attempt = deps.store.get(job_id).attempts[result.stage]
    stored = result.model_copy(update={"attempt": attempt, "finished_at": utcnow()})
    deps.store.save_result(job_id, stored)
    return bot.tasks.stage_finished(job_id, result.stage, attempt)


def artifacts_files(
    deps: Any, job_id: str, results: dict[str, StageResult], repo: Path, tmp: Path
) -> StageResult:
    """Run the real artifacts stage against the sample checkout; store its files as a runner would."""
    from runners.context import StageContext
    from runners.stages.artifacts import run as artifacts_stage
    from runners.workspace import Workspace

    job = deps.store.get(job_id)
    ctx = StageContext(
        job_id=job_id,
        options=job.options.model_copy(update={"issue": job.issue}),
        model_path=tmp,
        workspace=Workspace.for_job(job_id, tmp / "work"),
        profile=None,
        previous=results,
        target_repo=repo,
    )
    result = artifacts_stage(ctx)
    assert result.status == "passed", result.diagnosis
    root = ctx.workspace.repo_files
    deps.store.save_files(
        job_id, {str(p.relative_to(root)): p.read_text() for p in root.rglob("*") if p.is_file()}
    )
    return result


@pytest.mark.parametrize("validated", [True, False], ids=["validated", "serves-not-validated"])
def test_check_run_from_the_first_stage_and_the_draft_pr_until_validated(
    validated: bool,
    post: Callable[..., Any],
    github_standin: Any,
    deps: Any,
    drain: Callable[[], list[Any]],
    mkdocs_repo: Path,
    tmp_path: Path,
) -> None:
    gh = github_standin
    n, job, base_sha = labelled_job(
        post, gh, deps, drain, mkdocs_repo, f"Please support it.\n\nmodel: {MODEL}"
    )

    # from the first stage on: on the base branch head, in progress, Cancel
    (run,) = job_runs(gh, job.id)
    assert run["head_sha"] == base_sha and run["status"] == "in_progress" and run["conclusion"] is None
    assert buttons(run) == ["cancel"] and run["output"]["title"] == "Running analyze (1 of 8)"
    assert "| analyze | 🕒 queued |" in run["output"]["summary"]
    assert run.get("details_url") == job_url(deps.settings.public_url, job.id)  # None without a public URL

    results = b.full_results(MODEL)
    if not validated:  # no reference parity: serves, not validated
        results["real-gate"].data["parity"] = {"status": "skipped", "reason": "needs 40 GB, budget 8 GB"}
    for stage in ("analyze", "dummy-gate", "features"):  # the probes run before the real gate
        finish(deps, job.id, results[stage])
    drain()
    (run,) = job_runs(gh, job.id)  # updated in place, per stage
    assert run["output"]["title"] == "Running real-gate (4 of 8)"
    summary = run["output"]["summary"]
    assert "| analyze | ✅ passed |" in summary and "| dummy-gate | ✅ passed |" in summary
    assert "| features | ✅ passed |" in summary
    assert "| real-gate | 🕒 queued |" in summary and pulls_of(gh, REPO) == []

    # the real gate passed: the PR opens as a draft, the check run moves to its head
    finish(deps, job.id, results["real-gate"])
    outcomes = drain()
    assert any(str(o).startswith("draft PR #") for o in outcomes), outcomes
    (pr,) = pulls_of(gh, REPO)
    job = deps.store.get(job.id)
    assert job.pr_number == pr["number"] and job.state == "running:capacity"
    assert pr["draft"] is True and pr["_draft_log"] == ["opened:draft"]
    assert "Draft opened when the real-weight gate passed" in pr["body"] and f"Fixes #{n}" in pr["body"]
    draft_sha = pr["head_sha"]
    old, new = job_runs(gh, job.id)
    assert old["head_sha"] == base_sha and old["status"] == "completed" and old["conclusion"] == "neutral"
    assert old["output"]["title"].startswith(f"Continued on PR #{pr['number']}") and buttons(old) == []
    assert new["head_sha"] == draft_sha and new["status"] == "in_progress" and buttons(new) == ["cancel"]

    for stage in ("capacity", "accuracy"):
        finish(deps, job.id, results[stage])
    drain()
    results["artifacts"] = artifacts_files(deps, job.id, results, mkdocs_repo, tmp_path)
    finish(deps, job.id, results["artifacts"])
    assert "succeeded" in drain()
    (pr,) = pulls_of(gh, REPO)  # the same PR, its branch moved to the final single commit
    assert pr["head_sha"] != draft_sha and "Draft opened" not in pr["body"]
    if validated:
        assert pr["draft"] is False and pr["_draft_log"] == ["opened:draft", "ready_for_review"]
    else:
        assert pr["draft"] is True and pr["_draft_log"] == ["opened:draft"]
        assert "serves, not validated" in pr["body"] and "stays a draft" in pr["body"]
    runs = job_runs(gh, job.id)
    assert [r["head_sha"] for r in runs] == [base_sha, draft_sha, pr["head_sha"]]
    assert all(r["status"] == "completed" for r in runs)
    final = runs[-1]
    assert final["conclusion"] == ("success" if validated else "neutral")
    assert buttons(final) == ["rerun-real-gate", "rerun-dummy-gate", "rerun-accuracy"]
    assert "| deliver | ✅ passed |" in final["output"]["summary"]
    assert ("validated" if validated else "serves, not validated") in final["output"]["title"]


def test_the_cancel_button_on_the_job_check_run_cancels_it(
    post: Callable[..., Any],
    github_standin: Any,
    deps: Any,
    drain: Callable[[], list[Any]],
    mkdocs_repo: Path,
) -> None:
    gh = github_standin
    _n, job, _base = labelled_job(post, gh, deps, drain, mkdocs_repo)
    # a runner picked analyze up (what bot.runner_link does with its `started` event)
    deps.store.update(job.id, lambda j: machine.mark_started(j, "analyze", 1))
    bot.tasks.stage_started(job.id, "analyze", 1)
    (run,) = job_runs(gh, job.id)
    assert run["status"] == "in_progress" and "| analyze | ⏳ running |" in run["output"]["summary"]
    event = payloads.check_run_action(gh, REPO, 0, "cancel", job.id)
    # the run sits on the base branch head, so GitHub lists no pull request with it
    event["check_run"].update(id=run["id"], head_sha=run["head_sha"], pull_requests=[], name=JOB_CHECK)
    r = post("check_run", event)
    assert r.status_code == 202 and r.json()["intents"] == ["cancel"], r.text
    drain()
    assert deps.store.cancel_set(job)  # the runner polls this flag and stops its server group
    (run,) = job_runs(gh, job.id)
    assert run["status"] == "in_progress" and run["output"]["title"] == "Cancelling: analyze is stopping"
    cancelled = b.analysis().model_copy(update={"status": "failed", "reason": "cancelled"})
    finish(deps, job.id, cancelled)
    drain()
    assert deps.store.get(job.id).state == "cancelled"
    (run,) = job_runs(gh, job.id)
    assert run["status"] == "completed" and run["conclusion"] == "cancelled"
    # nothing before analyze passed, so no Rerun button would be accepted: none is offered
    assert run["output"]["title"] == "Cancelled at analyze" and buttons(run) == []


def test_no_base_branch_no_check_run_and_the_job_still_runs(
    post: Callable[..., Any], github_standin: Any, deps: Any, drain: Callable[[], list[Any]]
) -> None:
    """An empty repository has no commit to carry a check run: the status comment still works."""
    gh = github_standin
    n = new_issue(gh)
    label(post, gh, n)
    drain()
    job = deps.store.active_for(REPO, n)
    assert job.state == "running:analyze" and job_runs(gh, job.id) == []


def test_a_job_that_fails_after_the_draft_leaves_it_a_draft_with_the_verdict(
    post: Callable[..., Any],
    github_standin: Any,
    deps: Any,
    drain: Callable[[], list[Any]],
    mkdocs_repo: Path,
) -> None:
    gh = github_standin
    _n, job, _base = labelled_job(post, gh, deps, drain, mkdocs_repo, f"Please support it.\n\nmodel: {MODEL}")
    results = b.full_results(MODEL)
    for stage in ("analyze", "dummy-gate", "features", "real-gate", "capacity"):
        finish(deps, job.id, results[stage])
    drain()
    (pr,) = pulls_of(gh, REPO)
    assert pr["draft"] and "the job is still running" in pr["body"]
    broken = results["accuracy"].model_copy(
        update={"status": "failed", "reason": "dataset-missing", "diagnosis": "gsm8k is not in the cache"}
    )
    finish(deps, job.id, broken)
    drain()
    assert deps.store.get(job.id).state == "failed:accuracy"
    (pr,) = pulls_of(gh, REPO)
    assert pr["draft"] is True and pr["_draft_log"] == ["opened:draft"]
    assert "The job ended at **accuracy** before delivery" in pr["body"]
    assert "failed: accuracy" in pr["body"] and "the job is still running" not in pr["body"]
    (run,) = [r for r in job_runs(gh, job.id) if r["head_sha"] == pr["head_sha"]]
    assert run["status"] == "completed" and run["conclusion"] == "failure"
    assert buttons(run) == ["rerun-accuracy", "rerun-real-gate", "rerun-dummy-gate"]
