"""The shrunk probe model (runners/stages/shrink.py) on published configs (tests/fixtures/hf-configs,
copied from the hub; see SOURCES.md there): every layer kind kept, routing groups respected."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from runners.profile import load_profile
from runners.stages import shrink

CONFIGS = Path(__file__).resolve().parents[1] / "fixtures" / "hf-configs"


def config(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((CONFIGS / name / "config.json").read_text())
    return data


def ascend(name: str, devices: int = 16) -> shrink.Shrink:
    spec = load_profile("ascend-a2").probe_model
    lo_layers, lo_experts = spec.min_layers, spec.min_experts
    return shrink.plan(config(name), min_layers=lo_layers, min_experts=lo_experts, devices=devices)


def test_dense_model_is_cut_to_the_minimum() -> None:
    s = ascend("Meta-Llama-3.1-8B", devices=1)
    assert s.overrides == {"num_hidden_layers": 2}
    assert s.layers == (2, 32) and s.experts is None
    assert s.summary() == "shrunk model (dummy weights, 2 of 32 layers)"


def test_deepseek_v3_keeps_its_dense_prefix_and_grouped_experts() -> None:
    s = ascend("DeepSeek-V3")
    # 3 dense layers then MoE: 4 layers keep both kinds; 256 experts in 8 routing groups stay whole
    assert s.overrides == {"num_hidden_layers": 4}
    assert s.experts is None
    assert any("first_k_dense_replace=3" in n for n in s.notes)
    assert any("n_group=8" in n for n in s.notes)
    assert "num_nextn_predict_layers" not in s.overrides  # MTP is probed, never cut


def test_kimi_experts_are_cut_to_a_multiple_of_the_devices() -> None:
    s = ascend("Kimi-K2-Instruct", devices=16)
    assert s.overrides["num_hidden_layers"] == 2
    assert s.overrides["n_routed_experts"] == 16 and s.experts == (16, 384)
    s3 = shrink.plan(config("Kimi-K2-Instruct"), min_layers=2, min_experts=16, devices=12)
    assert s3.overrides["n_routed_experts"] == 24  # >= 2 x top-8, a multiple of 12 ranks


def test_hybrid_layouts_keep_every_layer_kind() -> None:
    nxt = ascend("Qwen3-Next-80B-A3B-Thinking")
    assert nxt.overrides["num_hidden_layers"] == 4  # linear attention x3, then full attention
    nemo = ascend("NVIDIA-Nemotron-3-Nano-30B-A3B-BF16")
    pattern = nemo.overrides["hybrid_override_pattern"]
    assert set(pattern) == set(config("NVIDIA-Nemotron-3-Nano-30B-A3B-BF16")["hybrid_override_pattern"])
    assert len(pattern) == nemo.overrides["num_hidden_layers"] < 52
    oss = ascend("gpt-oss-20b")
    assert oss.overrides["layer_types"] == ["sliding_attention", "full_attention"]
    assert oss.overrides["num_hidden_layers"] == 2


def test_layer_count_in_a_sub_config_is_not_cut_and_says_so() -> None:
    s = ascend("Qwen3-VL-32B-Instruct")
    assert "num_hidden_layers" not in s.overrides
    assert any("text_config" in n for n in s.notes)


@pytest.mark.parametrize("bad", [None, [], {"num_hidden_layers": "61"}, {"num_hidden_layers": True}])
def test_unreadable_configs_run_full_size(bad: Any) -> None:
    s = shrink.plan(bad, min_layers=2, min_experts=8, devices=1)
    assert not s.shrunk and s.notes
    assert shrink.probe_args(s, []) == []


def test_probe_args_keep_the_recipe_override() -> None:
    """A zero-code job serves through --hf-overrides architectures; the cut must not drop it
    (vLLM keeps the last --hf-overrides given)."""
    s = shrink.plan({"num_hidden_layers": 8}, min_layers=2, min_experts=8, devices=1)
    recipe = ["--hf-overrides", '{"architectures":["Qwen3ForCausalLM"]}']
    args = shrink.probe_args(s, recipe)
    assert args[0] == "--hf-overrides"
    assert json.loads(args[1]) == {"architectures": ["Qwen3ForCausalLM"], "num_hidden_layers": 2}
    assert shrink.hf_overrides_of(["--hf-overrides=not json"]) == {}
