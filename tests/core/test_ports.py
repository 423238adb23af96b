"""Control-plane logic against the in-memory GitHub (tests/fakes.py): fast, no server. The same
behaviours are tested end to end against the stand-in in tests/intake/."""

from __future__ import annotations

from typing import Any

import pytest

from bot import comments, permissions, repo_config
from bot.config import Settings
from bot.jobs.model import Job
from runners.contracts import JobOptions
from tests.fakes import MemoryGitHub

REPO = "o/r"


def job(**kw: Any) -> Job:
    return Job(repo=REPO, issue=7, options=JobOptions(model="Qwen/Qwen3-8B"), **kw)


def test_status_comment_is_created_once_then_edited_in_place() -> None:
    gh = MemoryGitHub()
    j = job()
    body = f"{comments.marker(j.id)}\nrunning"
    cid = comments.publish_status(gh, j, body)
    # a retry that lost the id finds the comment by its marker instead of posting again
    assert comments.publish_status(gh, j, body.replace("running", "done")) == cid
    # (the body also carries the skill link: the fake has no Redis record of another holder)
    assert [("done" in c["body"], "running" in c["body"]) for c in gh.comments.values()] == [(True, False)]
    # with the id stored: one edit, no lookup
    gh.calls.clear()
    assert comments.publish_status(gh, j.model_copy(update={"status_comment_id": cid}), body) == cid
    assert gh.calls == ["update"]


def test_a_humans_comment_carrying_the_marker_is_never_taken_over() -> None:
    gh = MemoryGitHub()
    j = job()
    human = gh.human_comment(REPO, 7, f"{comments.marker(j.id)}\nI pasted the bot's marker")
    cid = comments.publish_status(gh, j, f"{comments.marker(j.id)}\nrunning")
    assert cid != human and gh.comments[human]["body"].endswith("I pasted the bot's marker")


def test_report_and_preflight_comments_each_have_their_own_marker() -> None:
    gh = MemoryGitHub()
    j = job()
    report = comments.publish_report(gh, j, "report v1")
    pre = comments.publish_preflight(gh, j, "pre-flight")
    assert report != pre
    assert comments.publish_report(gh, j, "report v2") == report
    assert len(gh.comments) == 2 and gh.comments[report]["body"].endswith("report v2")


@pytest.mark.parametrize(
    ("levels", "needed", "refused"),
    [
        ({"author": "write"}, "write", None),
        ({"author": "triage"}, "write", "author"),
        ({"author": "admin", "editor": "read"}, "write", "editor"),
        ({"author": "write"}, "maintain", "author"),
    ],
)
def test_permission_rule(redis_url: str, levels: dict[str, str], needed: str, refused: str | None) -> None:
    import redis

    gh = MemoryGitHub(levels=levels)
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    got = permissions.refusal(
        gh, REPO, ["author", "editor" if "editor" in levels else None], needed, client, 60
    )
    assert (got.user if got else None) == refused


def test_repo_config_is_read_through_the_contents_port(redis_url: str) -> None:
    import redis

    gh = MemoryGitHub(
        files={repo_config.PATH: "label: please-adapt\nartifacts: {nightly: a2.accuracy.nightly}\n"}
    )
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    loaded = repo_config.load(gh, REPO, Settings(), client)
    assert loaded.error is None and loaded.config.label == "please-adapt"
    assert loaded.config.artifacts.nightly_section == "a2.accuracy.nightly"
