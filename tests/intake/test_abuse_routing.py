"""Issue 12's abuse cases at the router: real webhook payloads (GitHub's examples in
tests/fixtures/github-webhooks) with hostile comment bodies, fed through the real `ROUTER`.
Pure: no Redis, no HTTP. The same cases against the stand-in are in test_abuse.py."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from bot.behaviours import ROUTER
from bot.events import EventContext
from tests.standin.payloads import fixture


def comment_event(body: str, action: str = "created", before: str | None = None, editor: str | None = None,
                  author: str = "Codertocat", n: int = 1) -> EventContext:  # fmt: skip
    p: dict[str, Any] = copy.deepcopy(fixture(f"issue_comment.{action}.{n}"))
    p["comment"]["body"] = body
    p["comment"]["user"] = {**p["comment"]["user"], "login": author, "type": "User"}
    p["sender"] = {**p["sender"], "login": editor or author, "type": "User"}
    if action == "edited":
        p["changes"] = {"body": {"from": before}} if before is not None else {}
    return EventContext("issue_comment", "d-1", p, extra={"max_commands_per_comment": 3})


def test_comment_with_120_commands_makes_3_intents_and_one_refusal() -> None:
    body = "\n".join(f"/adapt run --tp {2 ** (i % 7)} --max-model-len {256 + i}" for i in range(120))
    out = ROUTER.dispatch(comment_event(body))
    kinds = [i.kind for i in out.intents]
    assert kinds == ["start", "start", "start", "too_many"]
    refusal = out.intents[-1]
    assert refusal.detail["refused"] == 117 and refusal.detail["total"] == 120
    assert len(refusal.detail["shown"]) == 5  # bounded, whatever the comment held


@pytest.mark.parametrize(
    "body",
    [
        "<!-- /adapt run -->",
        "<!--\n/adapt run\n-->",
        "hello\u2028/adapt run",
        "hi\x85/adapt run",
        "> /adapt run",
        "> quoted\n/adapt run",
        "```\n/adapt run\n```",
    ],
)
def test_hidden_commands_make_no_intent(body: str) -> None:
    out = ROUTER.dispatch(comment_event(body))
    assert out.intents == [] and out.reason


def test_a_bad_number_is_an_intent_to_explain_and_the_rest_still_run() -> None:
    out = ROUTER.dispatch(comment_event("/adapt run --tp ²\n/adapt status"))
    assert [i.kind for i in out.intents] == ["invalid", "status"]
    assert "digits 0-9" in (out.intents[0].error or "")


def test_an_edit_runs_only_new_lines_as_the_author() -> None:
    out = ROUTER.dispatch(
        comment_event("/adapt status\n/adapt run", "edited", before="/adapt status", editor="Codertocat")
    )
    assert [(i.kind, i.sender, i.editor) for i in out.intents] == [("start", "Codertocat", None)]


def test_an_edit_of_a_strangers_comment_acts_as_the_stranger() -> None:
    out = ROUTER.dispatch(
        comment_event("/adapt run", "edited", before="/adpat run", author="stranger", editor="maintainer")
    )
    (intent,) = out.intents
    assert intent.kind == "start" and intent.sender == "stranger" and intent.editor == "maintainer"


@pytest.mark.parametrize("n", [1, 2])
def test_the_fixture_edits_add_no_command(n: int) -> None:
    p = copy.deepcopy(fixture(f"issue_comment.edited.{n}"))
    p["comment"]["body"] += "\n/adapt status"
    p["changes"]["body"]["from"] += "\n/adapt status"  # the command was there before the edit
    assert ROUTER.dispatch(EventContext("issue_comment", "d", p)).intents == []
    del p["changes"]["body"]  # an edit that did not touch the body
    assert ROUTER.dispatch(EventContext("issue_comment", "d", p)).intents == []


def test_a_bot_authored_comment_is_not_a_command_even_when_a_human_edits_it() -> None:
    ctx = comment_event("/adapt rerun dummy-gate", "edited", before="", editor="maintainer")
    ctx.payload["comment"]["user"]["type"] = "Bot"
    assert ROUTER.dispatch(ctx).intents == []


@pytest.mark.parametrize("n", [1, 2])
def test_label_is_a_start_request_of_its_sender(n: int) -> None:
    p = copy.deepcopy(fixture(f"issues.labeled.{n}"))
    p["label"]["name"] = "adapt-model"
    (intent,) = ROUTER.dispatch(EventContext("issues", "d", p)).intents
    assert intent.kind == "start" and intent.via == "label" and intent.sender == p["sender"]["login"]


def test_only_declared_check_run_buttons_are_accepted() -> None:
    from bot.commands import CHECK_ACTIONS

    p = copy.deepcopy(fixture("check_run.requested_action.1"))
    for action in CHECK_ACTIONS:
        p["requested_action"] = {"identifier": action.identifier}
        (intent,) = ROUTER.dispatch(EventContext("check_run", "d", p)).intents
        assert (intent.kind, intent.stage) == (action.command, action.stage)
    p["requested_action"] = {"identifier": "rerun-analyze"}  # a stage, but not a button we show
    assert ROUTER.dispatch(EventContext("check_run", "d", p)).intents == []
