"""The hub pre-flight on the control plane: a labelled issue naming a hub id gets the pre-flight
comment within seconds (headers read over HTTP from the hub stand-in, through huggingface_hub),
the revision is pinned on the job, and only then the runner's analyze stage is sent; a checkpoint
with a blocking defect stops there, before any runner time, with its full report."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.analysis.ckpt import dense_layer, write_config, write_index, write_shard
from tests.intake.conftest import stage_requests
from tests.intake.test_flow import label, ours
from tests.plugins.standin import REPO
from tests.standin.hub import HubStandin


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch, deps: Any) -> Iterator[HubStandin]:
    with HubStandin() as h:
        monkeypatch.setenv("HF_ENDPOINT", h.url)
        deps.settings = deps.settings.model_copy(update={"hub_preflight": True})
        yield h


def tiny_repo(d: Path, broken: bool = False) -> None:
    write_config(d)
    layer1 = dense_layer(1)
    shards = {
        "model-00001-of-00002.safetensors": {
            "model.embed_tokens.weight": np.zeros((32, 64), np.float16),
            **dense_layer(0),
        },
        "model-00002-of-00002.safetensors": layer1,
    }
    for name, tensors in shards.items():
        write_shard(d / name, tensors)
    write_index(d, shards)
    if broken:  # the index names a shard the repo does not have
        (d / "model-00002-of-00002.safetensors").unlink()


def preflight_comments(gh: Any, n: int) -> list[str]:
    return [c["body"] for c in ours(gh, n) if "<!-- adapt-bot:preflight job=" in c["body"]]


def test_a_hub_model_gets_its_preflight_before_any_runner_time(
    post: Callable[..., Any],
    github_standin: Any,
    deps: Any,
    drain: Callable[[], list[Any]],
    hub: HubStandin,
    tmp_path: Path,
) -> None:
    gh = github_standin
    d = tmp_path / "ckpt"
    d.mkdir()
    tiny_repo(d)
    repo = hub.add_repo("tiny-org/Tiny-Llama", d)
    n = int(gh.add_issue(REPO, "[New model] Tiny-Llama", "model: tiny-org/Tiny-Llama")["number"])
    t0 = time.monotonic()
    label(post, gh, n)
    outcomes = drain()
    elapsed = time.monotonic() - t0
    assert "passed" in outcomes, outcomes
    (comment,) = preflight_comments(gh, n)
    assert "Qwen3ForCausalLM" in comment and "tiny-org/Tiny-Llama" in comment
    job = deps.store.active_for(REPO, n)
    assert job.options.revision == repo.sha  # pinned: every later stage uses this revision
    assert stage_requests(deps.redis) == [(job.id, "analyze", 1)]  # the runner's turn comes after
    assert elapsed < 30, elapsed  # generous: the point is "seconds, not runner time"
    # only headers were read: no weight bytes
    assert hub.body_bytes() < 64 * 1024


def test_a_blocking_defect_stops_the_job_before_any_runner_time(
    post: Callable[..., Any],
    github_standin: Any,
    deps: Any,
    drain: Callable[[], list[Any]],
    hub: HubStandin,
    tmp_path: Path,
) -> None:
    gh = github_standin
    d = tmp_path / "ckpt"
    d.mkdir()
    tiny_repo(d, broken=True)
    hub.add_repo("tiny-org/Broken", d)
    n = int(gh.add_issue(REPO, "[New model] Broken", "model: tiny-org/Broken")["number"])
    label(post, gh, n)
    outcomes = drain()
    assert any(str(o).startswith("failed: blocking-defect") for o in outcomes), outcomes
    job = deps.store.latest_for(REPO, n)
    assert job.state == "failed:analyze"
    assert stage_requests(deps.redis) == []  # no runner time spent
    assert preflight_comments(gh, n)
    assert any("<!-- adapt-bot:report job=" in c["body"] for c in ours(gh, n))  # the full failure report


def test_an_unknown_hub_repo_fails_with_the_hubs_reason(
    post: Callable[..., Any], github_standin: Any, deps: Any, drain: Callable[[], list[Any]], hub: HubStandin
) -> None:
    gh = github_standin
    n = int(gh.add_issue(REPO, "[New model] Nope", "model: nobody/Nope")["number"])
    label(post, gh, n)
    outcomes = drain()
    assert any(str(o).startswith("failed: hub-") for o in outcomes), outcomes
    job = deps.store.latest_for(REPO, n)
    assert job.state == "failed:analyze" and stage_requests(deps.redis) == []


def test_a_hub_outage_is_retried_then_fails_the_job_plainly(
    post: Callable[..., Any],
    github_standin: Any,
    deps: Any,
    drain: Callable[[], list[Any]],
    hub: HubStandin,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import bot.tasks
    from bot.github import RetryLater

    gh = github_standin
    d = tmp_path / "ckpt"
    d.mkdir()
    tiny_repo(d)
    hub.add_repo("tiny-org/Down", d)
    hub.fail("tiny-org/Down", status=503, count=1000)
    monkeypatch.setattr(bot.tasks, "PREFLIGHT_TRIES", 1)
    n = int(gh.add_issue(REPO, "[New model] Down", "model: tiny-org/Down")["number"])
    label(post, gh, n)
    with pytest.raises(RetryLater):  # the Celery shell turns this into a retry 30 s later
        drain()
    job = deps.store.active_for(REPO, n)
    assert job.state == "running:analyze" and stage_requests(deps.redis) == []
    assert bot.tasks.preflight(job.id) == "failed: hub-unavailable"
    assert deps.store.latest_for(REPO, n).state == "failed:analyze"
