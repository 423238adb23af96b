"""Config signals, quantization side files, sizing and feature decisions as pure functions."""

from __future__ import annotations

from pathlib import Path

import pytest

from runners.analysis.config import ConfigView, JsonFileError, quantization, read_json
from runners.analysis.features import decide, mtp_weights, vision_weights
from runners.analysis.model import Moe
from runners.analysis.sizing import GIB, estimate_parameters, suggest_tp


@pytest.mark.parametrize(
    ("cfg", "kind"),
    [
        ({"num_attention_heads": 8, "num_key_value_heads": 8}, "mha"),
        ({"num_attention_heads": 8}, "mha"),
        ({"num_attention_heads": 8, "num_key_value_heads": 1}, "mqa"),
        ({"num_attention_heads": 8, "multi_query": True}, "mqa"),
        ({"num_attention_heads": 8, "num_key_value_heads": 2}, "gqa"),
        ({"num_attention_heads": 8, "num_key_value_heads": 2, "kv_lora_rank": 512}, "mla"),
        # Qwen2-style: sliding window only on the layers above max_window_layers
        (
            {
                "num_attention_heads": 8,
                "num_key_value_heads": 2,
                "use_sliding_window": True,
                "sliding_window": 4096,
                "max_window_layers": 20,
                "num_hidden_layers": 28,
            },
            "hybrid",
        ),
        # sliding window switched off: not hybrid
        (
            {
                "num_attention_heads": 8,
                "num_key_value_heads": 2,
                "use_sliding_window": False,
                "sliding_window": 4096,
            },
            "gqa",
        ),
        ({"num_attention_heads": 8, "num_key_value_heads": 2, "layer_types": ["full_attention"] * 4}, "gqa"),
        ({"num_attention_heads": 8, "num_key_value_heads": 2, "sliding_window_pattern": 6}, "hybrid"),
        ({"num_attention_heads": 8, "attn_type_list": [0, 1, 1, 1]}, "hybrid"),
        ({"num_attention_heads": 8, "hybrid_override_pattern": "M*M-"}, "hybrid"),
        ({}, None),
    ],
)
def test_attention_kind(cfg: dict, kind: str | None) -> None:
    assert ConfigView(cfg).attention()[0] == kind


def test_nested_text_config_wins_for_lookups() -> None:
    cfg = ConfigView(
        {
            "architectures": ["XVL"],
            "vision_config": {"hidden_size": 1},
            "text_config": {"hidden_size": 64, "num_attention_heads": 4, "num_key_value_heads": 2},
            "hidden_size": 999,
        }
    )
    assert cfg.nested_key == "text_config"
    assert cfg.hidden_size == 64
    assert cfg.attention()[0] == "gqa"
    assert cfg.has_vision and not cfg.has_audio


def test_moe_and_mtp_key_variants() -> None:
    assert ConfigView({"moe_num_experts": 64, "moe_topk": 6}).moe() == {
        "experts": 64,
        "experts_per_token": 6,
        "shared_experts": None,
    }
    assert ConfigView({"num_experts": 0}).moe() is None
    assert ConfigView({"num_experts": 8, "shared_expert_intermediate_size": 128}).moe()["shared_experts"] == 1
    assert ConfigView({"mtp_num_hidden_layers": 2}).mtp_layers() == 2
    assert ConfigView({"num_mtp_modules": 3, "use_mtp": False}).mtp_layers() == 0
    assert ConfigView({"num_nextn_predict_layers": True}).mtp_layers() == 0  # bools are not counts


def test_quantization_side_files() -> None:
    assert quantization({}, {"quantize_config.json": {"bits": 4, "group_size": 128}}) == {
        "method": "gptq",
        "source": "quantize_config.json",
        "bits": 4,
        "group_size": 128,
    }
    awq = quantization({}, {"quant_config.json": {"w_bit": 4, "q_group_size": 128, "zero_point": True}})
    assert awq and awq["method"] == "awq" and awq["w_bit"] == 4
    assert quantization({}, {}) is None
    # config.json wins over side files
    both = quantization(
        {"quantization_config": {"quant_method": "AWQ"}}, {"quantize_config.json": {"bits": 4}}
    )
    assert both and both["method"] == "awq" and both["source"] == "config.json:quantization_config"


def test_rope_variants() -> None:
    assert ConfigView({"rope_parameters": {"rope_type": "yarn", "factor": 4.0}}).rope() == {
        "source": "rope_parameters",
        "type": "yarn",
        "factor": 4.0,
    }
    assert ConfigView({"rope_scaling": {"mrope_section": [1, 2, 3]}}).rope()["type"] == "mrope"
    assert ConfigView({}).rope() is None


def test_read_json_bounds(tmp_path: Path) -> None:
    big = tmp_path / "config.json"
    big.write_text("[" + "0," * 100 + "0]")
    with pytest.raises(JsonFileError) as info:
        read_json(big, limit=50)
    assert info.value.code == "file-too-large"
    (tmp_path / "d.json").mkdir()
    with pytest.raises(JsonFileError) as info:
        read_json(tmp_path / "d.json")
    assert info.value.code == "file-unreadable"


def test_suggest_tp() -> None:
    tp = suggest_tp(int(40 * GIB), 32)
    assert (tp.a2, tp.a3) == (1, 1)
    tp = suggest_tp(int(100 * GIB), 32)
    assert (tp.a2, tp.a3) == (4, 4)
    tp = suggest_tp(int(100 * GIB), 6)  # 6 heads: only TP 1 or 2 divide, neither fits
    assert (tp.a2, tp.a3) == (None, None)
    tp = suggest_tp(int(600 * GIB), 128)
    assert (tp.a2, tp.a3) == (None, 16)
    assert "does not fit one node" in tp.reason
    none = suggest_tp(None, 8)
    assert (none.a2, none.a3, none.reason) == (None, None, "parameter size unknown")


def test_estimate_needs_shapes() -> None:
    assert estimate_parameters(ConfigView({"hidden_size": 8})) is None


def test_name_scans() -> None:
    names = ["model.layers.0.mlp.weight", "model.layers.1.mlp.weight"]
    assert mtp_weights(names, 2, True) is False
    assert mtp_weights([*names, "model.layers.2.eh_proj.weight"], 2, True) is True
    assert mtp_weights([*names, "model.layers.2.self_attn.o_proj.weight"], 2, True) is True
    assert mtp_weights(["mtp.fc.weight"], None, True) is True
    assert mtp_weights(["model.attempt.weight"], None, True) is False  # "mtp" inside a word
    assert mtp_weights(names, 2, False) is None
    assert vision_weights(["model.visual.blocks.0.w"], True) is True
    assert vision_weights(["model.layers.0.w"], True) is False


def test_feature_reasons() -> None:
    moe = Moe(experts=8, experts_per_token=2, shared_experts=None)
    f = decide(
        moe=moe, mtp_layers=0, has_mtp_weights=None, multimodal=False, modalities=[], has_vision_weights=None
    )
    assert {k: v.status for k, v in f.items()} == {
        "aclgraph": "applicable",
        "expert_parallel": "applicable",
        "flashcomm1": "applicable",
        "mtp": "not-applicable",
        "multimodal": "not-applicable",
    }
    assert "deployment choice" in f["flashcomm1"].reason and "runner profile" in f["flashcomm1"].reason
    assert all(v.reason for v in f.values())
