"""The model-adapter skill link is posted on an issue once, as the skill asks (issue 15): the first
job's status comment carries it through its every edit and rerun; a second job on the same issue
does not repeat it, nor does its final comment. Through the GitHub stand-in, real webhook payloads,
real Redis and the control tasks off the real queue; the record survives a lost Redis key because
the issue itself shows which comment holds the link."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from bot import comments
from runners.links import SKILL_URL
from tests.intake.test_flow import command, label, new_issue, ours, status_comments
from tests.plugins.standin import REPO


def with_link(gh: Any, n: int) -> list[dict[str, Any]]:
    return [c for c in ours(gh, n) if SKILL_URL in c["body"]]


def test_two_jobs_on_one_issue_post_the_skill_link_once(
    post: Callable[..., Any], github_standin: Any, deps: Any, drain: Callable[[], list[Any]]
) -> None:
    gh = github_standin
    n = new_issue(gh)
    label(post, gh, n)
    drain()
    first = deps.store.active_for(REPO, n)
    (status,) = status_comments(gh, n)
    assert comments.skill_note() in status["body"]
    assert status["body"].rstrip().splitlines()[-1].startswith("<sub>job ")  # the footer stays last
    command(post, gh, n, "/adapt cancel")
    command(post, gh, n, "/adapt rerun analyze")  # a rerun edits the same comment: the link stays
    drain()
    assert deps.store.get(first.id).state == "running:analyze"
    assert [c["id"] for c in with_link(gh, n)] == [status["id"]]
    command(post, gh, n, "/adapt cancel")
    drain()

    command(post, gh, n, "/adapt run")  # a second job on the same issue
    drain()
    second = deps.store.active_for(REPO, n)
    assert second is not None and second.id != first.id
    assert len(status_comments(gh, n)) == 2
    assert [c["id"] for c in with_link(gh, n)] == [status["id"]]  # still only the first job's

    # Redis lost the record: the issue shows who holds the link; nobody else takes it
    deps.redis.delete(comments.SKILL_KEY.format(repo=REPO, issue=n))
    command(post, gh, n, "/adapt cancel")
    drain()
    assert [c["id"] for c in with_link(gh, n)] == [status["id"]]


def test_an_issue_whose_earlier_comment_has_the_link_gets_no_second_one(
    post: Callable[..., Any],
    github_standin: Any,
    deps: Any,
    drain: Callable[[], list[Any]],
    app_settings: Any,
) -> None:
    """An issue from before this rule (an old final comment carries the link) is not given another."""
    from bot.github import GitHubClient
    from tests.plugins.standin import INSTALLATION

    gh = github_standin
    n = new_issue(gh)
    inst = GitHubClient(app_settings).installation(INSTALLATION)
    old = inst.create_comment(REPO, n, f"<!-- adapt-bot:report job=old -->\nWorkflow: {SKILL_URL}")
    label(post, gh, n)
    drain()
    assert deps.store.active_for(REPO, n) is not None
    assert [c["id"] for c in with_link(gh, n)] == [old["id"]]


def test_the_final_comment_does_not_repeat_the_link() -> None:
    from runners.artifacts import Delivery, render_final_comment
    from tests.artifacts import builders as b

    model = "org/Foo-7B"
    body = render_final_comment(
        b.options(model, issue=3),
        b.full_results(model),
        Delivery(commit_sha="0" * 40, branch="adapt/foo-7b-3", pr_url=None),
        job_id="job-3",
    )
    assert "adapt-bot" in body and SKILL_URL not in body
