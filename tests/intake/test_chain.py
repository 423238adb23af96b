"""The job chain through REAL Celery worker processes: a control worker and a `cpu` runner worker
(`adapt-bot worker`), the web app on uvicorn, real Redis and the GitHub stand-in.

Only the `analyze` stage is driven to completion here (the gate stages start a real vllm serve and
are covered by the end-to-end tests); the job is cancelled right after it, or fails in it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.plugins.service import Worker, as_runner_env, wait_for
from tests.plugins.standin import REPO
from tests.standin import payloads


def make_checkpoint(root: Path, name: str, config: bool = True) -> Path:
    from safetensors.numpy import save_file

    d = root / name
    d.mkdir(parents=True)
    if config:
        cfg = {
            "architectures": ["LlamaForCausalLM"],
            "model_type": "llama",
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_attention_heads": 2,
            "num_key_value_heads": 1,
            "num_hidden_layers": 1,
            "vocab_size": 128,
            "max_position_embeddings": 512,
            "torch_dtype": "float32",
            "head_dim": 32,
        }
        (d / "config.json").write_text(json.dumps(cfg))
    save_file(
        {"model.embed_tokens.weight": np.zeros((128, 64), dtype=np.float32)}, str(d / "model.safetensors")
    )
    return d


@pytest.fixture
def chain_env(app_env: dict[str, str], tmp_path: Path) -> dict[str, str]:
    Path(app_env["ADAPT_BOT_MODELS_ROOT"]).mkdir(parents=True, exist_ok=True)
    return app_env


@pytest.fixture
def workers(
    chain_env: dict[str, str], tmp_path: Path, bot_server: Any, redis_server: Any
) -> Iterator[list[Worker]]:
    started = [
        Worker(["--control"], chain_env, tmp_path / "control.log"),
        Worker(["--pool", "cpu"], as_runner_env(chain_env, redis_server), tmp_path / "runner.log"),
    ]
    try:
        for w in started:
            w.wait_ready()
        yield started
    finally:
        for w in started:
            w.stop()


def status_comments(gh: Any, n: int) -> list[dict[str, Any]]:
    return [c for c in gh.comments_on(REPO, n) if "<!-- adapt-bot:status job=" in c["body"]]


def test_label_to_analyze_to_cancel_through_worker_processes(
    post: Callable[..., Any], github_standin: Any, deps: Any, workers: list[Worker], chain_env: dict[str, str]
) -> None:
    gh = github_standin
    make_checkpoint(Path(chain_env["ADAPT_BOT_MODELS_ROOT"]), "tiny-llama")
    n = gh.add_issue(REPO, "[New model] tiny-llama", "model: /models/tiny-llama")["number"]
    t0 = time.monotonic()
    assert post("issues", payloads.issues_labeled(gh, REPO, n)).status_code == 202
    wait_for("the status comment", lambda: status_comments(gh, n), 30, workers)
    first_comment = time.monotonic() - t0
    job = wait_for("analyze to pass", lambda: _job_past(deps, n, "analyze"), 90, workers)
    assert job.stages["analyze"].status == "passed"
    assert job.state == "running:dummy-gate" or job.phase != "running"
    assert (Path(chain_env["ADAPT_BOT_WORK_ROOT"]) / job.id / "results" / "analyze.json").is_file()
    stored = deps.store.get_result(job.id, "analyze")
    assert stored is not None and stored.data.get("architecture") == "LlamaForCausalLM"
    wait_for(
        "the status comment to show analyze passed",
        lambda: "| analyze | ✅ passed" in status_comments(gh, n)[0]["body"],
        30,
        workers,
    )
    cancel = gh.add_comment(REPO, n, "/adapt cancel", "maintainer")
    post("issue_comment", payloads.issue_comment(gh, REPO, n, cancel))
    wait_for("the job to be cancelled", lambda: deps.store.get(job.id).state == "cancelled", 120, workers)
    wait_for(
        "the status comment to say cancelled",
        lambda: "🚫 Cancelled" in status_comments(gh, n)[0]["body"],
        30,
        workers,
    )
    wait_for("reactions", lambda: gh.reactions_on(cancel["id"]) == ["eyes", "rocket"], 30, workers)
    (comment,) = status_comments(gh, n)  # one status comment, edited in place
    assert len(gh.requests_to("POST", f"/repos/{REPO}/issues/{n}/comments")) == 2  # status + cancel reply
    assert len(gh.requests_to("PATCH", f"/repos/{REPO}/issues/comments/{comment['id']}")) >= 2
    assert first_comment < 10


def _job_past(deps: Any, n: int, stage: str) -> Any:
    job = deps.store.latest_for(REPO, n)
    if job is None or stage not in job.stages or job.stages[stage].status in ("queued", "running"):
        return None
    return job


def test_a_failing_stage_reports_its_diagnosis_through_worker_processes(
    post: Callable[..., Any], github_standin: Any, deps: Any, workers: list[Worker], chain_env: dict[str, str]
) -> None:
    gh = github_standin
    make_checkpoint(Path(chain_env["ADAPT_BOT_MODELS_ROOT"]), "broken", config=False)
    n = gh.add_issue(REPO, "[New model] broken", "model: /models/broken")["number"]
    run = gh.add_comment(REPO, n, "/adapt run", "maintainer")
    post("issue_comment", payloads.issue_comment(gh, REPO, n, run))
    job = wait_for("analyze to finish", lambda: _job_past(deps, n, "analyze"), 90, workers)
    job = wait_for(
        "the job to end", lambda: (j := deps.store.get(job.id)) and not j.active and j, 30, workers
    )
    assert job.state == "failed:analyze"
    assert job.message
    body = wait_for(
        "the failure in the status comment", lambda: _with(status_comments(gh, n), "Failed at"), 30, workers
    )
    assert "**What went wrong:**" in body and "**Next step:**" in body
    wait_for(
        "final reaction", lambda: gh.reactions_on(run["id"]) == ["eyes", "rocket", "confused"], 30, workers
    )
    assert len(status_comments(gh, n)) == 1


def _with(comments: list[dict[str, Any]], text: str) -> str | None:
    return next((c["body"] for c in comments if text in c["body"]), None)
