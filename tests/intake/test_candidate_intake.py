"""`/adapt run --candidate` on the control plane (issue 14), through the real webhook, router,
Redis and the GitHub stand-in: the candidate needs its own permission (`candidate_permission`,
default maintain), its ref is pinned to the commit GitHub resolves (`GET /repos/{o}/{r}/commits/{ref}`)
and the status comment shows that SHA; the clone URL comes from the settings, not the comment."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tests.intake.test_flow import command, new_issue, replies, status_comments
from tests.plugins.standin import REPO
from tests.standin.git_api import add_candidate_ref

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
