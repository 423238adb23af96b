"""The pre-flight comment (bot/preflight.py + templates/comments/preflight.md.j2) from hub results."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.preflight import BASELINE_LEN, preflight_view, render_preflight, stops_job
from runners.analysis import analyze
from runners.analysis.hub import hub_preflight
from runners.analysis.registry import Registries
from tests.analysis.conftest import HF_CONFIGS
from tests.analysis.test_hub import tiny_sharded
from tests.standin.hub import HubStandin


@pytest.fixture(scope="module")
def hub() -> Iterator[HubStandin]:
    with HubStandin() as h:
        yield h


def test_comment_from_a_hub_preflight(hub: HubStandin, real_registries: Registries, tmp_path: Path) -> None:
    d = tmp_path / "Tiny-Qwen3"
    tiny_sharded(d)
    repo = hub.add_repo("org/Tiny-Qwen3", d)
    result = hub_preflight("org/Tiny-Qwen3", endpoint=hub.url, registries=real_registries)
    body = render_preflight(result)
    assert "### Pre-flight: `org/Tiny-Qwen3` @ `" + repo.sha[:12] + "`" in body
    assert "Nothing blocks the job" in body and not stops_job(result)
    assert f"| read from | Hugging Face at commit `{repo.sha[:12]}`: config, index" in body
    assert "`Qwen3ForCausalLM`" in body and "**registered**" in body
    # 2 (K and V) x layers x KV heads x head_dim x 2 bytes (float16 config), TP 1
    cfg = json.loads((d / "config.json").read_text())
    head_dim = cfg.get("head_dim") or cfg["hidden_size"] // cfg["num_attention_heads"]
    expected_kv = 2 * cfg["num_hidden_layers"] * cfg["num_key_value_heads"] * head_dim * 2
    view = preflight_view(result)
    assert view.kv_bytes_per_token == expected_kv
    assert f"| KV bytes per token | {expected_kv:,} " in body
    # a tiny model fits the (clamped) baseline on both hardware kinds at TP 1
    assert [(h.hardware, h.tp, h.fits) for h in view.hardware] == [("a2", 1, True), ("a3", 1, True)]
    assert view.model_limit_note is not None  # its limit is below 128k: said, not hidden


def test_blocking_defect_stops_the_job_in_the_comment(
    hub: HubStandin, real_registries: Registries, tmp_path: Path
) -> None:
    d = tmp_path / "Broken"
    tiny_sharded(d)
    (d / "model-00002-of-00002.safetensors").unlink()
    hub.add_repo("org/Broken", d)
    result = hub_preflight("org/Broken", endpoint=hub.url, registries=real_registries)
    body = render_preflight(result)
    assert stops_job(result)
    assert "**The job stops here**" in body and "`missing-shard`" in body
    assert "model-00002-of-00002.safetensors" in body


def test_real_configs_limit_and_node_fit(real_registries: Registries, tmp_path: Path) -> None:
    qwen = analyze(HF_CONFIGS / "Qwen3-8B", registries=real_registries)
    view = preflight_view(qwen)
    assert qwen.max_position_embeddings is not None and qwen.max_position_embeddings < BASELINE_LEN
    assert all(h.length == qwen.max_position_embeddings for h in view.hardware)
    assert f"runs at {qwen.max_position_embeddings} instead" in render_preflight(qwen)
    ds = analyze(HF_CONFIGS / "DeepSeek-V3", registries=real_registries)
    fits = {h.hardware: h for h in preflight_view(ds).hardware}
    assert fits["a2"].tp is None and "do not fit one node" in fits["a2"].reason
    assert fits["a3"].tp == 16 and fits["a3"].device_hours and fits["a3"].device_hours > 1
    body = render_preflight(ds)
    assert "expert_parallel" in body and "mtp" in body


def test_untrusted_text_is_inert(real_registries: Registries, tmp_path: Path) -> None:
    d = tmp_path / "Evil"
    shutil.copytree(HF_CONFIGS / "Qwen3-8B", d)
    cfg = json.loads((d / "config.json").read_text())
    cfg["architectures"] = ["@everyone <script>x</script>"]
    (d / "config.json").write_text(json.dumps(cfg))
    body = render_preflight(analyze(d, registries=real_registries))
    assert "<script>" not in body and "@everyone" not in body
    assert "| read from |" not in body  # a local checkout: no hub is claimed


def test_run_preflight_gives_one_comment_for_every_outcome(
    hub: HubStandin, real_registries: Registries, tmp_path: Path
) -> None:
    """What the control plane calls at job start: the comment, the pinned revision, stop / retry."""
    from bot.preflight import run_preflight

    regs = real_registries
    d = tmp_path / "Ok"
    tiny_sharded(d)
    repo = hub.add_repo("org/Ok", d)
    ok = run_preflight("org/Ok", endpoint=hub.url, registries=regs)
    assert ok.revision == repo.sha and not ok.stops and not ok.retryable and ok.result is not None
    assert repo.sha[:12] in ok.body
    hub.add_repo("org/Closed", d, gated=True, granted={"hf_someone_else"})
    gated = run_preflight("org/Closed", endpoint=hub.url, token=False, registries=regs)
    assert gated.stops and not gated.retryable and gated.error_code == "gated" and "HF_TOKEN" in gated.body
    hub.fail(r"^/api/models/org/Ok", status=503, count=-1)
    try:
        down = run_preflight("org/Ok", endpoint=hub.url, registries=regs)
    finally:
        hub.state.faults.clear()
    assert down.retryable and not down.stops and "try again" in down.body
    assert "<!-- adapt-bot:preflight -->" in down.body  # the same comment is edited when it is retried
