"""Hub pre-flight against the local hub stand-in (a real HTTP server; HF_ENDPOINT / endpoint=).

Parity: for the same files, `hub_preflight` must give `analyze()`'s result field by field (the
real fixture configs, generated tiny checkpoints, crafted defects). Byte counting is done by the
server: what it sent for the shards must be exactly 8 + N per shard. Errors are the hub's
(X-Error-Code) mapped to one clear message each.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from runners.analysis import analyze
from runners.analysis.hub import HubError, HubStats, hub_preflight
from runners.analysis.registry import Registries
from tests.analysis.ckpt import FP8, dense_layer, raw_shard, write_config, write_index, write_shard
from tests.analysis.conftest import HF_CONFIGS, REPO
from tests.standin.hub import HubStandin

ADAPT_BOT = REPO / ".venv" / "bin" / "adapt-bot"
GRANTED = "hf_granted_test_token_0123456789"  # a test value; the stand-in grants it


@pytest.fixture(scope="module")
def hub() -> Iterator[HubStandin]:
    with HubStandin(cdn=True) as h:
        yield h


@pytest.fixture(autouse=True)
def _clean_hub(hub: HubStandin) -> Iterator[None]:
    yield
    hub.state.faults.clear()
    hub.state.cuts.clear()
    hub.set_latency(0)
    hub.reset_log()


def comparable(result: Any) -> dict[str, Any]:
    d = result.model_dump(mode="json")
    for key in ("model_path", "hub_id", "revision"):
        d.pop(key)
    return d


def tiny_sharded(d: Path, **cfg: Any) -> dict[str, dict[str, Any]]:
    write_config(d, **cfg)
    shards = {
        "model-00001-of-00002.safetensors": {
            "model.embed_tokens.weight": np.zeros((32, 64), np.float16),
            **dense_layer(0),
        },
        "model-00002-of-00002.safetensors": dense_layer(1),
    }
    for name, tensors in shards.items():
        write_shard(d / name, tensors)
    write_index(d, shards)
    return shards


@pytest.mark.parametrize("name", sorted(p.name for p in HF_CONFIGS.iterdir() if p.is_dir()))
def test_real_fixture_configs_give_the_local_result(
    name: str, hub: HubStandin, real_registries: Registries, tmp_path: Path
) -> None:
    d = tmp_path / name
    shutil.copytree(HF_CONFIGS / name, d)
    repo = hub.add_repo(f"fixtures/{name}", d)
    local = analyze(d, registries=real_registries)
    remote = hub_preflight(f"fixtures/{name}", endpoint=hub.url, registries=real_registries)
    assert comparable(remote) == comparable(local)
    assert remote.revision == repo.sha and remote.hub_id == f"fixtures/{name}"
    assert remote.served_model_name == name


def test_generated_checkpoint_with_defects_gives_the_same_problems(
    hub: HubStandin, real_registries: Registries, tmp_path: Path
) -> None:
    d = tmp_path / "Tiny-Defects"
    shards = tiny_sharded(d)
    # an fp8 weight without its scale, a shard the index does not list, a truncated header,
    # a side file that is not JSON, and an index entry whose tensor is in no header
    write_shard(d / "extra.safetensors", {"lm_head.weight": (np.zeros((8, 8), np.uint8), FP8)})
    raw_shard(d / "model-00002-of-00002.safetensors", b'{"a": 1', length=5000)
    (d / "generation_config.json").write_text("{not json")
    write_index(d, shards, extra={"model.norm.weight": "model-00001-of-00002.safetensors"})
    (d / "tokenizer_config.json").write_text(json.dumps({"chat_template": "{{ x }}"}))
    hub.add_repo("org/Tiny-Defects", d)
    local = analyze(d, registries=real_registries)
    remote = hub_preflight("org/Tiny-Defects", endpoint=hub.url, registries=real_registries)
    codes = {p.code for p in local.problems}
    assert {"header-truncated", "shard-not-in-index", "side-file-not-json", "tensor-not-in-header"} <= codes
    assert comparable(remote) == comparable(local)


def test_fp8_mtp_checkpoint_parity(hub: HubStandin, real_registries: Registries, tmp_path: Path) -> None:
    d = tmp_path / "Tiny-FP8"
    write_config(d, num_hidden_layers=1, num_nextn_predict_layers=1)
    w = (np.zeros((64, 64), np.uint8), FP8)
    shards = {
        "model-00001-of-00001.safetensors": {
            "model.layers.0.self_attn.q_proj.weight": w,
            "model.layers.0.self_attn.q_proj.weight_scale_inv": np.ones((1, 1), np.float32),
            "model.layers.1.mlp.down_proj.weight": w,  # the MTP layer, no scale
        }
    }
    write_shard(d / "model-00001-of-00001.safetensors", shards["model-00001-of-00001.safetensors"])
    write_index(d, shards)
    hub.add_repo("org/Tiny-FP8", d)
    local = analyze(d, registries=real_registries)
    remote = hub_preflight(
        "org/Tiny-FP8", endpoint=hub.url, registries=real_registries, strategy="speculative"
    )
    assert local.mtp_weights is True and "fp8-weight-without-scale" in {p.code for p in local.problems}
    assert comparable(remote) == comparable(local)


def test_reads_only_the_headers(hub: HubStandin, real_registries: Registries, tmp_path: Path) -> None:
    d = tmp_path / "Tiny-Bytes"
    tiny_sharded(d)
    hub.add_repo("org/Tiny-Bytes", d)
    hub.reset_log()
    stats = HubStats()
    local = analyze(d, registries=real_registries)
    hub_preflight("org/Tiny-Bytes", endpoint=hub.url, registries=real_registries, stats=stats)
    shard_bytes = hub.body_bytes(lambda e: e.path.endswith(".safetensors"))
    assert shard_bytes == local.files["header_bytes"]  # exactly 8 + N per shard, as on disk
    for shard in ("model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"):
        raw = (d / shard).read_bytes()
        n = int.from_bytes(raw[:8], "little")
        ranges = [e.range for e in hub.requests(lambda e, s=shard: e.path.endswith(s) and e.host == "cdn")]
        assert sorted(ranges) == ["bytes=0-7", f"bytes=8-{7 + n}"]
        assert n + 8 < len(raw)  # there were weight bytes not read
    json_bytes = hub.body_bytes(lambda e: e.path.endswith(".json") and e.host == "hub")
    sizes = sum((d / f).stat().st_size for f in ("config.json", "model.safetensors.index.json"))
    assert json_bytes == sizes
    # the hub redirects each shard once; the second range goes straight to the CDN
    assert len(hub.requests(lambda e: e.host == "hub" and e.status == 302)) == 2
    assert stats.requests == len(hub.requests())


def test_gated_repo_needs_a_granted_token(
    hub: HubStandin, real_registries: Registries, tmp_path: Path
) -> None:
    d = tmp_path / "Gated"
    tiny_sharded(d)
    hub.add_repo("org/Gated", d, gated=True, granted={GRANTED})
    with pytest.raises(HubError) as no_token:
        hub_preflight("org/Gated", endpoint=hub.url, token=False, registries=real_registries)
    assert no_token.value.code == "gated" and "HF_TOKEN" in no_token.value.message
    assert not no_token.value.retryable
    with pytest.raises(HubError) as not_granted:
        hub_preflight("org/Gated", endpoint=hub.url, token="hf_other_token", registries=real_registries)
    assert not_granted.value.code == "gated" and "not been granted" in not_granted.value.message
    assert "hf_other_token" not in not_granted.value.message
    hub.reset_log()
    ok = hub_preflight("org/Gated", endpoint=hub.url, token=GRANTED, registries=real_registries)
    assert ok.architecture == "Qwen3ForCausalLM"
    # the token goes to the hub, never to the CDN host the shards are redirected to
    assert all(e.authorization for e in hub.requests(lambda e: e.host == "hub"))
    assert not any(e.authorization for e in hub.requests(lambda e: e.host == "cdn"))


def test_not_found_revision_and_private(hub: HubStandin, real_registries: Registries, tmp_path: Path) -> None:
    d = tmp_path / "Private"
    tiny_sharded(d)
    hub.add_repo("org/Private", d, private=True, granted={GRANTED})
    for repo_id in ("org/Does-Not-Exist", "org/Private"):
        with pytest.raises(HubError) as err:
            hub_preflight(repo_id, endpoint=hub.url, token=False, registries=real_registries)
        assert err.value.code == "not-found" and "check the id" in err.value.message
    with pytest.raises(HubError) as rev:
        hub_preflight(
            "org/Private", endpoint=hub.url, token=GRANTED, revision="f" * 40, registries=real_registries
        )
    assert rev.value.code == "revision-not-found"
    with pytest.raises(HubError) as bad:
        hub_preflight("org/Private", endpoint=hub.url, token="invalid-token", registries=real_registries)
    assert bad.value.code == "bad-token" and "invalid-token" not in bad.value.message


def test_5xx_is_retried_then_reported_retryable(
    hub: HubStandin, real_registries: Registries, tmp_path: Path
) -> None:
    d = tmp_path / "Flaky"
    tiny_sharded(d)
    hub.add_repo("org/Flaky", d)
    hub.fail(r"model-00002-of-00002\.safetensors$", status=502, count=1)
    ok = hub_preflight("org/Flaky", endpoint=hub.url, registries=real_registries)
    assert ok.files["shards_read"] == 2  # one 502, retried
    hub.fail(r"/config\.json$", status=503, count=-1)
    with pytest.raises(HubError) as err:
        hub_preflight("org/Flaky", endpoint=hub.url, registries=real_registries)
    assert err.value.code == "unavailable" and err.value.retryable and "503" in err.value.message


def test_slow_hub_times_out_with_a_retryable_message(
    hub: HubStandin, real_registries: Registries, tmp_path: Path
) -> None:
    d = tmp_path / "Slow"
    tiny_sharded(d)
    hub.add_repo("org/Slow", d)
    hub.set_latency(0.6)
    with pytest.raises(HubError) as err:
        hub_preflight("org/Slow", endpoint=hub.url, registries=real_registries, timeout=0.2)
    assert err.value.code == "unreachable" and err.value.retryable


def test_no_config_is_an_analysis_error(hub: HubStandin, real_registries: Registries, tmp_path: Path) -> None:
    from runners.analysis import AnalysisError

    d = tmp_path / "NoConfig"
    d.mkdir()
    (d / "README.md").write_text("hi")
    hub.add_repo("org/NoConfig", d)
    with pytest.raises(AnalysisError) as err:
        hub_preflight("org/NoConfig", endpoint=hub.url, registries=real_registries)
    assert err.value.code == "config-missing"


def cli(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    return subprocess.run(
        [str(ADAPT_BOT), "analyze", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**base, **env},
        cwd=cwd,
        check=False,
    )


def test_cli_uses_the_hub_when_there_is_no_local_checkout(
    hub: HubStandin, vllm_python: Path, tmp_path: Path
) -> None:
    d = tmp_path / "src" / "Tiny-Cli"
    tiny_sharded(d)
    repo = hub.add_repo("org/Tiny-Cli", d, gated=True, granted={GRANTED})
    empty_root = tmp_path / "models"
    empty_root.mkdir()
    # a flat checkout of another org's model must not be used for org/Tiny-Cli
    shutil.copytree(d, empty_root / "Tiny-Cli")
    (empty_root / "Tiny-Cli" / ".adapt-bot-source").write_text('{"repo_id": "other-org/Tiny-Cli"}')
    env = {"HF_ENDPOINT": hub.url, "ADAPT_BOT_CPU_VLLM": str(vllm_python), "HF_HOME": str(tmp_path / "hf")}
    args = ("org/Tiny-Cli", "--json", "--models-root", str(empty_root))
    denied = cli(*args, env=env, cwd=tmp_path)
    assert denied.returncode == 1 and denied.stdout == ""
    assert len(denied.stderr.strip().splitlines()) == 1 and "gated" in denied.stderr
    hub.reset_log()
    proc = cli(*args, env={**env, "HF_TOKEN": GRANTED}, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["revision"] == repo.sha and data["hub_id"] == "org/Tiny-Cli"
    assert data["architecture"] == "Qwen3ForCausalLM" and data["problems"] == []
    assert GRANTED not in proc.stdout + proc.stderr
    repo_requests = hub.requests(lambda e: e.host == "hub" and "org/Tiny-Cli" in e.path)
    assert repo_requests and all(e.authorization for e in repo_requests)
    offline = cli(*args, env={**env, "HF_HUB_OFFLINE": "1"}, cwd=tmp_path)
    assert offline.returncode == 1 and "HF_HUB_OFFLINE" in offline.stderr
