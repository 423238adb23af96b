"""The bot's PR after delivery, against the GitHub stand-in with real webhook payload shapes.

A job runs through its stages (stored results, as test_flow does), then its PR is delivered for
real into the stand-in's git database (bot.delivery.deliver_pr: branch `adapt/...`, one signed-off
commit, the PR). Then: a maintainer's push re-gates it (a dummy-gate stage request is queued and
the same status comment follows), the bot's own push and pushes to other PRs do nothing, a merge
posts one closing summary and closes the issue, a close deletes the bot's branch, and every
redelivery changes nothing twice.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from bot.jobs import machine
from tests.intake.conftest import stage_requests
from tests.intake.test_flow import command, finish_stage, label, new_issue, ours, replies, status_comments
from tests.plugins.standin import INSTALLATION, REPO
from tests.standin import payloads
from tests.standin.git_api import check_runs_of, close_pull, git_world, pulls_of, push_commit, seed_commit

SUMMARY = "adapt-bot: "  # the closing summary's heading


def delivered(
    post: Callable[..., Any], gh: Any, deps: Any, drain: Callable[[], list[Any]]
) -> tuple[str, int, int, str]:
    """(job id, issue, PR number, branch) of a job that passed every stage and delivered its PR."""
    from bot.delivery import bot_signoff, deliver_pr
    from runners.artifacts import branch_name, model_names
    from runners.contracts import STAGES

    n = new_issue(gh)
    label(post, gh, n)
    drain()
    job = deps.store.active_for(REPO, n)
    for stage in STAGES[:-1]:
        finish_stage(deps, job.id, stage)
    deps.redis.delete("control")  # the queued `deliver`: done by hand below, with real files
    deps.redis.delete("adapt:pool:cpu:cpu")  # the stage requests a runner took (their results are stored)
    seed_commit(gh, REPO, {"README.md": "# vllm-ascend\n"})
    branch = branch_name(model_names(job.options.model_copy(update={"issue": n})), n)
    done = deliver_pr(
        deps.github.installation(INSTALLATION).gh,
        REPO,
        {"docs/source/tutorials/Qwen3-8B.md": "# Qwen3-8B\n"},
        branch=branch,
        title="[adapt-bot] Qwen3-8B",
        body=f"Fixes #{n}",
        message="Add Qwen3-8B tutorial",
        signoff=bot_signoff(gh.slug, gh.bot_user["id"]),
    )
    deps.store.update(job.id, lambda j: machine.succeed(j, "deliver", pr_number=done.number))
    return job.id, n, done.number, branch


def refs(gh: Any) -> dict[str, str]:
    return dict(git_world(gh)["refs"][REPO])


def test_a_maintainer_push_re_gates_the_pr_and_a_redelivery_does_not(
    post: Callable[..., Any], github_standin: Any, deps: Any, drain: Callable[[], list[Any]]
) -> None:
    gh = github_standin
    job_id, n, pr, branch = delivered(post, gh, deps, drain)
    before_sha = refs(gh)[f"refs/heads/{branch}"]
    new_sha = push_commit(gh, REPO, branch, {"docs/source/tutorials/Qwen3-8B.md": "# Qwen3-8B\nfixed\n"})
    assert pulls_of(gh, REPO)[0]["head_sha"] == new_sha
    event = payloads.pull_request_event(gh, REPO, pr, "synchronize", before=before_sha)
    assert event["after"] == new_sha and event["sender"]["type"] == "User"
    r = post("pull_request", event, delivery="sync-1")
    assert r.status_code == 202 and r.json()["intents"] == ["rerun"], r.text
    assert drain() == [f"rerun dummy-gate of {job_id}"]
    job = deps.store.get(job_id)
    assert job.state == "running:dummy-gate" and job.attempts["dummy-gate"] == 2
    assert job.stages["analyze"].status == "passed" and "deliver" not in job.stages
    assert stage_requests(deps.redis) == [(job_id, "dummy-gate", 2)]
    (status,) = status_comments(gh, n)  # the same status comment, now showing the re-gate
    assert status["id"] == job.status_comment_id and "Running **dummy-gate**" in status["body"]
    assert any("Rerunning from **dummy-gate**" in body for body in replies(gh, pr))
    assert job.pr_head_sha == new_sha
    posted = len(gh.requests_to("POST", "/repos/*"))
    # GitHub redelivers the same delivery, and sends a second copy under a new GUID: nothing twice
    again = [post("pull_request", event, delivery=d).json()["status"] for d in ("sync-1", "sync-1-again")]
    assert again == ["duplicate", "duplicate"] and drain() == []
    # and one that comes back after every dedupe window (the intent applied afresh): still nothing
    from bot.behaviours import ROUTER
    from bot.events import EventContext
    from bot.intents import apply_intent

    (late,) = ROUTER.dispatch(EventContext("pull_request", "sync-late", event)).intents
    assert apply_intent(late, deps) == f"ignored: head {new_sha[:12]} of job {job_id} was already re-gated"
    assert stage_requests(deps.redis) == [(job_id, "dummy-gate", 2)]
    assert deps.store.get(job_id).attempts["dummy-gate"] == 2
    assert len(gh.requests_to("POST", "/repos/*")) == posted


def test_the_bots_own_push_and_pushes_to_other_prs_change_nothing(
    post: Callable[..., Any], github_standin: Any, deps: Any, drain: Callable[[], list[Any]]
) -> None:
    gh = github_standin
    job_id, _n, pr, branch = delivered(post, gh, deps, drain)
    push_commit(gh, REPO, branch, {"x.md": "bot\n"}, author=gh.bot_user["login"])
    event = payloads.pull_request_event(
        gh, REPO, pr, "synchronize", sender=gh.bot_user["login"], sender_type="Bot"
    )
    r = post("pull_request", event)
    assert r.status_code == 202 and r.json()["status"] == "ignored", r.text
    assert "is a bot" in r.json()["reason"]
    assert drain() == []
    # a person's push to some other PR of the repository: not a word, no permission look-up
    other = gh.add_issue(REPO, "Fix typo", "", author="contributor", pull_request=True)["number"]
    event = payloads.pull_request_event(gh, REPO, pr, "synchronize", sender="contributor")
    event["number"] = event["pull_request"]["number"] = other
    post("pull_request", event)
    assert drain() == ["ignored: not a job's pull request"]
    assert ours(gh, other) == [] and gh.requests_to("GET", "/repos/*/collaborators/contributor/*") == []
    assert deps.store.get(job_id).state == "succeeded" and stage_requests(deps.redis) == []


def test_merge_posts_one_summary_closes_the_issue_and_archives_the_job(
    post: Callable[..., Any], github_standin: Any, deps: Any, drain: Callable[[], list[Any]]
) -> None:
    gh = github_standin
    job_id, n, pr, branch = delivered(post, gh, deps, drain)
    pull = close_pull(gh, REPO, pr, merged=True, by="maintainer")
    gh.repos[REPO].issues[n]["state"] = "open"  # the PR's "Fixes #n" is not what closes it here
    event = payloads.pull_request_event(gh, REPO, pr, "closed")
    assert event["pull_request"]["merged"] is True and pull["merged_by"]["login"] == "maintainer"
    r = post("pull_request", event, delivery="merge-1")
    assert r.json()["intents"] == ["pr_closed"], r.text
    (outcome,) = drain()
    assert outcome == f"pr #{pr} of {job_id} merged: archived; summary posted; issue #{n} closed"
    issue = gh.repos[REPO].issues[n]
    assert issue["state"] == "closed" and issue["state_reason"] == "completed"
    (summary,) = [c["body"] for c in ours(gh, n) if SUMMARY in c["body"]]
    assert f"Pull request #{pr}, merged by @maintainer," in summary and f"`{job_id}`" in summary
    assert "| real-gate | passed |" in summary and "This issue is now closed" in summary
    job = deps.store.get(job_id)
    assert job.archived and job.pr_merged is True and job.state == "succeeded"
    assert f"refs/heads/{branch}" in refs(gh)  # a merged branch is GitHub's (or the repo's) to delete
    # redelivered, and again under a new GUID: one summary, one PATCH, still archived
    post("pull_request", event, delivery="merge-1")
    post("pull_request", event, delivery="merge-2")
    assert all(o.startswith("ignored") for o in drain())
    assert len([c for c in ours(gh, n) if SUMMARY in c["body"]]) == 1
    assert len(gh.requests_to("PATCH", f"/repos/{REPO}/issues/{n}")) == 1
    # an archived job is not rerun (a new job starts on a new issue)
    command(post, gh, pr, "/adapt rerun dummy-gate")
    assert drain()[0].startswith(f"refused: job {job_id} is archived")
    assert stage_requests(deps.redis) == []


def test_merge_keeps_the_issue_open_when_configured(
    post: Callable[..., Any], github_standin: Any, deps: Any, drain: Callable[[], list[Any]]
) -> None:
    gh = github_standin
    gh.repos[REPO].files[".github/adapt-bot.yml"] = "delivery:\n  close_issue_on_merge: false\n"
    job_id, n, pr, _branch = delivered(post, gh, deps, drain)
    close_pull(gh, REPO, pr, merged=True, by="admin-user")
    post("pull_request", payloads.pull_request_event(gh, REPO, pr, "closed", sender="admin-user"))
    assert drain() == [f"pr #{pr} of {job_id} merged: archived; summary posted"]
    assert gh.repos[REPO].issues[n]["state"] == "open"
    (summary,) = [c["body"] for c in ours(gh, n) if SUMMARY in c["body"]]
    assert "close_issue_on_merge: false" in summary
    assert gh.requests_to("PATCH", f"/repos/{REPO}/issues/{n}") == []


def test_close_unmerged_deletes_the_bots_branch_once_and_archives(
    post: Callable[..., Any], github_standin: Any, deps: Any, drain: Callable[[], list[Any]]
) -> None:
    gh = github_standin
    job_id, n, pr, branch = delivered(post, gh, deps, drain)
    close_pull(gh, REPO, pr, merged=False, by="maintainer")
    event = payloads.pull_request_event(gh, REPO, pr, "closed")
    assert event["pull_request"]["merged"] is False and event["pull_request"]["head"]["ref"] == branch
    post("pull_request", event, delivery="close-1")
    assert drain() == [f"pr #{pr} of {job_id} closed: archived; branch {branch} deleted"]
    assert f"refs/heads/{branch}" not in refs(gh) and "refs/heads/main" in refs(gh)
    job = deps.store.get(job_id)
    assert job.archived and job.pr_merged is False
    assert gh.repos[REPO].issues[n]["state"] == "open"
    assert [c for c in ours(gh, n) if SUMMARY in c["body"]] == []
    post("pull_request", event, delivery="close-1")
    post("pull_request", event, delivery="close-2")
    assert all(o.startswith("ignored") for o in drain())
    assert len(gh.requests_to("DELETE", f"/repos/{REPO}/git/refs/*")) == 1


def test_a_branch_the_bot_did_not_make_is_never_deleted() -> None:
    from bot.intents import _bot_branch
    from bot.jobs.model import Job
    from runners.contracts import JobOptions

    job = Job(repo=REPO, issue=7, options=JobOptions(model="Qwen/Qwen3-8B", hardware="a2", profile="cpu"))
    ours_ = {"head_ref": "adapt/qwen3-8b-7", "head_repo": REPO}
    assert _bot_branch(job, ours_) == "adapt/qwen3-8b-7"
    assert _bot_branch(job, {**ours_, "head_repo": "someone/vllm-ascend"}) is None  # a fork's
    assert _bot_branch(job, {**ours_, "head_ref": "main"}) is None
    assert _bot_branch(job, {**ours_, "head_ref": "adapt/other-model-7"}) is None


def test_the_re_gated_pr_keeps_the_maintainers_commit_and_gets_check_runs_on_it(
    post: Callable[..., Any], github_standin: Any, deps: Any, drain: Callable[[], list[Any]]
) -> None:
    from runners.contracts import STAGES

    gh = github_standin
    job_id, n, pr, branch = delivered(post, gh, deps, drain)
    bots_commit = refs(gh)[f"refs/heads/{branch}"]
    new_sha = push_commit(gh, REPO, branch, {"docs/source/tutorials/Qwen3-8B.md": "# Qwen3-8B\nfixed\n"})
    post("pull_request", payloads.pull_request_event(gh, REPO, pr, "synchronize", before=bots_commit))
    assert drain() == [f"rerun dummy-gate of {job_id}"]
    for stage in STAGES[STAGES.index("dummy-gate") : -1]:
        finish_stage(deps, job_id, stage)
    assert deps.store.get(job_id).state == "running:deliver"
    assert drain() == ["succeeded"]
    assert refs(gh)[f"refs/heads/{branch}"] == new_sha  # nothing force-moved over the push
    assert gh.requests_to("PATCH", f"/repos/{REPO}/git/refs/*") == []
    assert len(gh.requests_to("POST", f"/repos/{REPO}/git/commits")) == 1  # the bot's delivery only
    (pull,) = pulls_of(gh, REPO)
    assert pull["head_sha"] == new_sha and pull["state"] == "open"
    runs = [r for r in check_runs_of(gh, REPO) if r["head_sha"] == new_sha]
    # the gates' runs and the job's own run (bot/checks.py) follow the pushed head
    assert {r["name"] for r in runs} == {"adapt-bot / dummy gate", "adapt-bot / real gate", "adapt-bot / job"}
    assert all(r["external_id"] == job_id for r in runs)
    reports = [c for c in ours(gh, n) if f"<!-- adapt-bot:report job={job_id} -->" in c["body"]]
    assert len(reports) == 1 and new_sha[:7] in reports[0]["body"]
    job = deps.store.get(job_id)
    assert job.state == "succeeded" and job.pr_number == pr
