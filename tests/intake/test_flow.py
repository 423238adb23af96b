"""Webhook -> intent -> control task -> GitHub stand-in, with real Redis and real Celery messages.

The control tasks run directly (their messages are taken off the real `control` queue by `drain`);
runner stages are represented by their stored results. Checks: status comment created once and
edited in place, replies and reactions, permission refusals, hostile model ids, repo config,
check-run buttons, GitHub faults retried without duplicates.
"""

from __future__ import annotations

import importlib.util
import itertools
import json
from collections.abc import Callable
from typing import Any

import pytest

from bot.comments import marker
from bot.github import RetryLater
from tests.intake.conftest import queued, stage_requests
from tests.intake.test_runner_task import request
from tests.plugins.standin import REPO
from tests.standin import payloads
from tests.standin.state import bad_gateway, secondary_rate_limit, too_many_requests


def new_issue(gh: Any, body: str = "Please support it.\n\nmodel: Qwen/Qwen3-8B") -> int:
    return int(gh.add_issue(REPO, "[New model] Qwen3-8B", body)["number"])


def label(post: Callable[..., Any], gh: Any, n: int, **kw: Any) -> Any:
    return post("issues", payloads.issues_labeled(gh, REPO, n, **kw))


def command(post: Callable[..., Any], gh: Any, n: int, text: str, user: str = "maintainer") -> dict[str, Any]:
    c = gh.add_comment(REPO, n, text, user)
    r = post("issue_comment", payloads.issue_comment(gh, REPO, n, c))
    assert r.status_code == 202, r.text
    return dict(c)


def ours(gh: Any, n: int) -> list[dict[str, Any]]:
    return [c for c in gh.comments_on(REPO, n) if c.get("performed_via_github_app")]


def status_comments(gh: Any, n: int) -> list[dict[str, Any]]:
    return [c for c in ours(gh, n) if "<!-- adapt-bot:status job=" in c["body"]]


def replies(gh: Any, n: int) -> list[str]:
    return [c["body"] for c in ours(gh, n) if "<!-- adapt-bot:status" not in c["body"]]


def finish_stage(deps: Any, job_id: str, stage: str, status: str = "passed", **kw: Any) -> Any:
    """What a runner leaves behind: the stored StageResult, then the control task runs."""
    import bot.tasks
    from runners.contracts import StageResult, utcnow

    job = deps.store.get(job_id)
    attempt = job.attempts[stage]
    deps.store.save_result(
        job_id, StageResult(stage=stage, status=status, attempt=attempt, finished_at=utcnow(), **kw)
    )
    return bot.tasks.stage_finished(job_id, stage, attempt)


def test_label_starts_a_job_and_posts_one_status_comment(
    post: Callable[..., Any], github_standin: Any, deps: Any, drain: Callable[[], list[Any]]
) -> None:
    from githubkit.compat import type_validate_python
    from githubkit_schemas.latest.models import IssueComment

    gh = github_standin
    n = new_issue(gh)
    assert label(post, gh, n).status_code == 202
    assert drain()[0].startswith("started job ")
    job = deps.store.active_for(REPO, n)
    assert job is not None and job.state == "running:analyze"
    assert job.options.model == "Qwen/Qwen3-8B" and job.options.profile == "cpu" and job.pool == "cpu"
    assert job.installation_id == 77
    (comment,) = status_comments(gh, n)
    assert comment["id"] == job.status_comment_id
    assert comment["body"].startswith(marker(job.id))
    assert "Running **analyze**" in comment["body"] and "`Qwen/Qwen3-8B`" in comment["body"]
    type_validate_python(IssueComment, {k: v for k, v in comment.items() if not k.startswith("_")})
    # the first stage went to the pool's queue as plain ids
    assert stage_requests(deps.redis) == [(job.id, "analyze", 1)]
    # the installation token came from the App JWT exchange
    assert gh.requests_to("POST", "/app/installations/77/access_tokens")[0].auth == "jwt"
    assert all(r.auth == "token:77" for r in gh.requests_to("POST", "/repos/*"))


def test_status_comment_is_edited_in_place_at_every_transition(
    post: Callable[..., Any], github_standin: Any, deps: Any, drain: Callable[[], list[Any]]
) -> None:
    gh = github_standin
    n = new_issue(gh)
    label(post, gh, n)
    drain()
    job = deps.store.active_for(REPO, n)
    assert finish_stage(deps, job.id, "analyze") == "running:dummy-gate"
    assert stage_requests(deps.redis)[-1] == (job.id, "dummy-gate", 1)
    finish_stage(
        deps,
        job.id,
        "dummy-gate",
        "failed",
        reason="false-ready",
        diagnosis="first completion killed the engine",
        next_step="/adapt rerun dummy-gate after the fix",
    )
    (comment,) = status_comments(gh, n)
    assert comment["id"] == job.status_comment_id
    body = comment["body"]
    assert "Failed at **dummy-gate**" in body and "first completion killed the engine" in body
    assert "| analyze | ✅ passed" in body and "/adapt rerun dummy-gate after the fix" in body
    assert len(gh.requests_to("POST", f"/repos/{REPO}/issues/{n}/comments")) == 1
    assert len(gh.requests_to("PATCH", f"/repos/{REPO}/issues/comments/{comment['id']}")) >= 2
    # a redelivered stage_finished changes nothing and posts nothing
    before = len(gh.requests)
    import bot.tasks

    assert bot.tasks.stage_finished(job.id, "dummy-gate", 1) == "stale"
    assert len(gh.requests) == before
    assert deps.store.get(job.id).state == "failed:dummy-gate"


def test_read_only_user_is_refused_with_the_permission_needed(
    post: Callable[..., Any], github_standin: Any, deps: Any, drain: Callable[[], list[Any]]
) -> None:
    gh = github_standin
    n = new_issue(gh)
    c = command(post, gh, n, "/adapt run", user="reader")
    assert drain()[0].startswith("refused: reader has read")
    assert deps.store.active_for(REPO, n) is None
    (reply,) = replies(gh, n)
    assert (
        reply.startswith("@reader")
        and "> `/adapt run`" in reply  # untrusted text is quoted as a code span
        and "**write**" in reply
        and "**read**" in reply
    )
    assert gh.reactions_on(c["id"]) == ["eyes", "confused"]
    command(post, gh, n, "/adapt cancel", user="stranger")  # not a collaborator at all
    assert drain()[0].startswith("refused: stranger has none")


def test_anyone_may_ask_for_status_and_help(
    post: Callable[..., Any], github_standin: Any, drain: Callable[[], list[Any]]
) -> None:
    gh = github_standin
    n = new_issue(gh)
    command(post, gh, n, "/adapt status\n/adapt help rerun", user="reader")
    assert drain() == ["no job", "help sent"]
    no_job, help_text = replies(gh, n)
    assert "no adaptation job" in no_job
    assert "/adapt rerun <stage>" in help_text and "real-gate" in help_text


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("/adapt deploy now", "unknown subcommand 'deploy'"),
        ("/adapt run --tp 3", "power of two"),
        ("/adapt run --max-model-len 99999999", "between 256 and 1048576"),
        ("/adapt rerun everything", "is not a stage"),
    ],
)
def test_bad_commands_get_what_was_wrong_and_usage(
    post: Callable[..., Any],
    github_standin: Any,
    deps: Any,
    drain: Callable[[], list[Any]],
    text: str,
    fragment: str,
) -> None:
    gh = github_standin
    n = new_issue(gh)
    c = command(post, gh, n, text)
    drain()
    (reply,) = replies(gh, n)
    assert fragment in reply and "`/adapt" in reply  # the usage follows the error
    assert gh.reactions_on(c["id"]) == ["eyes", "confused"]
    assert deps.store.active_for(REPO, n) is None


@pytest.mark.parametrize("model", ["../../etc/passwd", "a;rm -rf /", "/models/../../etc", "`$(reboot)`/x"])
def test_hostile_model_ids_start_nothing(
    post: Callable[..., Any], github_standin: Any, deps: Any, drain: Callable[[], list[Any]], model: str
) -> None:
    gh = github_standin
    n = new_issue(gh, f"model: {model}")
    label(post, gh, n)
    assert drain()[0].startswith("no model")
    assert deps.store.active_for(REPO, n) is None
    (reply,) = replies(gh, n)
    assert "`model: <org>/<name>`" in reply and "`model: Qwen/Qwen3-8B`" in reply
    assert "`$(reboot)`" not in reply  # untrusted text cannot open code spans
    assert queued(deps.redis, "cpu") == []


def test_issue_without_a_model_says_what_to_add(
    post: Callable[..., Any], github_standin: Any, drain: Callable[[], list[Any]]
) -> None:
    gh = github_standin
    n = new_issue(gh, "Please add support for the new model, thanks!")
    label(post, gh, n)
    drain()
    (reply,) = replies(gh, n)
    assert "could not tell which model" in reply and "model: Qwen/Qwen3-8B" in reply


def test_run_options_and_second_run_while_active(
    post: Callable[..., Any], github_standin: Any, deps: Any, drain: Callable[[], list[Any]]
) -> None:
    gh = github_standin
    n = new_issue(gh)
    c = command(post, gh, n, "/adapt run --hardware a3 --tp 16 --max-model-len 32768 --features mtp")
    drain()
    job = deps.store.active_for(REPO, n)
    assert job.options.hardware == "a3" and job.options.tp == 16 and job.options.max_model_len == 32768
    assert (
        job.options.features == ["mtp"]
        and job.requested_by == "maintainer"
        and job.trigger_comment_id == c["id"]
    )
    assert gh.reactions_on(c["id"]) == ["eyes", "rocket"]
    command(post, gh, n, "/adapt run")
    assert drain()[0] == f"refused: active job {job.id}"
    assert "already has an active job" in replies(gh, n)[-1]
    assert len(status_comments(gh, n)) == 1


def test_status_cancel_and_rerun(
    post: Callable[..., Any],
    github_standin: Any,
    deps: Any,
    drain: Callable[[], list[Any]],
    runner_settings: Any,
) -> None:
    gh = github_standin
    n = new_issue(gh)
    label(post, gh, n)
    drain()
    job = deps.store.active_for(REPO, n)
    command(post, gh, n, "/adapt status", user="reader")
    assert drain() == [f"status of {job.id}: running:analyze"]
    assert "is **running:analyze**" in replies(gh, n)[-1]
    command(post, gh, n, "/adapt cancel")
    assert drain() == [f"cancel {job.id}: cancelled"]  # not picked up by a runner yet: ends at once
    assert deps.store.cancel_set(job)
    assert "🚫 Cancelled" in status_comments(gh, n)[0]["body"]
    # the runner that now receives the queued stage sees the cancel flag and starts nothing
    from runners.host.task import run_stage

    assert run_stage(request(deps, job)) == "cancelled"
    command(post, gh, n, "/adapt rerun analyze")
    assert drain() == [f"rerun analyze of {job.id}"]
    again = deps.store.get(job.id)
    assert (
        again.state == "running:analyze" and again.attempts["analyze"] == 2 and not deps.store.cancel_set(job)
    )
    assert stage_requests(deps.redis)[-1] == (job.id, "analyze", 2)
    assert len(status_comments(gh, n)) == 1
    command(post, gh, n, "/adapt rerun capacity")
    assert drain()[0].startswith("refused: analyze is still running")
    assert "still running" in replies(gh, n)[-1]


def test_rate_limits_and_5xx_are_retried_without_duplicate_comments(
    post: Callable[..., Any], github_standin: Any, deps: Any, drain: Callable[[], list[Any]]
) -> None:
    gh = github_standin
    n = new_issue(gh)
    path = f"/repos/{REPO}/issues/{n}/comments"
    gh.inject("POST", path, bad_gateway(), secondary_rate_limit(1))
    label(post, gh, n)
    drain()
    posts = gh.requests_to("POST", path)
    assert [r.status for r in posts] == [502, 403, 201]
    assert posts[2].at - posts[1].at >= 0.9  # waited for retry-after
    assert len(status_comments(gh, n)) == 1
    job = deps.store.active_for(REPO, n)
    gh.inject("PATCH", "/repos/*/issues/comments/*", too_many_requests(1), bad_gateway())
    finish_stage(deps, job.id, "analyze")
    patches = gh.requests_to("PATCH", f"/repos/{REPO}/issues/comments/{job.status_comment_id}")
    assert [r.status for r in patches][-3:] == [429, 502, 200]
    assert "| analyze | ✅ passed" in status_comments(gh, n)[0]["body"]
    assert len(status_comments(gh, n)) == 1


def test_long_retry_after_hands_back_to_the_task_queue(
    app_settings: Any, github_standin: Any, deps: Any
) -> None:
    gh = github_standin
    n = new_issue(gh)
    gh.inject("POST", f"/repos/{REPO}/issues/{n}/comments", secondary_rate_limit(600))
    client = deps.github.installation(77)
    with pytest.raises(RetryLater) as info:
        client.create_comment(REPO, n, "hello")
    assert info.value.wait_s == 600
    assert ours(gh, n) == []


def test_writes_are_spaced_across_clients(app_settings: Any, github_standin: Any, deps: Any) -> None:
    from bot.github import GitHubClient

    gh = github_standin
    n = new_issue(gh)
    spaced = app_settings.model_copy(update={"write_spacing_s": 0.3})
    a = GitHubClient(spaced, deps.redis).installation(77)
    b = GitHubClient(spaced, deps.redis).installation(77)
    a.get_issue(REPO, n), b.get_issue(REPO, n)  # tokens first: the gaps measured are the writes'
    for i in range(3):
        a.create_comment(REPO, n, f"a{i}")
        b.create_comment(REPO, n, f"b{i}")
    times = [r.at for r in gh.requests_to("POST", f"/repos/{REPO}/issues/{n}/comments")]
    # slots are reserved 0.3 s apart across both clients; arrival jitters with scheduling, so
    # check the span (6 writes need >= 5 gaps) and that no two writes arrived together
    assert times[-1] - times[0] >= 1.3, times
    assert min(t2 - t1 for t1, t2 in itertools.pairwise(times)) >= 0.1, times


def test_repo_config_is_read_and_validated(
    post: Callable[..., Any], github_standin: Any, deps: Any, drain: Callable[[], list[Any]]
) -> None:
    gh = github_standin
    gh.repos[REPO].files[".github/adapt-bot.yml"] = (
        "label: please-adapt\npermission: maintain\npools: {a2: a2-8}\nprofiles: {a2: ascend-a2}\n"
    )
    n = new_issue(gh)
    label(post, gh, n)  # the default label is not this repo's trigger
    assert drain()[0] == "ignored: label 'adapt-model' is not 'please-adapt'"
    command(post, gh, n, "/adapt run")  # maintainer has write; this repo wants maintain
    assert drain()[0].startswith("refused: maintainer has write, needs maintain")
    label(post, gh, n, label="please-adapt")  # a label needs the same level as /adapt run
    assert drain()[0].startswith("refused: maintainer has write, needs maintain")
    gh.repos[REPO].issues[n]["updated_at"] = "2030-01-01T00:00:00Z"  # label removed and added again
    label(post, gh, n, label="please-adapt", sender="admin-user")
    drain()
    job = deps.store.active_for(REPO, n)
    assert job.pool == "a2-8" and job.options.profile == "ascend-a2"
    # the webhook now knows this repo's label and drops other labels without enqueuing
    r = label(post, gh, n, label="bug")
    assert r.json()["status"] == "ignored"


def test_broken_repo_config_falls_back_to_defaults_and_says_so(
    post: Callable[..., Any], github_standin: Any, deps: Any, drain: Callable[[], list[Any]]
) -> None:
    gh = github_standin
    gh.repos[REPO].files[".github/adapt-bot.yml"] = "permission: everyone\nsurprise: 1\n"
    n = new_issue(gh)
    label(post, gh, n)
    drain()
    assert deps.store.active_for(REPO, n) is not None
    (reply,) = replies(gh, n)
    assert ".github/adapt-bot.yml" in reply and "permission" in reply and "surprise" in reply


def test_check_run_buttons_send_the_same_intents(
    post: Callable[..., Any], github_standin: Any, deps: Any, drain: Callable[[], list[Any]]
) -> None:
    from runners.contracts import STAGES

    gh = github_standin
    n = new_issue(gh)
    label(post, gh, n)
    drain()
    job = deps.store.active_for(REPO, n)
    for stage in STAGES[:-1]:
        finish_stage(deps, job.id, stage)
    pr = gh.add_issue(
        REPO, "[adapt-bot] Qwen3-8B", "Fixes #1", author="adapt-bot-test[bot]", pull_request=True
    )["number"]
    deps.store.update(job.id, lambda j: j.model_copy(update={"pr_number": pr}))
    # the real gate's pass asked for the early draft PR; the job has a PR already, so it does nothing
    assert queued(deps.redis, "control") == [
        ("bot.tasks.open_draft_pr", [job.id], {}),
        ("bot.tasks.deliver", [job.id], {}),
    ]
    outcomes = drain()
    assert outcomes[0] == "stale" and outcomes[1] in ("waiting", "succeeded", "failed")
    if importlib.util.find_spec("bot.delivery") is None:
        assert deps.store.get(job.id).state == "waiting"
        assert "delivery" in status_comments(gh, n)[0]["body"]
    r = post("check_run", payloads.check_run_action(gh, REPO, pr, "rerun-real-gate", job.id))
    assert r.json()["intents"] == ["rerun"]
    assert drain() == [f"rerun real-gate of {job.id}"]
    assert deps.store.get(job.id).state == "running:real-gate"
    r = post("check_run", payloads.check_run_action(gh, REPO, pr, "cancel", job.id, sender="reader"))
    assert drain()[0].startswith("refused: reader has read")
    assert "**write**" in replies(gh, pr)[-1]
    # the same commands work as comments on the bot's PR
    command(post, gh, pr, "/adapt cancel")
    assert drain() == [f"cancel {job.id}: cancelled"]
    assert len(status_comments(gh, n)) == 1 and status_comments(gh, pr) == []


def test_installation_events_are_recorded(
    post: Callable[..., Any], deps: Any, drain: Callable[[], list[Any]]
) -> None:
    post("installation", payloads.fixture("installation.created.1"))
    assert drain() == ["installation created recorded"]
    assert json.loads(deps.redis.hget("adapt:installations", "957387"))["account"] == "Codertocat"


def test_remote_code_is_opted_in_per_repository(
    post: Callable[..., Any], github_standin: Any, deps: Any, drain: Callable[[], list[Any]]
) -> None:
    gh = github_standin
    n = new_issue(gh)
    label(post, gh, n)
    drain()
    assert deps.store.active_for(REPO, n).options.trust_remote_code is False  # the default
    gh.repos[REPO].files[".github/adapt-bot.yml"] = "remote_code: {allow: true}\n"
    deps.redis.delete(f"adapt:repo-config:{REPO}")
    m = new_issue(gh)
    label(post, gh, m)
    drain()
    assert deps.store.active_for(REPO, m).options.trust_remote_code is True
