"""Nothing accepted is lost, nothing is done twice (issue 12), against real processes: the web app on
a real uvicorn server, a real `adapt-bot worker --control` process, the GitHub stand-in with
injected faults, and the session's real redis-server stopped and restarted. Each test asserts what
GitHub (the stand-in) ends up showing. Retry intervals are shortened through settings so each test
takes seconds; the production values are hours of retries (`ADAPT_BOT_INTENT_MAX_AGE_S`)."""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.plugins.service import Worker, wait_for
from tests.plugins.standin import REPO, WEBHOOK_SECRET
from tests.standin import payloads
from tests.standin.hooks_api import deliver
from tests.standin.server import free_port
from tests.standin.state import late_answer

FAST = {
    "intent_retry_base_s": 0.5,
    "intent_retry_max_s": 1.0,
    "intent_lock_ttl_s": 3.0,
    "write_retries": 1,
    "github_timeout_s": 1.5,
    "spool_replay_s": 0.5,
    "intake_redis_timeout_s": 0.5,
    "redelivery_sweep_s": 1.0,
}


@pytest.fixture
def app_settings(app_settings: Any) -> Any:
    """The shared settings with short retry intervals (the same values go to the worker's env)."""
    return app_settings.model_copy(update=FAST)


@pytest.fixture
def control(app_env: dict[str, str], tmp_path: Path) -> Iterator[Worker]:
    env = {**app_env, **{f"ADAPT_BOT_{k.upper()}": str(v) for k, v in FAST.items()}}
    w = Worker(["--control", "--concurrency", "2"], env, tmp_path / "control.log")
    w.wait_ready()
    yield w
    w.stop()


def ours(gh: Any, n: int) -> list[dict[str, Any]]:
    return [c for c in gh.comments_on(REPO, n) if c.get("performed_via_github_app")]


def status_comments(gh: Any, n: int) -> list[dict[str, Any]]:
    return [c for c in ours(gh, n) if "<!-- adapt-bot:status job=" in c["body"]]


def replies(gh: Any, n: int) -> list[dict[str, Any]]:
    return [c for c in ours(gh, n) if "<!-- adapt-bot:reply key=" in c["body"]]


def new_issue(gh: Any) -> int:
    return int(gh.add_issue(REPO, "[New model] Qwen3-8B", "model: Qwen/Qwen3-8B")["number"])


def pending(deps: Any) -> int:
    from bot.ledger import PENDING

    return int(deps.redis.zcard(PENDING))


def test_github_503_for_a_while_then_recovers_gives_one_job_and_one_status_comment(
    post: Callable[..., Any], github_standin: Any, deps: Any, control: Worker, bot_server: Any
) -> None:
    gh = github_standin
    n = new_issue(gh)
    gh.outage("*", "/repos/*", 8.0)  # every repository call answers 503
    t0 = time.monotonic()
    assert post("issues", payloads.issues_labeled(gh, REPO, n)).json()["status"] == "accepted"
    # while GitHub is down the delivery is pending and visible, with its retries counted
    wait_for("a retry", lambda: deps.redis.hget("adapt:metrics:intents", "retries"), 60, [control])
    page = httpx.get(bot_server.url + "/api/jobs").json()
    assert page["pending"][0]["kinds"] == "start" and page["pending"][0]["issue"] == n
    assert "503" in page["pending"][0]["error"]
    assert "Waiting to be applied" in httpx.get(bot_server.url + "/jobs").text
    job = wait_for("the job", lambda: deps.store.active_for(REPO, n), 60, [control])
    wait_for("its status comment", lambda: status_comments(gh, n), 30, [control])
    assert time.monotonic() - t0 >= 7.0  # it really waited out the outage
    # more than Celery's default of 3 retries: the chain is bounded by the delivery's age, not a count
    assert sum(r.status == 503 for r in gh.requests) >= 8
    wait_for("the ledger to empty", lambda: pending(deps) == 0, 20, [control])
    time.sleep(2.0)  # any duplicate retry chain would act now
    job = deps.store.get(job.id)
    assert len(status_comments(gh, n)) == 1 and status_comments(gh, n)[0]["id"] == job.status_comment_id
    assert [j.id for j in deps.store.recent(10) if j.issue == n] == [job.id]
    metrics = httpx.get(bot_server.metrics_url + "/metrics").text
    assert "adapt_bot_intents_pending 0" in metrics
    retries = [ln for ln in metrics.splitlines() if ln.startswith("adapt_bot_intent_retries_total ")]
    assert int(retries[0].split()[1]) >= 1


def test_a_create_answered_after_the_client_timeout_is_not_made_twice(
    post: Callable[..., Any], github_standin: Any, deps: Any, control: Worker
) -> None:
    gh = github_standin
    n = new_issue(gh)
    comments = f"/repos/{REPO}/issues/{n}/comments"
    # GitHub creates the status comment and the help reply, but answers after the 1.5 s timeout
    gh.inject("POST", comments, late_answer(2.5), late_answer(2.5))
    assert post("issues", payloads.issues_labeled(gh, REPO, n)).status_code == 202
    wait_for("the job", lambda: deps.store.active_for(REPO, n), 60, [control])
    c = gh.add_comment(REPO, n, "/adapt help", "reader")
    assert post("issue_comment", payloads.issue_comment(gh, REPO, n, c)).status_code == 202
    wait_for("the help reply", lambda: replies(gh, n), 60, [control])
    wait_for("both deliveries applied", lambda: pending(deps) == 0, 30, [control])
    time.sleep(2.0)
    assert len(gh.requests_to("POST", comments)) == 2  # one POST each: found again, not re-posted
    assert len(status_comments(gh, n)) == 1
    (reply,) = replies(gh, n)
    assert "/adapt run" in reply["body"]


def test_redis_stopped_while_a_delivery_arrives_answers_fast_and_the_job_exists_later(
    post: Callable[..., Any], github_standin: Any, deps: Any, control: Worker, redis_server: Any
) -> None:
    gh = github_standin
    n = new_issue(gh)
    redis_server.stop()
    try:
        t0 = time.monotonic()
        r = post("issues", payloads.issues_labeled(gh, REPO, n), delivery="spooled-1")
        took = time.monotonic() - t0
        assert r.status_code == 202 and r.json()["status"] == "spooled", r.text
        assert took < 5.0, took  # GitHub gives up after 10 s (0.1 s measured on a quiet machine)
    finally:
        redis_server.start()  # same port and append-only directory
    job = wait_for("the spooled delivery as a job", lambda: deps.store.active_for(REPO, n), 90, [control])
    wait_for("its status comment", lambda: status_comments(gh, n), 60, [control])
    assert job.repo == REPO
    # GitHub's redelivery of the same GUID later is a duplicate: still one job, one comment
    again = post("issues", payloads.issues_labeled(gh, REPO, n), delivery="spooled-1")
    assert again.json()["status"] == "duplicate"
    assert len(status_comments(gh, n)) == 1


def test_redis_restart_while_a_status_command_applies_is_answered_without_the_visibility_timeout(
    post: Callable[..., Any],
    github_standin: Any,
    deps: Any,
    app_env: dict[str, str],
    redis_server: Any,
    tmp_path: Path,
) -> None:
    """The control worker is inside a GitHub call for this command when Redis restarts: it exits
    (run_id changed) before finishing, its message stays in kombu's `unacked` for the 7,800 s
    visibility timeout, and only the re-arm on restart gets the command answered."""
    gh = github_standin
    n = new_issue(gh)
    c = gh.add_comment(REPO, n, "/adapt status", "reader")
    # the 👀 reaction is applied at once but answered after 8 s (within this worker's timeout)
    reactions = f"/repos/{REPO}/issues/comments/{c['id']}/reactions"
    gh.inject("POST", reactions, late_answer(8.0))
    env = {**app_env, **{f"ADAPT_BOT_{k.upper()}": str(v) for k, v in FAST.items()}}
    env["ADAPT_BOT_GITHUB_TIMEOUT_S"] = "20"
    control = Worker(["--control"], env, tmp_path / "control.log")
    control.wait_ready()
    try:
        assert post("issue_comment", payloads.issue_comment(gh, REPO, n, c)).status_code == 202
        wait_for("the worker inside the call", lambda: [a for a in gh.arrivals if a[1] == reactions], 30)
        t0 = time.monotonic()
        redis_server.restart()
        (reply,) = wait_for("the answer", lambda: replies(gh, n), 90, [control])
        took = time.monotonic() - t0
        assert took < 60, took  # the broker's visibility timeout is 7,800 s
        assert "/adapt status" in reply["body"]  # the answer to this command
        wait_for("the ledger to empty", lambda: pending(deps) == 0, 30, [control])
        assert b"restarting this control worker" in control.log.read_bytes()  # it died mid-apply
        time.sleep(2.0)
        assert len(replies(gh, n)) == 1
        assert deps.redis.hget("adapt:metrics:intents", "rearmed") is not None
    finally:
        control.stop()


def test_a_redelivery_of_a_delivery_that_was_given_up_arms_it_again(
    post: Callable[..., Any], github_standin: Any, deps: Any, drain: Callable[[], list[Any]]
) -> None:
    """Dedupe remembers what was applied, not what was seen: GitHub's redelivery (same GUID) of a
    delivery the bot gave up on after its retry window runs it, once."""
    import bot.tasks
    from bot import ledger

    gh = github_standin
    n = new_issue(gh)
    body = payloads.issues_labeled(gh, REPO, n)
    assert post("issues", body, delivery="lost-1").json()["status"] == "accepted"
    (entry,) = [e for e, _ in deps.redis.zrange(ledger.PENDING, 0, -1, withscores=True)]
    deps.redis.rpop("control")  # its message is lost with a dead worker...
    ledger.Ledger(deps.redis).give_up(entry)  # ...and it was given up after its retry window
    assert deps.store.active_for(REPO, n) is None
    assert post("issues", body, delivery="lost-1").json()["status"] == "rearmed"
    assert any(o.startswith("started job ") for o in drain())
    assert deps.store.active_for(REPO, n) is not None and len(status_comments(gh, n)) == 1
    # applied now: a further redelivery is a plain duplicate, and a stale message does nothing
    assert post("issues", body, delivery="lost-1").json()["status"] == "duplicate"
    assert bot.tasks.apply_intent(entry, "not-the-owner") in (["stale"], ["already applied"])
    assert len(status_comments(gh, n)) == 1


def test_a_delivery_that_never_reached_us_is_redelivered_by_the_control_workers_sweep(
    github_standin: Any, deps: Any, bot_server: Any, control: Worker
) -> None:
    """Every web process down when GitHub sent it: GitHub logs a failed delivery; the control
    worker's sweep (App webhook deliveries API) asks for it again and it becomes a job, once."""
    gh = github_standin
    gh.hook_url, gh.hook_secret = bot_server.url + "/webhook", WEBHOOK_SECRET
    n = new_issue(gh)
    nobody = f"http://127.0.0.1:{free_port()}/webhook"  # what GitHub met: nothing listening
    lost = deliver(gh, "issues", payloads.issues_labeled(gh, REPO, n), url=nobody)
    assert lost["status_code"] == 0
    job = wait_for("the redelivered label as a job", lambda: deps.store.active_for(REPO, n), 60, [control])
    wait_for("its status comment", lambda: status_comments(gh, n), 30, [control])
    again = [d for d in gh.hook_deliveries if d["guid"] == lost["guid"] and d["redelivery"]]
    assert [d["status_code"] for d in again] == [202]  # asked for once, answered 2xx
    time.sleep(3.0)  # three more sweeps: the GUID is known now, nothing is asked again
    assert len([d for d in gh.hook_deliveries if d["guid"] == lost["guid"]]) == 2
    assert gh.requests_to("POST", "/app/hook/deliveries/*/attempts")[0].auth == "jwt"
    assert len(status_comments(gh, n)) == 1 and deps.store.get(job.id) is not None


def test_a_permanent_answer_drops_the_intent_with_a_reason(
    post: Callable[..., Any],
    github_standin: Any,
    deps: Any,
    drain: Callable[[], list[Any]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    from bot import ledger

    gh = github_standin
    n = new_issue(gh)
    gh.inject("GET", f"/repos/{REPO}/contents/*", *[_forbidden()] * 1)
    assert post("issues", payloads.issues_labeled(gh, REPO, n)).status_code == 202
    with caplog.at_level("ERROR"):
        (outcome,) = drain()
    assert outcome.startswith("dropped: ") and "403" in outcome
    assert "dropped for good" in caplog.text and "403" in caplog.text
    assert deps.redis.zcard(ledger.PENDING) == 0 and deps.store.active_for(REPO, n) is None


def _forbidden() -> Any:
    from tests.standin.state import Fault

    return Fault(403, body={"message": "Resource not accessible by integration"})


def test_which_failed_deliveries_are_asked_for_again() -> None:
    import datetime as dt

    from bot.api.redeliver import failed_unknown

    now = dt.datetime.now(dt.UTC)

    def ago(minutes: int) -> str:
        return (now - dt.timedelta(minutes=minutes)).isoformat().replace("+00:00", "Z")

    rows = [
        {"id": 1, "guid": "a", "status_code": 0, "delivered_at": ago(5)},  # nothing listened
        {"id": 2, "guid": "a", "status_code": 502, "delivered_at": ago(4)},  # a proxy's 502: newest
        {"id": 3, "guid": "b", "status_code": 401, "delivered_at": ago(5)},  # our own verdict stands
        {"id": 4, "guid": "c", "status_code": 504, "delivered_at": ago(5)},  # we accepted a later try
        {"id": 5, "guid": "d", "status_code": 500, "delivered_at": ago(120)},  # outside the window
        {"id": 6, "guid": "e", "status_code": 202, "delivered_at": ago(5)},  # fine
    ]
    assert [d["id"] for d in failed_unknown(rows, {"c"}, now - dt.timedelta(hours=1))] == [2]


def test_one_500_on_the_repo_config_read_does_not_drop_the_label(
    post: Callable[..., Any], github_standin: Any, deps: Any, drain: Callable[[], list[Any]]
) -> None:
    from tests.standin.state import Fault

    gh = github_standin
    n = new_issue(gh)
    gh.inject("GET", f"/repos/{REPO}/contents/*", Fault(500, body={"message": "Server Error"}))
    assert post("issues", payloads.issues_labeled(gh, REPO, n)).status_code == 202
    assert any(o.startswith("started job ") for o in drain())
    assert len(status_comments(gh, n)) == 1


def test_writes_are_throttled_per_installation(app_settings: Any, github_standin: Any, deps: Any) -> None:
    """One installation's writes are spaced; another installation's are not held behind them."""
    import threading

    from bot.github import GitHubClient

    gh = github_standin
    other = "other-org/models"
    gh.add_repo(other, 88)
    na, nb = new_issue(gh), int(gh.add_issue(other, "t")["number"])
    client = GitHubClient(app_settings.model_copy(update={"write_spacing_s": 0.5}), deps.redis)
    a, b = client.installation(77), client.installation(88)
    a.get_issue(REPO, na), b.get_issue(other, nb)  # tokens first: only the writes are timed

    def writes(inst: Any, repo: str, n: int) -> None:
        for i in range(3):
            inst.create_comment(repo, n, f"w{i}")

    t0 = time.monotonic()
    threads = [
        threading.Thread(target=writes, args=(a, REPO, na)),
        threading.Thread(target=writes, args=(b, other, nb)),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    took = time.monotonic() - t0
    for repo, n in ((REPO, na), (other, nb)):
        times = [r.at for r in gh.requests_to("POST", f"/repos/{repo}/issues/{n}/comments")]
        # slots are reserved 0.5 s apart; arrival jitters with scheduling: check the span and gaps
        assert len(times) == 3 and times[-1] - times[0] >= 0.8, times
        assert min(t2 - t1 for t1, t2 in itertools.pairwise(times)) >= 0.2, times
    assert took < 2.2, took  # one global throttle would need >= 2.5 s for these six writes


def test_a_rerun_retried_after_a_github_error_past_its_transition_is_not_refused(
    post: Callable[..., Any], github_standin: Any, deps: Any, control: Worker
) -> None:
    """The rerun moves the job, then editing the status comment fails (two 503s: past the write
    retries) and the intent is retried. The retry finishes the rerun; it does not refuse it as
    "already running", and the stage is sent once."""
    from tests.standin.state import unavailable

    gh = github_standin
    n = new_issue(gh)
    assert post("issues", payloads.issues_labeled(gh, REPO, n)).status_code == 202
    job = wait_for("the job", lambda: deps.store.active_for(REPO, n), 60, [control])
    wait_for("its status comment", lambda: deps.store.get(job.id).status_comment_id, 30, [control])
    c = gh.add_comment(REPO, n, "/adapt cancel", "maintainer")
    post("issue_comment", payloads.issue_comment(gh, REPO, n, c))
    wait_for("the cancel", lambda: deps.store.get(job.id).state == "cancelled", 60, [control])
    status_id = deps.store.get(job.id).status_comment_id
    gh.inject("PATCH", f"/repos/{REPO}/issues/comments/{status_id}", unavailable(), unavailable())
    c = gh.add_comment(REPO, n, "/adapt rerun analyze", "maintainer")
    post("issue_comment", payloads.issue_comment(gh, REPO, n, c))
    wait_for("the rerun reply", lambda: [r for r in replies(gh, n) if "analyze" in r["body"]], 60, [control])
    wait_for("the ledger to empty", lambda: pending(deps) == 0, 30, [control])
    again = deps.store.get(job.id)
    assert again.state == "running:analyze" and again.attempts["analyze"] == 2, [
        r["body"][:300] for r in replies(gh, n)
    ]
    assert not [r for r in replies(gh, n) if "refused" in r["body"].lower() or "still running" in r["body"]]
    patches = [r.status for r in gh.requests_to("PATCH", f"/repos/{REPO}/issues/comments/{status_id}")]
    assert patches.count(503) == 2 and patches[-1] == 200  # the rerun's edit failed, then went through
