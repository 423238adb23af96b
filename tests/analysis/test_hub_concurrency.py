"""The hub pre-flight's result does not depend on how many shards are read at once.

The header reads run in a thread pool (DEFAULT_WORKERS of them since the DeepSeek-V3 benchmark,
benchmarks/bench_hub_preflight.py --compare); results land in shared dicts, so a race or an
order dependence would show as a different result between 1 reader, a few, and the default.
Real stand-in (hub + CDN hosts), real checkpoint files, no mocks.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from runners.analysis import analyze
from runners.analysis.hub import DEFAULT_WORKERS, HubStats, hub_preflight
from runners.analysis.registry import Registries
from tests.analysis.ckpt import dense_layer, write_config, write_index, write_shard
from tests.standin.hub import HubStandin

LAYERS = 24


@pytest.fixture(scope="module")
def hub() -> Iterator[HubStandin]:
    with HubStandin(cdn=True) as h:
        yield h


def many_shards(d: Path) -> int:
    """One shard per layer, more shards than a small pool has readers, plus a last shard that
    repeats layer 0 with a wrong intermediate size (shape-mismatch, shard-not-in-index, index
    total_size): the problem list is part of what must be identical."""
    write_config(d, num_hidden_layers=LAYERS)
    shards: dict[str, dict[str, Any]] = {}
    total = LAYERS + 1
    for i in range(LAYERS):
        shards[f"model-{i + 1:05d}-of-{total:05d}.safetensors"] = dense_layer(i)
    shards[f"model-{total:05d}-of-{total:05d}.safetensors"] = {**dense_layer(0, inter=96)}
    for name, tensors in shards.items():
        write_shard(d / name, tensors)
    write_index(d, shards)
    return total


def test_same_result_for_any_number_of_readers(
    hub: HubStandin, real_registries: Registries, tmp_path: Path
) -> None:
    d = tmp_path / "Many-Shards"
    n_shards = many_shards(d)
    repo = hub.add_repo("org/Many-Shards", d)
    local = analyze(d, registries=real_registries).model_dump(mode="json")
    assert local["problems"], "the fixture should carry at least one problem"
    results = {}
    for workers in (1, 5, DEFAULT_WORKERS):
        hub.reset_log()
        stats = HubStats()
        got = hub_preflight(
            "org/Many-Shards", endpoint=hub.url, registries=real_registries, workers=workers, stats=stats
        )
        assert got.revision == repo.sha
        results[workers] = got.model_dump(mode="json")
        # per shard: resolve (302), CDN 0-7, CDN 8-(7+N); no request repeated because of threads
        shard_reqs = hub.requests(lambda e: e.path.endswith(".safetensors"))
        assert len(shard_reqs) == 3 * n_shards
        assert stats.requests == len(hub.requests())
    assert results[1] == results[5] == results[DEFAULT_WORKERS]
    remote = dict(results[1])
    for key in ("model_path", "hub_id", "revision"):
        remote.pop(key)
        local.pop(key)
    assert remote == local
