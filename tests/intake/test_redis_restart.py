"""The web process and the control-plane clients keep working across a Redis restart (append-only
persistence): pooled connections that went stale are retried on fresh ones, nothing accepted is lost."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tests.plugins.standin import REPO
from tests.standin import payloads


def test_webhooks_are_accepted_before_and_after_a_redis_restart(
    post: Callable[..., Any], github_standin: Any, deps: Any, redis_server: Any
) -> None:
    gh = github_standin
    n = gh.add_issue(REPO, "t", "model: Qwen/Qwen3-8B")["number"]
    first = gh.add_comment(REPO, n, "/adapt status", "maintainer")
    assert post("issue_comment", payloads.issue_comment(gh, REPO, n, first)).status_code == 202
    before = set(deps.redis.keys("adapt:intent:*"))
    assert before, "the accepted command is stored as an intent"
    redis_server.restart()
    second = gh.add_comment(REPO, n, "/adapt help", "maintainer")
    r = post("issue_comment", payloads.issue_comment(gh, REPO, n, second))
    assert r.status_code == 202, r.text
    after = set(deps.redis.keys("adapt:intent:*"))  # the sync client reconnects too
    assert before < after  # the first intent survived the restart, the second was added
    # and a redelivery of the first is still recognised as a duplicate
    again = post("issue_comment", payloads.issue_comment(gh, REPO, n, first))
    assert again.status_code in (200, 202) and set(deps.redis.keys("adapt:intent:*")) == after
