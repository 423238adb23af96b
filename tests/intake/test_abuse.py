"""Issue 12's abuse cases end to end: real webhook payloads into the web app on a real server,
intents applied by the control task bodies (real Celery messages, real Redis), answered on the
GitHub stand-in — the assertions are about what GitHub ends up showing."""

from __future__ import annotations

import concurrent.futures
import time
from collections.abc import Callable
from typing import Any

from bot import quotas
from tests.intake.test_replies import assert_inert
from tests.plugins.standin import REPO
from tests.standin import payloads


def new_issue(gh: Any, i: int = 0) -> int:
    return int(gh.add_issue(REPO, f"[New model] Qwen3-8B #{i}", "model: Qwen/Qwen3-8B")["number"])


def ours(gh: Any, n: int) -> list[dict[str, Any]]:
    return [c for c in gh.comments_on(REPO, n) if c.get("performed_via_github_app")]


def status_comments(gh: Any, n: int) -> list[dict[str, Any]]:
    return [c for c in ours(gh, n) if "<!-- adapt-bot:status job=" in c["body"]]


def replies(gh: Any, n: int) -> list[str]:
    return [c["body"] for c in ours(gh, n) if "<!-- adapt-bot:status" not in c["body"]]


def comment(post: Callable[..., Any], gh: Any, n: int, text: str, user: str) -> tuple[dict[str, Any], Any]:
    c = gh.add_comment(REPO, n, text, user)
    r = post("issue_comment", payloads.issue_comment(gh, REPO, n, c))
    assert r.status_code == 202, r.text
    return dict(c), r.json()


def edit(post: Callable[..., Any], gh: Any, n: int, c: dict[str, Any], text: str, editor: str) -> Any:
    """What GitHub sends when `editor` changes comment `c` to `text` (issue_comment.edited)."""
    before = gh.comments[c["id"]]["body"]
    gh.comments[c["id"]]["body"] = text
    p = payloads.issue_comment(gh, REPO, n, gh.comments[c["id"]], action="edited")
    p["sender"] = gh.user(editor)
    p["changes"] = {"body": {"from": before}}
    r = post("issue_comment", p)
    assert r.status_code == 202, r.text
    return r.json()


# -- labels need the permission /adapt run needs --------------------------------------------------
def test_a_triage_users_label_starts_nothing_and_says_why(
    post: Callable[..., Any], github_standin: Any, deps: Any, drain: Callable[[], list[Any]]
) -> None:
    gh = github_standin
    n = new_issue(gh)
    assert post("issues", payloads.issues_labeled(gh, REPO, n, sender="triager")).status_code == 202
    assert drain() == ["refused: triager has triage, needs write"]
    assert deps.store.active_for(REPO, n) is None and status_comments(gh, n) == []
    (reply,) = replies(gh, n)
    assert reply.startswith("@triager") and "`adapt-model` label starts an adaptation job only" in reply
    assert "**write**" in reply and "**triage**" in reply
    # the same user's /adapt run is refused the same way; a maintainer's label starts the job
    comment(post, gh, n, "/adapt run", "triager")
    assert drain() == ["refused: triager has triage, needs write"]
    gh.repos[REPO].issues[n]["updated_at"] = "2030-01-01T00:00:00Z"
    post("issues", payloads.issues_labeled(gh, REPO, n, sender="maintainer"))
    assert drain()[0].startswith("started job ")
    assert len(status_comments(gh, n)) == 1


def test_the_label_permission_is_per_repository(
    post: Callable[..., Any], github_standin: Any, deps: Any, drain: Callable[[], list[Any]]
) -> None:
    gh = github_standin
    gh.repos[REPO].files[".github/adapt-bot.yml"] = "permission: admin\n"
    n = new_issue(gh)
    post("issues", payloads.issues_labeled(gh, REPO, n, sender="maintainer"))
    assert drain() == ["refused: maintainer has write, needs admin"]
    gh.repos[REPO].issues[n]["updated_at"] = "2030-01-01T00:00:00Z"
    post("issues", payloads.issues_labeled(gh, REPO, n, sender="admin-user"))
    assert drain()[0].startswith("started job ")


# -- edits ----------------------------------------------------------------------------------------
def test_fixing_a_typo_in_a_strangers_comment_does_not_run_it_as_the_editor(
    post: Callable[..., Any], github_standin: Any, deps: Any, drain: Callable[[], list[Any]]
) -> None:
    gh = github_standin
    n = new_issue(gh)
    c, answer = comment(post, gh, n, "please /adpat run this", "stranger")
    assert answer["status"] == "ignored"
    answer = edit(post, gh, n, c, "please\n/adapt run", editor="maintainer")
    assert answer["intents"] == ["start"]
    assert drain() == ["refused: stranger has none, needs write"]  # the author's rights, not the editor's
    assert deps.store.active_for(REPO, n) is None and status_comments(gh, n) == []


def test_an_edit_by_someone_without_the_level_runs_nothing_it_added(
    post: Callable[..., Any], github_standin: Any, deps: Any, drain: Callable[[], list[Any]]
) -> None:
    gh = github_standin
    n = new_issue(gh)
    c, _ = comment(post, gh, n, "thanks!", "maintainer")
    edit(post, gh, n, c, "thanks!\n/adapt run", editor="triager")
    assert drain() == ["refused: triager has triage, needs write"]
    assert deps.store.active_for(REPO, n) is None
    assert "edited by triager" in replies(gh, n)[-1]


def test_an_edit_runs_only_the_lines_it_added(
    post: Callable[..., Any], github_standin: Any, deps: Any, drain: Callable[[], list[Any]]
) -> None:
    gh = github_standin
    n = new_issue(gh)
    c, _ = comment(post, gh, n, "/adapt help", "maintainer")
    assert drain() == ["help sent"]
    # the GitHub example edit, aimed at this comment: the old line stays, one is added
    assert edit(post, gh, n, c, "/adapt help\n/adapt run --tp 2", editor="maintainer")["intents"] == ["start"]
    assert drain()[0].startswith("started job ")
    assert deps.store.active_for(REPO, n).options.tp == 2
    # an edit that only changes prose runs nothing again
    assert (
        edit(post, gh, n, c, "/adapt help\n/adapt run --tp 2\nthanks", editor="maintainer")["status"]
        == "ignored"
    )
    assert len([r for r in replies(gh, n) if "adapt-bot commands" in r]) == 1


# -- hidden lines, bad numbers, floods --------------------------------------------------------------
def test_hidden_commands_do_nothing(post: Callable[..., Any], github_standin: Any, deps: Any) -> None:
    gh = github_standin
    n = new_issue(gh)
    for text in ["<!-- /adapt run -->", "<!--\n/adapt run\n-->", "see\u2028/adapt run", "x\x85/adapt run"]:
        _, answer = comment(post, gh, n, text, "maintainer")
        assert answer["status"] == "ignored", text
    assert ours(gh, n) == [] and deps.store.active_for(REPO, n) is None


def test_a_bad_number_gets_a_reply_and_the_other_commands_still_run(
    post: Callable[..., Any], github_standin: Any, deps: Any, drain: Callable[[], list[Any]]
) -> None:
    gh = github_standin
    n = new_issue(gh)
    _, answer = comment(post, gh, n, "/adapt run --tp ²\n/adapt status", "maintainer")
    assert answer["intents"] == ["invalid", "status"]
    outcomes = drain()
    assert (
        outcomes[0].startswith("invalid command: `--tp` must be a whole number") and outcomes[1] == "no job"
    )
    bad, status = replies(gh, n)
    assert "digits 0-9" in bad and "> `/adapt run --tp ²`" in bad and "no adaptation job" in status


def test_120_commands_in_one_comment_make_three_intents_and_one_refusal(
    post: Callable[..., Any], github_standin: Any, deps: Any, drain: Callable[[], list[Any]]
) -> None:
    gh = github_standin
    n = new_issue(gh)
    body = "\n".join(f"/adapt run --tp {2 ** (i % 7)} [x](https://evil.example/{i}) #{i}" for i in range(120))
    _, answer = comment(post, gh, n, body, "stranger")
    assert answer["intents"] == ["invalid", "invalid", "invalid", "too_many"]
    drain()
    shown = replies(gh, n)
    assert len(shown) == 4  # was 91+
    (refusal,) = [r for r in shown if "did not run the other 117" in r]
    assert "…and 112 more" in refusal
    for text in shown:  # the stranger's links and #refs are quoted, never rendered in the App's voice
        assert_inert(text, "stranger")
    assert len(deps.redis.keys("adapt:intent:*")) == 4


# -- quotas --------------------------------------------------------------------------------------
def test_25_labels_in_a_burst_start_only_the_users_quota(
    post: Callable[..., Any], github_standin: Any, deps: Any, drain: Callable[[], list[Any]]
) -> None:
    gh = github_standin
    issues = [new_issue(gh, i) for i in range(25)]
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        codes = list(
            pool.map(lambda n: post("issues", payloads.issues_labeled(gh, REPO, n)).status_code, issues)
        )
    assert codes == [202] * 25
    outcomes = drain(200)
    started = [o for o in outcomes if o.startswith("started job ")]
    refused = [o for o in outcomes if o.startswith("refused: user quota of maintainer is full")]
    assert len(started) == deps.settings.quota_user == 2 and len(refused) == 23
    active = [n for n in issues if deps.store.active_for(REPO, n) is not None]
    assert len(active) == 2
    assert sum(len(status_comments(gh, n)) for n in issues) == 2
    quota_replies = [r for n in issues for r in replies(gh, n) if "per-user quota of maintainer is full" in r]
    assert len(quota_replies) == 23 and all("limit 2" in r for r in quota_replies)
    # a job that ends frees its slot: cancel one, and the next start is admitted
    first = deps.store.active_for(REPO, active[0])
    comment(post, gh, active[0], "/adapt cancel", "maintainer")
    assert drain() == [f"cancel {first.id}: cancelled"]
    waiting = next(n for n in issues if n not in active)
    comment(post, gh, waiting, "/adapt run", "maintainer")
    assert drain()[0].startswith("started job ")


def test_repository_and_installation_quotas(
    post: Callable[..., Any], github_standin: Any, deps: Any, drain: Callable[[], list[Any]]
) -> None:
    gh = github_standin
    gh.repos[REPO].files[".github/adapt-bot.yml"] = "quotas: {repo: 1, user: 50}\n"
    a, b = new_issue(gh, 1), new_issue(gh, 2)
    post("issues", payloads.issues_labeled(gh, REPO, a, sender="maintainer"))
    assert drain()[0].startswith("started job ")
    post("issues", payloads.issues_labeled(gh, REPO, b, sender="admin-user"))
    assert drain() == ["refused: repo quota of octo-org/vllm-ascend is full (1 active jobs, limit 1)"]
    reply = replies(gh, b)[-1]
    job = deps.store.active_for(REPO, a)
    assert "quota of this repository is full" in reply and f"job `{job.id}` on #{a}" in reply
    assert deps.store.active_for(REPO, b) is None


def test_admission_is_atomic_across_concurrent_workers(deps: Any) -> None:
    limits = quotas.Limits(user=2, repo=100, installation=100)

    def admit(i: int) -> bool:
        got = quotas.admit(
            deps.redis, job_id=f"job-{i}", user="u", repo=REPO, installation_id=77, limits=limits
        )
        return got is None

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        admitted = list(pool.map(admit, range(64)))
    assert admitted.count(True) == 2
    # members with no job record are dropped only after the grace period
    later = time.time() + quotas.GRACE_S + 1
    kw: dict[str, Any] = {"user": "u", "repo": REPO, "installation_id": 77, "limits": limits}
    assert quotas.admit(deps.redis, job_id="late", now=later, **kw) is None
    assert quotas.admit(deps.redis, job_id="later", now=later, **kw) is None
    full = quotas.admit(deps.redis, job_id="latest", now=later, **kw)  # the two new ones hold it
    assert full is not None and full.scope == "user" and sorted(full.jobs) == ["late", "later"]
