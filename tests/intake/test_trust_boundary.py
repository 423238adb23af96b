"""The trust boundary, against a real redis-server with the ACL users `bot.redis_acl` writes.

A runner of pool `cpu` connects as `runner-cpu` (what the deploy files give a runner host) and
tries everything it must not do: read or write job records, intents, the outbox, the permission
and repo-config caches, other jobs' results and files, other pools' queues and inboxes, the
control queue, list keys, or clear a cancel flag. Then the control plane is handed forged and
oversized results through the inbox and must refuse them (and say so on the issue) without
changing anything a runner does not own.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import redis

from bot import runner_link
from runners.contracts import MAX_FILE_BYTES, RunnerEvent, StageResult
from runners.host import keys
from tests.intake.test_flow import label, new_issue, status_comments
from tests.intake.test_runner_task import inbox, request, started_job
from tests.plugins.standin import REPO


@pytest.fixture
def runner(redis_server: Any, redis_url: str) -> Any:
    client = redis.Redis.from_url(redis_server.runner_url("cpu"), decode_responses=True)
    yield client
    client.close()


def refused(fn: Callable[[], Any]) -> bool:
    try:
        fn()
    except redis.exceptions.NoPermissionError:
        return True
    except redis.exceptions.ResponseError as exc:
        return "NOPERM" in str(exc) or "no permissions" in str(exc)
    return False


def test_runner_user_can_do_its_job_and_nothing_else(deps: Any, runner: Any) -> None:
    job = started_job(deps)
    other = started_job(deps, model="/models/other", issue=4)  # another job of the same pool
    r = deps.redis
    r.set(f"adapt:perm:{REPO}:maintainer", "write")
    r.set(f"adapt:repo-config:{REPO}", "{}")
    r.hset(f"adapt:job:{other.id}:results", "analyze", "{}")
    r.zadd("adapt:outbox", {"i1": 1})
    deps.store.set_cancel(job)

    # allowed: its queue, its attempt claim, its inbox (append only), the cancel flag (read only)
    prefix = keys.pool_prefix("cpu")
    assert runner.lpush(prefix + "cpu", "x") == 1
    assert runner.set(keys.claim("cpu", job.id, "analyze", 1), "me", nx=True, ex=30)
    assert runner.xadd(keys.inbox("cpu"), {"event": "{}"})
    assert runner.exists(keys.cancel_flag("cpu", job.id)) == 1

    forbidden: dict[str, Callable[[], Any]] = {
        "read a job record": lambda: runner.get(f"adapt:job:{job.id}"),
        "rewrite a job record": lambda: runner.set(f"adapt:job:{job.id}", "{}"),
        "read another job's results": lambda: runner.hgetall(f"adapt:job:{other.id}:results"),
        "write a result": lambda: runner.hset(f"adapt:job:{job.id}:results", "analyze", "{}"),
        "write files to commit": lambda: runner.hset(f"adapt:job:{job.id}:files", "x.py", "evil"),
        "read a token": lambda: runner.hgetall(f"adapt:job:{job.id}:tokens"),
        "write an intent": lambda: runner.set("adapt:intent:forged", "{}"),
        "add to the outbox": lambda: runner.zadd("adapt:outbox", {"forged": 1}),
        "read the outbox": lambda: runner.zrange("adapt:outbox", 0, -1),
        "send a control task": lambda: runner.lpush("control", "{}"),
        "poison the permission cache": lambda: runner.set(f"adapt:perm:{REPO}:mallory", "admin"),
        "read the repo config cache": lambda: runner.get(f"adapt:repo-config:{REPO}"),
        "take another pool's work": lambda: runner.rpop(keys.pool_prefix("a2-8") + "a2-8"),
        "report as another pool": lambda: runner.xadd(keys.inbox("a2-8"), {"event": "{}"}),
        "read the inbox": lambda: runner.xrange(keys.inbox("cpu")),
        "clear a cancel flag": lambda: runner.delete(keys.cancel_flag("cpu", job.id)),
        "list keys": lambda: runner.keys("*"),
        "scan keys": lambda: runner.scan(0),
        "read server info": lambda: runner.info(),
        "change the config": lambda: runner.config_set("appendonly", "no"),
        "flush the database": lambda: runner.flushdb(),
        "publish": lambda: runner.publish("celeryev", "x"),
        "run a script on other keys": lambda: runner.eval(
            "return redis.call('get', KEYS[1])", 1, "adapt:outbox"
        ),
    }
    allowed = [what for what, fn in forbidden.items() if not refused(fn)]
    assert allowed == []
    assert r.exists(keys.cancel_flag("cpu", job.id)) == 1
    assert r.zrange("adapt:outbox", 0, -1) == ["i1"]


def _event(deps: Any, job: Any, **fields: Any) -> str:
    req = request(deps, job)
    base = {"kind": "result", "job_id": job.id, "stage": "analyze", "attempt": 1, "token": req["token"]}
    return RunnerEvent.model_validate(base | fields).model_dump_json()


def test_events_without_the_attempts_token_change_nothing(deps: Any, runner: Any) -> None:
    job = started_job(deps)
    good = StageResult(stage="analyze", status="passed")
    forged = {
        "wrong token": _event(deps, job, result=good, token="x" * 32),
        "unknown job": _event(deps, job, result=good, job_id="20990101-deadbeef00"),
        "other attempt": _event(deps, job, result=good, attempt=2),
        "not json": "{{{",
        "not an event": '{"kind": "order", "job_id": "x"}',
    }
    for raw in forged.values():
        runner.xadd(keys.inbox("cpu"), {"event": raw})
    box = inbox(deps)
    assert box.poll_once() == len(forged)
    assert box.follow == []  # type: ignore[attr-defined]
    assert deps.store.get_result(job.id, "analyze") is None
    assert deps.store.get(job.id).state == "running:analyze"
    assert int(deps.redis.hget(runner_link.DROPPED, "cpu")) == len(forged)
    assert deps.redis.xlen(keys.inbox("cpu")) == 0  # handled and removed


@pytest.mark.parametrize(
    ("files", "says"),
    [
        ({".github/workflows/evil.yml": "on: push"}, "unexpected file '.github/workflows/evil.yml'"),
        ({"tests/e2e/models/configs/Qwen3-8B.yaml": "x" * (MAX_FILE_BYTES + 1)}, "over the"),
        ({"tests/e2e/models/configs/Qwen3-8B.yaml": "model_name: other/Model\n"}, "the job is for"),
        (
            {"tests/e2e/models/configs/Qwen3-8B.yaml": "model_name: Qwen/Qwen3-8B\nrun: rm -rf /\n"},
            "unexpected keys run",
        ),
        ({"docs/source/tutorials/models/Qwen3-8B.md": "a\x00b"}, "NUL"),
    ],
)
def test_a_result_with_unexpected_files_is_refused_and_reported_on_the_issue(
    post: Callable[..., Any],
    github_standin: Any,
    deps: Any,
    drain: Callable[[], list[Any]],
    runner: Any,
    files: dict[str, str],
    says: str,
) -> None:
    import bot.tasks
    from tests.intake.test_flow import finish_stage

    gh = github_standin
    n = new_issue(gh)
    label(post, gh, n)
    drain()
    job = deps.store.active_for(REPO, n)
    for stage in ("analyze", "dummy-gate", "features", "real-gate", "capacity", "accuracy"):
        finish_stage(deps, job.id, stage)
    job = deps.store.get(job.id)
    assert job.state == "running:artifacts"
    req = runner_link.request_for(deps.store, job, "artifacts", 1, 600)
    event = RunnerEvent(
        kind="result",
        job_id=job.id,
        stage="artifacts",
        attempt=1,
        token=req.token,
        result=StageResult(stage="artifacts", status="passed"),
        files=files,
    )
    runner.xadd(keys.inbox("cpu"), {"event": event.model_dump_json()})
    box = inbox(deps)
    box.poll_once()
    assert box.follow == [("bot.tasks.stage_finished", (job.id, "artifacts", 1))]  # type: ignore[attr-defined]
    bot.tasks.stage_finished(job.id, "artifacts", 1)
    job = deps.store.get(job.id)
    assert job.state == "failed:artifacts"
    assert deps.store.files(job.id) == {}  # nothing the runner offered is kept for the commit
    result = deps.store.get_result(job.id, "artifacts")
    assert result.reason == "result-refused" and any(says in p for p in result.data["refused"])
    (status,) = status_comments(gh, n)
    assert "refused" in status["body"]


def test_a_well_formed_artifacts_result_is_accepted(deps: Any, runner: Any) -> None:
    job = started_job(deps, model="Qwen/Qwen3-8B")
    job = deps.store.update(
        job.id, lambda j: j.model_copy(update={"state": "running:artifacts", "attempts": {"artifacts": 1}})
    )
    req = runner_link.request_for(deps.store, job, "artifacts", 1, 600)
    files = {
        "tests/e2e/models/configs/Qwen3-8B.yaml": "model_name: Qwen/Qwen3-8B\nhardware: cpu\ntasks: []\n",
        "docs/source/tutorials/models/Qwen3-8B.md": "# Qwen3-8B\n",
        "mkdocs.yml": (
            "nav:\n  - index.md\nmarkdown_extensions:\n  - pymdownx.emoji:\n"
            "      emoji_index: !!python/name:material.extensions.emoji.twemoji\n"
        ),
    }
    event = RunnerEvent(
        kind="result",
        job_id=job.id,
        stage="artifacts",
        attempt=1,
        token=req.token,
        result=StageResult(stage="artifacts", status="passed"),
        files=files,
        reports={"report.zh.md": "报告"},
    )
    runner.xadd(keys.inbox("cpu"), {"event": event.model_dump_json()})
    inbox(deps).poll_once()
    assert deps.store.get_result(job.id, "artifacts").status == "passed"
    assert deps.store.files(job.id) == files
