"""A maintainer's push to the bot's PR re-gates the code it pushed (issue 15).

Through the real webhook, router, Redis and the GitHub stand-in's git database: the job's PR is
delivered for real (tests.intake.test_pr_life.delivered), a person pushes a commit, and GitHub's
compare of the bot's delivered head with the pushed head decides how the gates run again. A push
touching implementation files makes the PR head (pinned to the pushed SHA) the job's candidate, so
the runner installs that code; a push touching only the bot's own tutorial/YAML re-gates without
one; a compare that fails still re-gates (docs/YAML only) and says so.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tests.intake.conftest import queued, stage_requests
from tests.intake.test_flow import finish_stage, replies, status_comments
from tests.intake.test_pr_life import delivered, refs
from tests.plugins.standin import REPO
from tests.standin import payloads
from tests.standin.git_api import git_world, pulls_of, push_commit, seed_commit
from tests.standin.state import bad_gateway

TUTORIAL = "docs/source/tutorials/Qwen3-8B.md"  # what delivered() commits for the bot
CODE = "vllm_ascend/models/foo.py"


def job_with_pr(
    post: Callable[..., Any], gh: Any, deps: Any, drain: Callable[[], list[Any]]
) -> tuple[str, int, int, str, str]:
    """(job id, issue, PR, branch, the bot's delivered head); the job's artifacts recorded as a
    runner reports them (the tutorial the delivery committed)."""
    job_id, n, pr, branch = delivered(post, gh, deps, drain)
    deps.store.save_files(job_id, {TUTORIAL: "# Qwen3-8B\n"})
    return job_id, n, pr, branch, refs(gh)[f"refs/heads/{branch}"]


def sync(post: Callable[..., Any], gh: Any, pr: int, before: str, delivery: str) -> None:
    r = post(
        "pull_request",
        payloads.pull_request_event(gh, REPO, pr, "synchronize", before=before),
        delivery=delivery,
    )
    assert r.status_code == 202 and r.json()["intents"] == ["rerun"], r.text


def requested_options(deps: Any) -> list[dict[str, Any]]:
    """The JobOptions each queued runner stage request carries (what the runner installs)."""
    return [args[0]["options"] for _n, args, _kw in queued(deps.redis, "adapt:pool:cpu:cpu")]


def push_compares(gh: Any) -> list[Any]:
    """The compares of pushed heads (delivery's own `main...<branch>` check is not one of them)."""
    return [r for r in gh.requests_to("GET", f"/repos/{REPO}/compare/*") if "...adapt/" not in r.path]


def test_a_push_of_implementation_code_re_gates_with_the_pushed_head_as_candidate(
    post: Callable[..., Any], github_standin: Any, deps: Any, drain: Callable[[], list[Any]]
) -> None:
    from runners.contracts import STAGES

    gh = github_standin
    job_id, n, pr, branch, bot_head = job_with_pr(post, gh, deps, drain)
    new_sha = push_commit(gh, REPO, branch, {CODE: "class Foo: ...\n", TUTORIAL: "# Qwen3-8B\nfixed\n"})
    sync(post, gh, pr, bot_head, "code-1")
    assert drain() == [f"rerun dummy-gate of {job_id}"]
    assert len(push_compares(gh)) == 1
    job = deps.store.get(job_id)
    cand = job.options.candidate
    assert cand is not None and (cand.repo, cand.ref, cand.sha) == (REPO, branch, new_sha)
    assert cand.url == deps.settings.candidate_git_url.format(repo=REPO)
    assert job.pushed.candidate and job.pushed.code_files == [CODE] and job.pushed.bot_head == bot_head
    assert stage_requests(deps.redis) == [(job_id, "dummy-gate", 2)]
    (opts,) = requested_options(deps)
    assert opts["candidate"]["sha"] == new_sha and opts["candidate"]["ref"] == branch
    (status,) = status_comments(gh, n)
    body = status["body"]
    assert f"**Push re-gated** `{new_sha[:12]}`" in body, body
    assert f"1 implementation file (`{CODE}`)" in body and "the PR head is this job's candidate" in body
    assert TUTORIAL not in body.split("**Push re-gated**")[1].split("\n")[0]  # the bot's own file is not code
    # the re-gated job delivers by reporting on the pushed head: the maintainer's files are not
    # committed again by the bot (no new commit, the branch stays at their push)
    for stage in STAGES[STAGES.index("dummy-gate") : -1]:
        finish_stage(deps, job_id, stage)
    assert drain() == ["succeeded"]
    assert refs(gh)[f"refs/heads/{branch}"] == new_sha
    assert len(gh.requests_to("POST", f"/repos/{REPO}/git/commits")) == 1  # the bot's first delivery
    # a later push of the tutorial alone: still compared with the bot's head, so the code pushed
    # before is still on the branch and the new head is the candidate
    third = push_commit(gh, REPO, branch, {TUTORIAL: "# Qwen3-8B\nfixed twice\n"})
    sync(post, gh, pr, new_sha, "code-2")
    assert drain() == [f"rerun dummy-gate of {job_id}"]
    job = deps.store.get(job_id)
    assert job.options.candidate is not None and job.options.candidate.sha == third
    compares = push_compares(gh)
    assert len(compares) == 2 and f"{bot_head}...{third}" in compares[-1].path


def test_a_push_of_the_tutorial_alone_re_gates_without_a_candidate(
    post: Callable[..., Any], github_standin: Any, deps: Any, drain: Callable[[], list[Any]]
) -> None:
    gh = github_standin
    job_id, n, pr, branch, bot_head = job_with_pr(post, gh, deps, drain)
    new_sha = push_commit(gh, REPO, branch, {TUTORIAL: "# Qwen3-8B\nfixed\n"})
    sync(post, gh, pr, bot_head, "docs-1")
    assert drain() == [f"rerun dummy-gate of {job_id}"]
    job = deps.store.get(job_id)
    assert job.options.candidate is None and job.pr_head_sha == new_sha
    assert job.pushed is not None and not job.pushed.candidate and job.pushed.code_files == []
    (opts,) = requested_options(deps)
    assert opts["candidate"] is None
    (status,) = status_comments(gh, n)
    assert "only the bot's own docs/YAML changed since its delivery" in status["body"]
    assert "**Candidate**" not in status["body"]
    assert not any("comparing" in b for b in replies(gh, pr))


def test_a_force_push_from_an_unrelated_history_replies_and_still_re_gates_the_docs(
    post: Callable[..., Any], github_standin: Any, deps: Any, drain: Callable[[], list[Any]]
) -> None:
    gh = github_standin
    job_id, n, pr, branch, bot_head = job_with_pr(post, gh, deps, drain)
    unrelated = seed_commit(gh, REPO, {CODE: "rewritten\n"}, branch=branch)  # no common ancestor
    git_world(gh)["pulls"][REPO][pr]["head_sha"] = unrelated
    assert pulls_of(gh, REPO)[0]["head_sha"] == unrelated
    sync(post, gh, pr, bot_head, "force-1")
    assert drain() == [f"rerun dummy-gate of {job_id}"]
    job = deps.store.get(job_id)
    assert job.state == "running:dummy-gate" and job.options.candidate is None
    assert stage_requests(deps.redis) == [(job_id, "dummy-gate", 2)]
    (reply,) = [b for b in replies(gh, pr) if "comparing" in b]
    assert f"comparing {bot_head[:12]}...{unrelated[:12]} failed (HTTP 404" in reply
    assert "re-gating the docs/YAML only, without the pushed code as the candidate" in reply
    (status,) = status_comments(gh, n)
    assert f"**Push re-gated** `{unrelated[:12]}`: comparing" in status["body"]


def test_a_compare_that_keeps_failing_with_5xx_replies_and_still_re_gates_the_docs(
    post: Callable[..., Any], github_standin: Any, deps: Any, drain: Callable[[], list[Any]]
) -> None:
    gh = github_standin
    job_id, n, pr, branch, bot_head = job_with_pr(post, gh, deps, drain)
    new_sha = push_commit(gh, REPO, branch, {CODE: "class Foo: ...\n"})
    gh.outage("GET", f"/repos/{REPO}/compare/*", 120, bad_gateway())
    try:
        sync(post, gh, pr, bot_head, "5xx-1")
        assert drain() == [f"rerun dummy-gate of {job_id}"]
    finally:
        gh.end_outages()
    assert len(gh.requests_to("GET", f"/repos/{REPO}/compare/*")) >= 2  # retried before giving up
    job = deps.store.get(job_id)
    assert job.state == "running:dummy-gate" and job.options.candidate is None and job.pr_head_sha == new_sha
    assert stage_requests(deps.redis) == [(job_id, "dummy-gate", 2)]
    (reply,) = [b for b in replies(gh, pr) if "comparing" in b]
    assert (
        "(HTTP 502" in reply or "(GitHub kept failing)" in reply
    ) and "re-gating the docs/YAML only" in reply
    assert "re-gating the docs/YAML only" in status_comments(gh, n)[0]["body"]
