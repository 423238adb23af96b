"""`POST /webhook` on a real uvicorn server with real Redis: the bad-input table, every fixture
payload, dedupe (same GUID, same event under a new GUID, concurrent copies), health and metrics."""

from __future__ import annotations

import concurrent.futures
import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from tests.intake.conftest import queued
from tests.plugins.standin import REPO, WEBHOOK_SECRET
from tests.standin import payloads
from tests.standin.server import sign


def intents_in_redis(deps: Any) -> list[dict[str, Any]]:
    return [json.loads(deps.redis.get(k)) for k in deps.redis.scan_iter("adapt:intent:*")]


@pytest.fixture
def issue(github_standin: Any) -> dict[str, Any]:
    return github_standin.add_issue(REPO, "Support Qwen/Qwen3-8B", "model: Qwen/Qwen3-8B")


def test_wrong_and_missing_signature_are_401(
    post: Callable[..., Any], github_standin: Any, issue: Any, deps: Any
) -> None:
    p = payloads.issues_labeled(github_standin, REPO, issue["number"])
    assert post("issues", p, secret="not-the-secret-at-all").status_code == 401
    assert post("issues", p, secret=None).status_code == 401
    tampered = json.dumps(p).encode()
    sig = sign(WEBHOOK_SECRET, tampered)
    r = post("issues", tampered.replace(b"adapt-model", b"adapt-modex"), headers={"X-Hub-Signature-256": sig})
    assert r.status_code == 401
    assert intents_in_redis(deps) == []


@pytest.mark.parametrize(
    ("event", "body", "headers", "status"),
    [
        ("issues", b'{"action": "labeled", "issue": {', {}, 400),  # truncated JSON
        ("issues", b"[1, 2]", {}, 400),  # JSON but not an object
        ("issues", b"\xff\xfe not utf8", {}, 400),
        ("", b"{}", {}, 400),  # missing event header
        ("star", b'{"action": "created"}', {}, 202),  # unknown event: accepted, ignored
    ],
)
def test_malformed_requests(
    post: Callable[..., Any], event: str, body: bytes, headers: dict[str, str], status: int
) -> None:
    r = post(event, body, headers=headers)
    assert r.status_code == status, r.text


def test_missing_delivery_header_is_400(bot_server: Any) -> None:
    body = b'{"zen": "x"}'
    r = httpx.post(
        bot_server.url + "/webhook",
        content=body,
        headers={"X-GitHub-Event": "ping", "X-Hub-Signature-256": sign(WEBHOOK_SECRET, body)},
    )
    assert r.status_code == 400


def test_body_over_25_mb_is_413(bot_server: Any) -> None:
    big = b"{" + b" " * (26 * 1024 * 1024) + b"}"
    t0 = time.monotonic()
    r = httpx.post(
        bot_server.url + "/webhook",
        content=big,
        headers={
            "X-GitHub-Event": "issues",
            "X-GitHub-Delivery": "big",
            "X-Hub-Signature-256": sign(WEBHOOK_SECRET, big),
        },
        timeout=60,
    )
    assert r.status_code == 413
    assert time.monotonic() - t0 < 30


def test_streamed_body_without_length_stops_at_the_limit(bot_server: Any) -> None:
    sent = 0

    def chunks() -> Iterator[bytes]:
        nonlocal sent
        for _ in range(27):
            sent += 1
            yield b" " * (1024 * 1024)

    try:
        r = httpx.post(
            bot_server.url + "/webhook",
            content=chunks(),
            headers={
                "X-GitHub-Event": "issues",
                "X-GitHub-Delivery": "stream",
                "X-Hub-Signature-256": "sha256=00",
            },
            timeout=60,
        )
        assert r.status_code == 413
    except httpx.HTTPError:
        pass  # the server may close the connection while we are still sending: also a refusal
    assert sent <= 27


def test_ping_is_answered(post: Callable[..., Any]) -> None:
    r = post("ping", payloads.fixture("ping.none.1"))
    assert r.status_code == 200 and r.json()["pong"] is True


def test_every_fixture_payload_is_accepted(post: Callable[..., Any], deps: Any) -> None:
    fixtures = payloads.all_fixtures()
    assert len(fixtures) == 90
    outcomes: dict[str, str] = {}
    for stem, event, payload in fixtures:
        r = post(event, payload)
        assert 200 <= r.status_code < 300, (stem, r.status_code, r.text)
        outcomes[stem] = r.json().get("status", "pong")
    # acted on: labeled issues (label checked against the repo config later), installation records;
    # ignored with a reason: the rest (no /adapt in the example comments, bots, other actions)
    assert outcomes["issues.labeled.1"] == "accepted"
    assert outcomes["installation.created.1"] == "accepted"
    assert outcomes["issue_comment.created.1"] == "ignored"
    assert outcomes["check_run.requested_action.1"] == "ignored"  # `lgtm|26764` is not our button
    assert outcomes["pull_request.closed.1"] == "accepted"
    assert outcomes["issues.opened.1"] == "ignored"
    assert outcomes["ping.none.4"] == "pong"


def test_every_fixture_routes_through_the_real_router() -> None:
    from bot.behaviours import ROUTER
    from bot.events import EventContext

    for stem, event, payload in payloads.all_fixtures():
        out = ROUTER.dispatch(EventContext(event, stem, payload))
        assert out.intents or out.reason, stem


def test_label_by_a_bot_is_ignored(
    post: Callable[..., Any], github_standin: Any, issue: Any, deps: Any
) -> None:
    p = payloads.issues_labeled(
        github_standin, REPO, issue["number"], sender="helper[bot]", sender_type="Bot"
    )
    r = post("issues", p)
    assert r.status_code == 202 and r.json()["status"] == "ignored" and "bot" in r.json()["reason"]
    # a human whose login merely looks like a bot's is not ignored
    p = payloads.issues_labeled(github_standin, REPO, issue["number"], sender="fake[bot]", sender_type="User")
    assert post("issues", p).json()["status"] == "accepted"


def test_command_in_code_block_is_not_a_command(
    post: Callable[..., Any], github_standin: Any, issue: Any
) -> None:
    c = github_standin.add_comment(
        REPO, issue["number"], "Try this:\n```\n/adapt run\n```\n> /adapt cancel", "maintainer"
    )
    r = post("issue_comment", payloads.issue_comment(github_standin, REPO, issue["number"], c))
    assert r.json()["status"] == "ignored"


def test_label_delivery_enqueues_an_intent_id_only(
    post: Callable[..., Any], github_standin: Any, issue: Any, deps: Any
) -> None:
    t0 = time.monotonic()
    r = post("issues", payloads.issues_labeled(github_standin, REPO, issue["number"]))
    assert r.status_code == 202 and r.json() == {"status": "accepted", "intents": ["start"], "duplicates": 0}
    assert time.monotonic() - t0 < 1.0
    msgs = queued(deps.redis, "control")
    assert len(msgs) == 1
    name, args, kwargs = msgs[0]
    assert name == "bot.tasks.apply_intent" and len(args) == 2 and kwargs == {}
    assert isinstance(args[0], str) and len(args[0]) == 32  # one intent id, not a payload
    assert isinstance(args[1], str) and len(args[1]) == 16  # the owner token of its message chain
    stored = json.loads(deps.redis.get(f"adapt:intent:{args[0]}"))
    assert (
        stored["kind"] == "start" and stored["issue"] == issue["number"] and stored["installation_id"] == 77
    )


def test_duplicates_same_guid_and_second_hook(
    post: Callable[..., Any], github_standin: Any, issue: Any, deps: Any
) -> None:
    p = payloads.issues_labeled(github_standin, REPO, issue["number"])
    assert post("issues", p, delivery="guid-1").json()["status"] == "accepted"
    assert post("issues", p, delivery="guid-1").json()["status"] == "duplicate"  # redelivery
    assert post("issues", p, delivery="guid-2").json()["status"] == "duplicate"  # second hook
    c = github_standin.add_comment(REPO, issue["number"], "/adapt status", "maintainer")
    cp = payloads.issue_comment(github_standin, REPO, issue["number"], c)
    assert post("issue_comment", cp, delivery="c-1").json()["status"] == "accepted"
    assert post("issue_comment", cp, delivery="c-2").json()["status"] == "duplicate"
    # editing the comment to add a new command runs only the new line
    c["body"] = "/adapt status\n/adapt help"
    ep = payloads.issue_comment(github_standin, REPO, issue["number"], c, action="edited")
    r = post("issue_comment", ep, delivery="c-3").json()
    assert r["status"] == "accepted" and r["intents"] == ["help"] and r["duplicates"] == 1
    assert len(queued(deps.redis, "control")) == 3


def test_concurrent_duplicates_make_one_intent(
    bot_server: Any, github_standin: Any, issue: Any, deps: Any
) -> None:
    p = payloads.issues_labeled(github_standin, REPO, issue["number"])
    body = json.dumps(p).encode()
    sig = sign(WEBHOOK_SECRET, body)

    def send(i: int) -> str:
        with httpx.Client(timeout=30) as c:
            r = c.post(
                bot_server.url + "/webhook",
                content=body,
                headers={
                    "X-GitHub-Event": "issues",
                    "X-GitHub-Delivery": f"g-{i % 2}",
                    "X-Hub-Signature-256": sig,
                },
            )
        return str(r.json()["status"])

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        statuses = list(pool.map(send, range(16)))
    assert statuses.count("accepted") == 1, statuses
    assert statuses.count("duplicate") == 15
    assert len(queued(deps.redis, "control")) == 1


def test_health_metrics_and_jobs_api(
    post: Callable[..., Any], bot_server: Any, github_standin: Any, issue: Any
) -> None:
    post("issues", payloads.issues_labeled(github_standin, REPO, issue["number"]), delivery="m-1")
    post("issues", payloads.issues_labeled(github_standin, REPO, issue["number"]), delivery="m-1")
    post("issues", b"{", delivery="m-2")
    post("issues", {}, secret="wrong-secret-123")
    assert httpx.get(bot_server.url + "/healthz").json() == {"ok": True, "redis": "ok"}
    assert httpx.get(bot_server.url + "/metrics").status_code == 404  # not on the public port
    text = httpx.get(bot_server.metrics_url + "/metrics").text
    assert 'adapt_bot_webhook_deliveries_total{event="issues",outcome="accepted"} 1' in text
    assert 'adapt_bot_webhook_deliveries_total{event="issues",outcome="duplicate"} 1' in text
    assert 'adapt_bot_webhook_deliveries_total{event="issues",outcome="bad_request"} 1' in text
    assert 'adapt_bot_webhook_deliveries_total{event="unverified",outcome="unauthorized"} 1' in text
    assert 'adapt_bot_jobs{state="running"} 0' in text
    listed = httpx.get(bot_server.url + "/api/jobs").json()  # nothing applied it yet: it is pending
    assert listed["jobs"] == [] and [p["kinds"] for p in listed["pending"]] == ["start"]
    assert "adapt_bot_intents_pending 1" in text
    assert httpx.get(bot_server.url + "/api/jobs/nope").status_code == 404
    assert "No jobs yet" in httpx.get(bot_server.url + "/jobs").text


def test_commands_of_one_comment_travel_together_in_order(
    post: Callable[..., Any], github_standin: Any, issue: Any, deps: Any
) -> None:
    c = github_standin.add_comment(
        REPO, issue["number"], "/adapt cancel\n/adapt run --tp 2\n/adapt status", "maintainer"
    )
    r = post("issue_comment", payloads.issue_comment(github_standin, REPO, issue["number"], c))
    assert r.json()["intents"] == ["cancel", "start", "status"]
    ((name, args, _),) = queued(deps.redis, "control")  # one message for the delivery
    ids = args[0].split()
    kinds = [json.loads(deps.redis.get(f"adapt:intent:{i}"))["kind"] for i in ids]
    assert name == "bot.tasks.apply_intent" and kinds == ["cancel", "start", "status"]
