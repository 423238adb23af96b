"""`/adapt run --candidate` on the control plane (issue 14), through the real webhook, router,
Redis and the GitHub stand-in: the candidate needs its own permission (`candidate_permission`,
default maintain), its ref is pinned to the commit GitHub resolves (`GET /repos/{o}/{r}/commits/{ref}`)
and the status comment shows that SHA; the clone URL comes from the settings, not the comment."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.intake.test_flow import command, new_issue, replies, status_comments
from tests.plugins.standin import REPO
from tests.standin.git_api import add_candidate_ref, open_fork_pull

SHA = "0123456789abcdef0123456789abcdef01234567"


def test_a_write_user_may_run_but_not_name_a_candidate(
    post: Callable[..., Any], github_standin: Any, deps: Any, drain: Callable[[], list[Any]]
) -> None:
    gh = github_standin
    add_candidate_ref(gh, "contrib/plugin", "feat/adaptplug", SHA)
    n = new_issue(gh)
    command(post, gh, n, "/adapt run --candidate contrib/plugin@feat/adaptplug", user="maintainer")  # write
    (outcome,) = drain()
    assert outcome == "refused: --candidate: maintainer has write, needs maintain"
    assert deps.store.active_for(REPO, n) is None and status_comments(gh, n) == []
    (reply,) = replies(gh, n)
    assert "needs **maintain** permission" in reply and "you have **write**" in reply
    assert gh.requests_to("GET", "/repos/contrib/plugin/commits/*") == []  # nothing resolved for them


def test_a_maintainer_candidate_is_pinned_to_its_sha(
    post: Callable[..., Any], github_standin: Any, deps: Any, drain: Callable[[], list[Any]]
) -> None:
    gh = github_standin
    add_candidate_ref(gh, "contrib/plugin", "feat/adaptplug", SHA)
    n = new_issue(gh)
    command(post, gh, n, "/adapt run --candidate contrib/plugin@feat/adaptplug", user="admin-user")
    assert drain()[0].startswith("started job ")
    job = deps.store.active_for(REPO, n)
    cand = job.options.candidate
    assert (cand.repo, cand.ref, cand.sha) == ("contrib/plugin", "feat/adaptplug", SHA)
    assert cand.url == "https://github.com/contrib/plugin.git"  # Settings.candidate_git_url
    (status,) = status_comments(gh, n)
    assert f"**Candidate** `contrib/plugin@feat/adaptplug` pinned to `{SHA}`" in status["body"]


def test_a_candidate_ref_github_does_not_know_is_refused_with_a_reply(
    post: Callable[..., Any], github_standin: Any, deps: Any, drain: Callable[[], list[Any]]
) -> None:
    gh = github_standin
    n = new_issue(gh)
    command(post, gh, n, "/adapt run --candidate contrib/plugin@nope", user="admin-user")
    (outcome,) = drain()
    assert outcome.startswith("refused: --candidate: GitHub knows no commit `nope` in `contrib/plugin`")
    assert deps.store.active_for(REPO, n) is None
    (reply,) = replies(gh, n)
    assert "GitHub knows no commit" in reply


def test_a_hostile_candidate_value_gets_the_usage_and_nothing_is_resolved(
    post: Callable[..., Any], github_standin: Any, deps: Any, drain: Callable[[], list[Any]]
) -> None:
    gh = github_standin
    n = new_issue(gh)
    command(post, gh, n, "/adapt run --candidate contrib/plugin@--upload-pack=evil", user="admin-user")
    (outcome,) = drain()
    assert outcome.startswith("invalid command:")
    assert deps.store.active_for(REPO, n) is None
    (reply,) = replies(gh, n)
    assert "the ref may use A-Z a-z 0-9 . _ / -" in reply and "/adapt run" in reply
    assert gh.requests_to("GET", "/repos/contrib/plugin/commits/*") == []


def test_candidate_this_on_a_contributors_pr_runs_the_linked_issue_at_the_prs_head(
    post: Callable[..., Any], github_standin: Any, deps: Any, drain: Callable[[], list[Any]]
) -> None:
    """`/adapt run --candidate this` on a PR from a fork that says `Fixes #N`: the job is the issue's,
    its candidate the PR head's commit as GitHub reports it (not text from the comment); the
    status comment is on the issue and the PR gets one reply saying where the job reports."""
    gh = github_standin
    n = new_issue(gh)
    pr = open_fork_pull(
        gh, REPO, "contrib/vllm-ascend", "qwen3-fix", SHA,
        title="Register the Qwen3 variant", body=f"Adds the model class.\n\nFixes #{n}",
    )  # fmt: skip
    command(post, gh, pr, "/adapt run --candidate this", user="admin-user")
    (outcome,) = drain()
    assert outcome.startswith("started job ") and outcome.endswith(f"for #{n} with the head of #{pr}")
    job = deps.store.active_for(REPO, n)
    cand = job.options.candidate
    assert (cand.repo, cand.ref, cand.sha) == ("contrib/vllm-ascend", "qwen3-fix", SHA)
    assert cand.url == "https://github.com/contrib/vllm-ascend.git"
    assert job.issue == n and job.options.model == "Qwen/Qwen3-8B"
    (status,) = status_comments(gh, n)
    assert f"pinned to `{SHA}`" in status["body"]
    (reply,) = replies(gh, pr)
    assert f"for #{n}" in reply and SHA in reply and "contrib/vllm-ascend" in reply
    assert status_comments(gh, pr) == []


def test_candidate_this_needs_the_candidate_permission_and_a_linked_issue(
    post: Callable[..., Any], github_standin: Any, deps: Any, drain: Callable[[], list[Any]]
) -> None:
    gh = github_standin
    n = new_issue(gh)
    unlinked = open_fork_pull(
        gh, REPO, "contrib/vllm-ascend", "wip", SHA, title="WIP", body="see owner/other#3 and ```#99```"
    )
    command(post, gh, unlinked, "/adapt run --candidate this", user="maintainer")  # write only
    assert drain() == ["refused: --candidate: maintainer has write, needs maintain"]
    assert gh.requests_to("GET", f"/repos/{REPO}/pulls/*") == []  # nothing read for them
    command(post, gh, unlinked, "/adapt run --candidate this", user="admin-user")
    (outcome,) = drain()
    assert outcome.startswith(f"refused: --candidate this: pull request #{unlinked} links no issue")
    assert "links no issue" in replies(gh, unlinked)[-1] and "Fixes" in replies(gh, unlinked)[-1]
    assert deps.store.active_for(REPO, n) is None
    # on an issue (not a PR) `this` names nothing
    command(post, gh, n, "/adapt run --candidate this", user="admin-user")
    assert drain() == ["refused: --candidate this outside a pull request"]
    assert "works in a comment on a pull request" in replies(gh, n)[-1]
    assert deps.store.active_for(REPO, n) is None


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("Fixes #12", 12),
        ("closes: #7 and refs #9", 7),
        ("Related to #4.\n\nResolves #5", 5),  # a closing keyword wins over a bare reference
        ("see #3", 3),
        ("see owner/repo#3", None),  # another repository's issue
        ("```\nFixes #3\n```", None),  # code is not read
        ("try `Fixes #3` in the body", None),
        ("> Fixes #3", None),  # nor quotes
        ("Fixes #21", None),  # the PR's own number (21 below)
        ("", None),
    ],
)
def test_linked_issue(text: str, want: int | None) -> None:
    from bot.pr_links import linked_issue

    assert linked_issue(text, not_=21) == want
