"""Header shapes vs config.json: real configs (tests/fixtures/hf-configs), synthetic sparse headers.

The healthy tensor lists are literal shapes of the published checkpoints (their safetensors
headers), written out by hand rather than computed from the config: the check must agree with
the real files, not with a second copy of its own arithmetic.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from runners.analysis import analyze
from runners.analysis.config import ConfigView
from runners.analysis.registry import Registries
from runners.analysis.shapes import check_shapes
from tests.analysis.ckpt import write_config, write_shard, write_sparse_shard
from tests.analysis.conftest import HF_CONFIGS

T = tuple[str, str, list[int]]

LLAMA_31_8B: list[T] = [
    ("model.embed_tokens.weight", "BF16", [128256, 4096]),
    *[
        t
        for i in (0, 1)
        for t in (
            (f"model.layers.{i}.self_attn.q_proj.weight", "BF16", [4096, 4096]),
            (f"model.layers.{i}.self_attn.k_proj.weight", "BF16", [1024, 4096]),
            (f"model.layers.{i}.self_attn.v_proj.weight", "BF16", [1024, 4096]),
            (f"model.layers.{i}.self_attn.o_proj.weight", "BF16", [4096, 4096]),
            (f"model.layers.{i}.mlp.gate_proj.weight", "BF16", [14336, 4096]),
            (f"model.layers.{i}.mlp.up_proj.weight", "BF16", [14336, 4096]),
            (f"model.layers.{i}.mlp.down_proj.weight", "BF16", [4096, 14336]),
            (f"model.layers.{i}.input_layernorm.weight", "BF16", [4096]),
            (f"model.layers.{i}.post_attention_layernorm.weight", "BF16", [4096]),
        )
    ],
    ("model.norm.weight", "BF16", [4096]),
    ("lm_head.weight", "BF16", [128256, 4096]),
]

QWEN3_8B: list[T] = [
    ("model.embed_tokens.weight", "BF16", [151936, 4096]),
    *[
        t
        for i in (0, 1)
        for t in (
            (f"model.layers.{i}.self_attn.q_proj.weight", "BF16", [4096, 4096]),
            (f"model.layers.{i}.self_attn.k_proj.weight", "BF16", [1024, 4096]),
            (f"model.layers.{i}.self_attn.v_proj.weight", "BF16", [1024, 4096]),
            (f"model.layers.{i}.self_attn.o_proj.weight", "BF16", [4096, 4096]),
            (f"model.layers.{i}.self_attn.q_norm.weight", "BF16", [128]),
            (f"model.layers.{i}.self_attn.k_norm.weight", "BF16", [128]),
            (f"model.layers.{i}.mlp.gate_proj.weight", "BF16", [12288, 4096]),
            (f"model.layers.{i}.mlp.up_proj.weight", "BF16", [12288, 4096]),
            (f"model.layers.{i}.mlp.down_proj.weight", "BF16", [4096, 12288]),
        )
    ],
    ("lm_head.weight", "BF16", [151936, 4096]),
]

QWEN3_30B_A3B: list[T] = [
    ("model.embed_tokens.weight", "BF16", [151936, 2048]),
    ("model.layers.0.self_attn.q_proj.weight", "BF16", [4096, 2048]),
    ("model.layers.0.self_attn.k_proj.weight", "BF16", [512, 2048]),
    ("model.layers.0.self_attn.o_proj.weight", "BF16", [2048, 4096]),
    ("model.layers.0.mlp.gate.weight", "BF16", [128, 2048]),
    *[
        t
        for e in (0, 5, 127)
        for t in (
            (f"model.layers.0.mlp.experts.{e}.gate_proj.weight", "BF16", [768, 2048]),
            (f"model.layers.0.mlp.experts.{e}.up_proj.weight", "BF16", [768, 2048]),
            (f"model.layers.0.mlp.experts.{e}.down_proj.weight", "BF16", [2048, 768]),
        )
    ],
]

DEEPSEEK_V3: list[T] = [
    ("model.embed_tokens.weight", "BF16", [129280, 7168]),
    ("model.layers.0.self_attn.q_a_proj.weight", "F8_E4M3", [1536, 7168]),
    ("model.layers.0.self_attn.q_a_proj.weight_scale_inv", "F32", [12, 56]),
    ("model.layers.0.self_attn.q_a_layernorm.weight", "BF16", [1536]),
    ("model.layers.0.self_attn.q_b_proj.weight", "F8_E4M3", [24576, 1536]),
    ("model.layers.0.self_attn.kv_a_proj_with_mqa.weight", "F8_E4M3", [576, 7168]),
    ("model.layers.0.self_attn.kv_a_layernorm.weight", "BF16", [512]),
    ("model.layers.0.self_attn.kv_b_proj.weight", "F8_E4M3", [32768, 512]),
    ("model.layers.0.self_attn.o_proj.weight", "F8_E4M3", [7168, 16384]),
    ("model.layers.0.mlp.gate_proj.weight", "F8_E4M3", [18432, 7168]),
    ("model.layers.0.mlp.down_proj.weight", "F8_E4M3", [7168, 18432]),
    ("model.layers.3.mlp.gate.weight", "BF16", [256, 7168]),
    ("model.layers.3.mlp.experts.255.down_proj.weight", "F8_E4M3", [7168, 2048]),
    ("model.layers.3.mlp.shared_experts.up_proj.weight", "F8_E4M3", [2048, 7168]),
    ("model.layers.3.mlp.shared_experts.down_proj.weight", "F8_E4M3", [7168, 2048]),
    ("model.layers.61.eh_proj.weight", "BF16", [7168, 14336]),
    ("model.layers.61.shared_head.head.weight", "BF16", [129280, 7168]),
]

QWEN25_VL_7B: list[T] = [
    ("model.embed_tokens.weight", "BF16", [152064, 3584]),
    ("model.layers.0.self_attn.q_proj.weight", "BF16", [3584, 3584]),
    ("model.layers.0.self_attn.q_proj.bias", "BF16", [3584]),
    ("model.layers.0.self_attn.k_proj.weight", "BF16", [512, 3584]),
    ("model.layers.0.self_attn.k_proj.bias", "BF16", [512]),
    ("model.layers.0.mlp.gate_proj.weight", "BF16", [18944, 3584]),
    # the vision tower names its parts like a decoder layer; its widths are not the LM's
    ("visual.blocks.0.attn.qkv.weight", "BF16", [3840, 1280]),
    ("visual.blocks.0.mlp.gate_proj.weight", "BF16", [3420, 1280]),
]

HEALTHY = {
    "Meta-Llama-3.1-8B": LLAMA_31_8B,
    "Qwen3-8B": QWEN3_8B,
    "Qwen3-30B-A3B": QWEN3_30B_A3B,
    "DeepSeek-V3": DEEPSEEK_V3,
    "Qwen2.5-VL-7B-Instruct": QWEN25_VL_7B,
}


def cfg_of(model: str) -> ConfigView:
    return ConfigView(json.loads((HF_CONFIGS / model / "config.json").read_text()))


def replace(tensors: list[T], name: str, shape: list[int]) -> list[T]:
    assert any(n == name for n, _, _ in tensors), name
    return [(n, d, shape if n == name else s) for n, d, s in tensors]


@pytest.mark.parametrize("model", sorted(HEALTHY))
def test_published_shapes_agree_with_their_config(model: str) -> None:
    assert check_shapes(cfg_of(model), HEALTHY[model]) == []


CONTRADICTIONS = [
    (
        "Qwen3-8B",
        lambda t: replace(t, "model.layers.1.mlp.down_proj.weight", [4096, 9728]),
        "model.layers.1.mlp.down_proj.weight [4096, 9728], config implies [4096, 12288] "
        "(hidden_size, intermediate_size)",
    ),
    (
        "Meta-Llama-3.1-8B",
        lambda t: replace(
            replace(t, "model.layers.0.self_attn.k_proj.weight", [4096, 4096]),
            "model.layers.1.self_attn.k_proj.weight",
            [4096, 4096],
        ),
        "model.layers.0.self_attn.k_proj.weight [4096, 4096], config implies [1024, 4096] "
        "(num_key_value_heads × head_dim, hidden_size); the same in 1 more tensor: "
        "model.layers.1.self_attn.k_proj.weight",
    ),
    (
        "Meta-Llama-3.1-8B",
        lambda t: replace(t, "model.embed_tokens.weight", [128000, 4096]),
        "model.embed_tokens.weight [128000, 4096], config implies [128256, 4096] (vocab_size, hidden_size)",
    ),
    (
        "Qwen3-30B-A3B",
        lambda t: replace(t, "model.layers.0.mlp.experts.5.up_proj.weight", [1536, 2048]),
        "model.layers.0.mlp.experts.5.up_proj.weight [1536, 2048], config implies [768, 2048] "
        "(moe_intermediate_size, hidden_size)",
    ),
    (
        "Qwen3-30B-A3B",
        lambda t: [*t, ("model.layers.0.mlp.experts.128.up_proj.weight", "BF16", [768, 2048])],
        "1 expert tensors have an index at or past the 128 experts config.json declares: "
        "model.layers.0.mlp.experts.128.up_proj.weight",
    ),
    (
        "Qwen3-30B-A3B",
        lambda t: replace(t, "model.layers.0.mlp.gate.weight", [64, 2048]),
        "model.layers.0.mlp.gate.weight [64, 2048], config implies [128, 2048] "
        "(number of routed experts, hidden_size)",
    ),
    (
        "DeepSeek-V3",
        lambda t: replace(t, "model.layers.0.self_attn.kv_b_proj.weight", [16384, 512]),
        "model.layers.0.self_attn.kv_b_proj.weight [16384, 512], config implies [32768, 512] "
        "(num_attention_heads × (qk_nope_head_dim + v_head_dim), kv_lora_rank)",
    ),
    (
        "DeepSeek-V3",
        lambda t: replace(t, "model.layers.3.mlp.shared_experts.up_proj.weight", [4096, 7168]),
        "model.layers.3.mlp.shared_experts.up_proj.weight [4096, 7168], config implies [2048, 7168] "
        "(moe_intermediate_size × n_shared_experts, hidden_size)",
    ),
    (
        "Qwen2.5-VL-7B-Instruct",
        lambda t: replace(t, "model.layers.0.self_attn.q_proj.bias", [3072]),
        "model.layers.0.self_attn.q_proj.bias [3072], config implies [3584] (num_attention_heads × head_dim)",
    ),
]


@pytest.mark.parametrize(("model", "mutate", "message"), CONTRADICTIONS)
def test_each_contradiction_is_named(model: str, mutate, message: str) -> None:  # type: ignore[no-untyped-def]
    problems = check_shapes(cfg_of(model), mutate(HEALTHY[model]))
    assert [p.message for p in problems] == [message]
    assert (
        problems[0].code == "shape-mismatch" and problems[0].blocking and problems[0].severity == "blocking"
    )


def test_unknown_family_is_not_judged() -> None:
    """Qwen3-Next's gated q_proj is twice num_heads × head_dim: a generic rule would cry wolf."""
    tensors = [("model.layers.3.self_attn.q_proj.weight", "BF16", [8192, 2048])]
    assert check_shapes(cfg_of("Qwen3-Next-80B-A3B-Thinking"), tensors) == []


def test_packed_quantized_weights_are_not_compared() -> None:
    tensors = [
        ("model.layers.0.mlp.down_proj.qweight", "I32", [1792, 4096]),
        ("model.layers.0.mlp.down_proj.weight_packed", "I32", [4096, 1792]),
        ("model.layers.0.mlp.down_proj.weight", "U8", [4096, 7168]),
    ]
    assert check_shapes(cfg_of("Meta-Llama-3.1-8B"), tensors) == []


def test_many_contradicting_tensors_are_one_problem_in_layer_order() -> None:
    tensors = [
        (f"model.layers.{i}.mlp.gate_proj.weight", "BF16", [14000, 4096]) for i in (10, 2, 1, 0, 3, 11)
    ]
    (p,) = check_shapes(cfg_of("Meta-Llama-3.1-8B"), tensors)
    assert p.message.startswith(
        "model.layers.0.mlp.gate_proj.weight [14000, 4096], config implies [14336, 4096]"
    )
    assert "the same in 5 more tensors: model.layers.1.mlp.gate_proj.weight, model.layers.2." in p.message
    assert p.message.endswith("(+2 more)")


def test_analyze_names_the_contradiction_from_real_headers(
    tmp_path: Path, real_registries: Registries
) -> None:
    """The brief's example on a tiny real checkpoint: intermediate_size 256, down_proj written 192 wide."""
    d = tmp_path / "tiny"
    write_config(d, hidden_size=128, intermediate_size=256, num_attention_heads=4, head_dim=32, vocab_size=32)
    z = np.zeros
    layer = {
        "self_attn.q_proj.weight": z((128, 128), np.float16),
        "self_attn.k_proj.weight": z((64, 128), np.float16),
        "self_attn.v_proj.weight": z((64, 128), np.float16),
        "self_attn.o_proj.weight": z((128, 128), np.float16),
        "mlp.gate_proj.weight": z((256, 128), np.float16),
        "mlp.up_proj.weight": z((256, 128), np.float16),
        "mlp.down_proj.weight": z((128, 256), np.float16),
    }
    tensors = {f"model.layers.{i}.{k}": v for i in (0, 1) for k, v in layer.items()}
    tensors["model.layers.1.mlp.down_proj.weight"] = z((128, 192), np.float16)
    tensors["model.embed_tokens.weight"] = z((32, 128), np.float16)
    write_shard(d / "model.safetensors", tensors)
    r = analyze(d, registries=real_registries)
    (p,) = [p for p in r.problems if p.code == "shape-mismatch"]
    assert p.message.startswith(
        "model.layers.1.mlp.down_proj.weight [128, 192], config implies [128, 256] "
        "(hidden_size, intermediate_size)"
    )
    assert p.blocking and r.blocking_problems == [p]


def test_analyze_on_a_real_config_with_sparse_headers(tmp_path: Path, real_registries: Registries) -> None:
    d = tmp_path / "Qwen3-30B-A3B"
    d.mkdir()
    shutil.copy(HF_CONFIGS / "Qwen3-30B-A3B" / "config.json", d / "config.json")
    write_sparse_shard(
        d / "model.safetensors",
        replace(QWEN3_30B_A3B, "model.layers.0.self_attn.k_proj.weight", [1024, 2048]),
    )
    r = analyze(d, registries=real_registries)
    assert [p.message for p in r.problems if p.code == "shape-mismatch"] == [
        "model.layers.0.self_attn.k_proj.weight [1024, 2048], config implies [512, 2048] "
        "(num_key_value_heads × head_dim, hidden_size)"
    ]
    # a sample of layer 0 is not a 48-layer checkpoint: the rest is missing, and said so
    (missing,) = [p for p in r.problems if p.code == "tensor-missing"]
    assert missing.message.startswith("189 weights config.json implies (48 layers) are in no shard: ")
    assert "model.layers.0.self_attn.v_proj.weight, model.layers.1.self_attn.q_proj.weight" in missing.message
    assert r.files["header_bytes"] < 20_000  # headers only: the 600 MB of "data" is a hole


def _tiny_llama(d: Path, drop: str | None = None, fuse_qkv: bool = False) -> None:
    """The layout of the generated tiny Llama (runners/demo/tinymodels.py llama): 2 layers, 64 wide."""
    write_config(
        d,
        architectures=["LlamaForCausalLM"],
        model_type="llama",
        hidden_size=64,
        intermediate_size=128,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=32,
        vocab_size=320,
    )
    z = np.zeros
    t = {"model.embed_tokens.weight": z((320, 64), np.float32), "lm_head.weight": z((320, 64), np.float32)}
    for i in (0, 1):
        p = f"model.layers.{i}."
        t |= {
            p + "mlp.gate_proj.weight": z((128, 64), np.float32),
            p + "mlp.up_proj.weight": z((128, 64), np.float32),
        }
        t |= {
            p + "mlp.down_proj.weight": z((64, 128), np.float32),
            p + "self_attn.o_proj.weight": z((64, 128), np.float32),
        }
        if fuse_qkv:
            t[p + "self_attn.qkv_proj.weight"] = z((256, 64), np.float32)
        else:
            t |= {p + "self_attn.q_proj.weight": z((128, 64), np.float32)}
            t |= {p + f"self_attn.{k}_proj.weight": z((64, 64), np.float32) for k in "kv"}
    if drop:
        del t[drop]
    write_shard(d / "model.safetensors", t)


def test_a_missing_layer_weight_blocks(tmp_path: Path, real_registries: Registries) -> None:
    """vLLM 0.32 served exactly this checkpoint without a word (vllm-logs/llama-missing-down-proj.log)."""
    d = tmp_path / "missing"
    _tiny_llama(d, drop="model.layers.1.mlp.down_proj.weight")
    r = analyze(d, registries=real_registries)
    (p,) = r.problems
    assert (p.code, p.blocking) == ("tensor-missing", True)
    assert p.message.startswith(
        "1 weight config.json implies (2 layers) is in no shard: model.layers.1.mlp.down_proj.weight"
    )
    _tiny_llama(tmp_path / "whole")
    assert analyze(tmp_path / "whole", registries=real_registries).problems == []
    _tiny_llama(tmp_path / "fused", fuse_qkv=True)  # a fused qkv_proj holds q, k and v
    assert [p.code for p in analyze(tmp_path / "fused", registries=real_registries).problems] == []
