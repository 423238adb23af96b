"""Generated tiny checkpoints (real safetensors files): sharding, fp8 scales, MTP, VL, and defects."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from runners.analysis import AnalysisError, analyze
from runners.analysis.registry import Registries
from tests.analysis.ckpt import (
    FP8,
    dense_layer,
    fp8_linear,
    raw_shard,
    write_config,
    write_index,
    write_shard,
)


def codes(result) -> list[str]:
    return [p.code for p in result.problems]


def problem(result, code: str):
    found = [p for p in result.problems if p.code == code]
    assert found, f"no {code} in {codes(result)}"
    return found[0]


def embed(vocab: int = 32, h: int = 64) -> dict:
    return {
        "model.embed_tokens.weight": np.zeros((vocab, h), np.float16),
        "lm_head.weight": np.zeros((vocab, h), np.float16),
        "model.norm.weight": np.zeros((h,), np.float16),
    }


@pytest.fixture
def sharded(tmp_path: Path) -> Path:
    d = tmp_path / "Tiny-Qwen3"
    write_config(d)
    shards = {
        "model-00001-of-00002.safetensors": {**embed(), **dense_layer(0)},
        "model-00002-of-00002.safetensors": dense_layer(1),
    }
    for name, tensors in shards.items():
        write_shard(d / name, tensors)
    write_index(d, shards)
    (d / "generation_config.json").write_text(json.dumps({"temperature": 0.7, "top_p": 0.8}))
    (d / "tokenizer_config.json").write_text(json.dumps({"chat_template": "{{ messages }}"}))
    return d


def test_sharded_checkpoint_with_index(sharded: Path, real_registries: Registries) -> None:
    r = analyze(sharded, registries=real_registries)
    assert r.problems == []
    assert r.architecture == "Qwen3ForCausalLM"
    assert r.support.verdict == "registered"
    assert (r.support.vllm.module, r.support.vllm.class_name) == ("qwen3", "Qwen3ForCausalLM")
    assert r.parameter_estimated is False and r.parameter_source == "headers"
    per_layer = 64 * 64 * 2 + 32 * 64 * 2 + 128 * 64 * 3 + 64
    assert r.parameter_count == 2 * 32 * 64 + 64 + 2 * per_layer
    assert r.parameter_bytes == 2 * r.parameter_count  # all F16
    assert r.dtypes == {"F16": 3 + 2 * 8}
    assert r.mtp_layers == 0 and r.mtp_weights is False
    assert r.files["shards_expected"] == 2 and r.files["shards_read"] == 2
    assert r.chat_template is True
    assert r.generation_defaults == {"temperature": 0.7, "top_p": 0.8}
    assert r.suggested_tp.a2 == 1 and r.suggested_tp.a3 == 1
    assert r.features["expert_parallel"].status == "not-applicable"
    assert r.served_model_name == "Tiny-Qwen3"


def test_analyze_reads_only_the_headers_of_every_shard(tmp_path: Path, real_registries: Registries) -> None:
    """Counted through the file objects analyze itself opens: 8 + N bytes per shard, nothing more."""
    from tests.analysis.test_headers import counting_opener

    d = tmp_path / "big"
    write_config(d)
    shards = {
        f"model-0000{i}-of-00003.safetensors": {f"model.layers.{i}.w": np.ones((512, 1024), np.float32)}
        for i in range(1, 4)
    }
    for name, tensors in shards.items():
        write_shard(d / name, tensors)
    write_index(d, shards)
    counter = {"bytes": 0, "calls": 0}
    r = analyze(d, registries=real_registries, opener=counting_opener(counter))
    expected = sum(8 + int.from_bytes((d / n).read_bytes()[:8], "little") for n in shards)
    assert counter["bytes"] == expected == r.files["header_bytes"]
    assert sum((d / n).stat().st_size for n in shards) > 1000 * expected
    assert r.parameter_bytes == 3 * 512 * 1024 * 4


def test_missing_shard_is_blocking(sharded: Path, real_registries: Registries) -> None:
    (sharded / "model-00002-of-00002.safetensors").unlink()
    r = analyze(sharded, registries=real_registries)
    p = problem(r, "missing-shard")
    assert p.blocking
    assert "model-00002-of-00002.safetensors" in p.message and "1 of 2 shards" in p.message
    assert "8 tensors" in p.message
    # sizes fall back to the index / config and say so
    assert r.parameter_estimated is True and r.parameter_source == "index"


def test_tensor_in_index_but_in_no_header(sharded: Path, real_registries: Registries) -> None:
    index = json.loads((sharded / "model.safetensors.index.json").read_text())
    index["weight_map"]["model.layers.1.mlp.extra_proj.weight"] = "model-00002-of-00002.safetensors"
    (sharded / "model.safetensors.index.json").write_text(json.dumps(index))
    r = analyze(sharded, registries=real_registries)
    p = problem(r, "tensor-not-in-header")
    assert p.blocking and "model.layers.1.mlp.extra_proj.weight" in p.message


def test_index_that_is_not_json_and_shard_names_that_escape(
    sharded: Path, real_registries: Registries
) -> None:
    (sharded / "model.safetensors.index.json").write_text("{broken")
    r = analyze(sharded, registries=real_registries)
    assert problem(r, "index-invalid").blocking
    (sharded / "model.safetensors.index.json").write_text(
        json.dumps({"weight_map": {"a": "../../etc/passwd", "b": "model-00001-of-00002.safetensors"}})
    )
    r = analyze(sharded, registries=real_registries)
    p = problem(r, "bad-shard-name")
    assert p.blocking and "../../etc/passwd" in p.message


def test_shard_on_disk_not_in_index(sharded: Path, real_registries: Registries) -> None:
    write_shard(sharded / "consolidated.safetensors", {"x": np.zeros((2,), np.float32)})
    r = analyze(sharded, registries=real_registries)
    assert "consolidated.safetensors" in problem(r, "shard-not-in-index").message
    assert not problem(r, "shard-not-in-index").blocking


def _fp8_checkpoint(d: Path, tensors: dict) -> None:
    """256-wide: the fp8 linears below are [256, 256], consistent with this config (shape check)."""
    write_config(
        d,
        hidden_size=256,
        intermediate_size=256,
        head_dim=64,
        num_hidden_layers=1,
        quantization_config={
            "quant_method": "fp8",
            "weight_block_size": [128, 128],
            "activation_scheme": "dynamic",
        },
    )
    rest = {  # the unquantized rest of layer 0, so the checkpoint is complete (tensor-missing check)
        "model.layers.0.self_attn.q_proj.weight": np.zeros((256, 256), np.float16),
        "model.layers.0.self_attn.k_proj.weight": np.zeros((128, 256), np.float16),
        "model.layers.0.self_attn.v_proj.weight": np.zeros((128, 256), np.float16),
        "model.layers.0.self_attn.o_proj.weight": np.zeros((256, 256), np.float16),
        "model.layers.0.mlp.gate_proj.weight": np.zeros((256, 256), np.float16),
    }
    write_shard(d / "model.safetensors", {**embed(h=256), **rest, **tensors})


def test_fp8_with_scales_is_clean(tmp_path: Path, real_registries: Registries) -> None:
    d = tmp_path / "fp8"
    _fp8_checkpoint(
        d,
        {
            **fp8_linear("model.layers.0.mlp.down_proj", (256, 256)),
            **fp8_linear("model.layers.0.mlp.up_proj", (256, 256)),
        },
    )
    r = analyze(d, registries=real_registries)
    assert r.problems == []
    assert r.dtypes["F8_E4M3"] == 2 and r.dtypes["F32"] == 2
    assert r.quantization == {
        "method": "fp8",
        "source": "config.json:quantization_config",
        "weight_block_size": [128, 128],
        "activation_scheme": "dynamic",
    }


def test_fp8_weight_without_scale_and_scale_without_weight(
    tmp_path: Path, real_registries: Registries
) -> None:
    d = tmp_path / "fp8-broken"
    tensors = {
        **fp8_linear("model.layers.0.mlp.down_proj", (256, 256), scale=None),
        "model.layers.0.mlp.shared_proj.weight_scale_inv": np.ones((2, 2), np.float32),
        **fp8_linear(
            "model.layers.0.mlp.up_proj", (256, 256), scale="weight_scale"
        ),  # compressed-tensors style
    }
    _fp8_checkpoint(d, tensors)
    r = analyze(d, registries=real_registries)
    no_scale = problem(r, "fp8-weight-without-scale")
    assert "model.layers.0.mlp.down_proj.weight" in no_scale.message and "1 fp8 weights" in no_scale.message
    orphan = problem(r, "scale-without-weight")
    assert "model.layers.0.mlp.shared_proj.weight_scale_inv" in orphan.message
    assert "up_proj" not in no_scale.message + orphan.message
    assert not no_scale.blocking  # reported before NPU time; the real gate confirms
    assert sorted(codes(r)) == ["fp8-weight-without-scale", "scale-without-weight"]


def test_fp8_scale_in_another_shard_counts(tmp_path: Path, real_registries: Registries) -> None:
    d = tmp_path / "fp8-split"
    write_config(d, hidden_size=128, intermediate_size=128, head_dim=32, num_hidden_layers=1)
    shards = {
        "a.safetensors": {
            **embed(h=128),
            **{
                f"model.layers.0.{m}.weight": np.zeros((shape), np.float16)
                for m, shape in (
                    ("self_attn.q_proj", (128, 128)),
                    ("self_attn.k_proj", (64, 128)),
                    ("self_attn.v_proj", (64, 128)),
                    ("self_attn.o_proj", (128, 128)),
                    ("mlp.gate_proj", (128, 128)),
                    ("mlp.up_proj", (128, 128)),
                )
            },
            "model.layers.0.mlp.down_proj.weight": (np.zeros((128, 128), np.uint8), FP8),
        },
        "b.safetensors": {"model.layers.0.mlp.down_proj.weight_scale_inv": np.ones((1, 1), np.float32)},
    }
    for n, t in shards.items():
        write_shard(d / n, t)
    write_index(d, shards)
    assert analyze(d, registries=real_registries).problems == []


def test_mxfp4_blocks_need_scales(tmp_path: Path, real_registries: Registries) -> None:
    d = tmp_path / "mxfp4"
    write_config(d, quantization_config={"quant_method": "mxfp4"})
    write_shard(
        d / "model.safetensors",
        {
            **embed(),
            "model.layers.0.mlp.experts.gate_up_proj_blocks": np.zeros((2, 8, 16), np.uint8),
            "model.layers.0.mlp.experts.gate_up_proj_scales": np.zeros((2, 8), np.uint8),
            "model.layers.0.mlp.experts.down_proj_blocks": np.zeros((2, 8, 16), np.uint8),
        },
    )
    r = analyze(d, registries=real_registries)
    assert "down_proj_blocks" in problem(r, "mxfp4-blocks-without-scales").message
    assert r.quantization and r.quantization["method"] == "mxfp4"


def _mtp_checkpoint(d: Path, *, with_mtp: bool, style: str = "layer") -> None:
    write_config(
        d,
        architectures=["DeepseekV3ForCausalLM"],
        model_type="deepseek_v3",
        num_hidden_layers=1,
        num_nextn_predict_layers=1,
        n_routed_experts=4,
        num_experts_per_tok=2,
        n_shared_experts=1,
        moe_intermediate_size=32,
        kv_lora_rank=16,
        q_lora_rank=None,
        qk_rope_head_dim=8,
        qk_nope_head_dim=16,
        v_head_dim=16,
        head_dim=None,
    )
    tensors = {**embed(), **dense_layer(0)}
    if with_mtp and style == "layer":
        tensors.update(
            {
                "model.layers.1.eh_proj.weight": np.zeros((64, 128), np.float16),
                "model.layers.1.enorm.weight": np.zeros((64,), np.float16),
                "model.layers.1.self_attn.o_proj.weight": np.zeros((64, 64), np.float16),
            }
        )
    if with_mtp and style == "prefix":
        tensors["mtp.fc.weight"] = np.zeros((64, 128), np.float16)
    write_shard(d / "model.safetensors", tensors)


def test_mtp_layers_present(tmp_path: Path, real_registries: Registries) -> None:
    d = tmp_path / "mtp"
    _mtp_checkpoint(d, with_mtp=True)
    r = analyze(d, registries=real_registries)
    assert (r.mtp_layers, r.mtp_weights) == (1, True)
    assert r.features["mtp"].status == "applicable"
    assert r.attention == "mla"
    assert r.moe is not None and (r.moe.experts, r.moe.experts_per_token, r.moe.shared_experts) == (4, 2, 1)
    assert r.features["expert_parallel"].status == "applicable"
    assert r.features["flashcomm1"].status == "applicable" and "TP>1" in r.features["flashcomm1"].reason


def test_mtp_declared_but_weights_absent(tmp_path: Path, real_registries: Registries) -> None:
    d = tmp_path / "mtp-missing"
    _mtp_checkpoint(d, with_mtp=False)
    r = analyze(d, registries=real_registries)
    assert (r.mtp_layers, r.mtp_weights) == (1, False)
    assert r.features["mtp"].status == "checkpoint-missing"
    assert "no mtp/nextn tensors" in r.features["mtp"].reason


def test_mtp_weights_without_config_key(tmp_path: Path, real_registries: Registries) -> None:
    """Qwen3-Next style: `mtp.*` tensors but no num_nextn_predict_layers."""
    d = tmp_path / "mtp-prefix"
    _mtp_checkpoint(d, with_mtp=True, style="prefix")
    cfg = json.loads((d / "config.json").read_text())
    del cfg["num_nextn_predict_layers"]
    (d / "config.json").write_text(json.dumps(cfg))
    r = analyze(d, registries=real_registries)
    assert (r.mtp_layers, r.mtp_weights) == (0, True)
    assert r.features["mtp"].status == "applicable"


def _vl_checkpoint(d: Path, *, vision_weights: bool) -> None:
    write_config(
        d,
        architectures=["Qwen2_5_VLForConditionalGeneration"],
        model_type="qwen2_5_vl",
        vision_config={"depth": 2, "hidden_size": 32, "out_hidden_size": 64},
        rope_scaling={"type": "mrope", "mrope_section": [2, 3, 3]},
    )
    tensors = {**embed(), **dense_layer(0), **dense_layer(1)}
    if vision_weights:
        tensors["visual.blocks.0.attn.qkv.weight"] = np.zeros((96, 32), np.float16)
        tensors["visual.merger.mlp.0.weight"] = np.zeros((64, 128), np.float16)
    write_shard(d / "model.safetensors", tensors)
    (d / "preprocessor_config.json").write_text(json.dumps({"image_processor_type": "Qwen2VLImageProcessor"}))


def test_vl_checkpoint(tmp_path: Path, real_registries: Registries) -> None:
    d = tmp_path / "vl"
    _vl_checkpoint(d, vision_weights=True)
    r = analyze(d, registries=real_registries)
    assert r.multimodal is True and r.modalities == ["image"]
    assert r.features["multimodal"].status == "applicable"
    assert r.support.vllm.table == "_MULTIMODAL_MODELS"
    assert r.rope and r.rope["type"] == "mrope"
    assert r.files["processor"] == ["preprocessor_config.json"]


def test_vl_config_without_vision_weights(tmp_path: Path, real_registries: Registries) -> None:
    d = tmp_path / "vl-text-only"
    _vl_checkpoint(d, vision_weights=False)
    r = analyze(d, registries=real_registries)
    assert r.features["multimodal"].status == "checkpoint-missing"


@pytest.mark.parametrize(
    ("write", "code"),
    [
        (lambda p: raw_shard(p, "{}", b"", 10_000), "header-truncated"),
        (lambda p: raw_shard(p, "{}", b"", 100_000_001), "header-too-large"),
        (lambda p: raw_shard(p, "not json at all"), "header-not-json"),
        (
            lambda p: raw_shard(
                p,
                json.dumps(
                    {
                        "a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                        "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]},
                    }
                ),
                b"\0" * 12,
            ),
            "data-offsets-overlap",
        ),
        (
            lambda p: raw_shard(
                p, json.dumps({"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}), b"\0" * 4
            ),
            "data-offsets-out-of-range",
        ),
    ],
)
def test_corrupt_shard_is_a_blocking_problem(
    tmp_path: Path, real_registries: Registries, write, code
) -> None:
    d = tmp_path / "corrupt"
    write_config(d)
    write_shard(d / "model-00001-of-00002.safetensors", embed())
    write(d / "model-00002-of-00002.safetensors")
    r = analyze(d, registries=real_registries)
    p = problem(r, code)
    assert p.blocking and "model-00002-of-00002.safetensors" in p.message
    # the good shard was still read
    assert r.dtypes.get("F16") == 3


def test_architectures_missing(tmp_path: Path, real_registries: Registries) -> None:
    d = tmp_path / "noarch"
    write_config(d, architectures=None)
    r = analyze(d, registries=real_registries)
    p = problem(r, "architectures-missing")
    assert p.blocking and "architectures" in p.message
    assert r.architecture is None
    assert r.support.verdict == "unknown"


@pytest.mark.parametrize(
    ("content", "code"),
    [("{bad json", "config-not-json"), ("[1, 2]", "config-invalid")],
)
def test_config_not_json_cannot_be_analysed(tmp_path: Path, content: str, code: str) -> None:
    d = tmp_path / "badcfg"
    d.mkdir()
    (d / "config.json").write_text(content)
    with pytest.raises(AnalysisError) as info:
        analyze(d, registries=Registries(None, None, None))
    assert info.value.code == code
    assert "config.json" in info.value.message


def test_no_config_and_not_a_directory(tmp_path: Path) -> None:
    with pytest.raises(AnalysisError) as info:
        analyze(tmp_path, registries=Registries(None, None, None))
    assert info.value.code == "config-missing"
    with pytest.raises(AnalysisError) as info:
        analyze(tmp_path / "nope", registries=Registries(None, None, None))
    assert info.value.code == "not-a-directory"


def test_side_files_quantization_and_remote_code(tmp_path: Path, real_registries: Registries) -> None:
    d = tmp_path / "ms"
    write_config(
        d, auto_map={"AutoModelForCausalLM": "modeling_x.XForCausalLM"}, architectures=["XForCausalLM"]
    )
    (d / "quant_model_description.json").write_text(json.dumps({"model_quant_type": "W8A8"}))
    (d / "modeling_x.py").write_text("# remote code\n")
    r = analyze(d, registries=real_registries)
    assert r.quantization == {
        "method": "ascend",
        "source": "quant_model_description.json",
        "type": "W8A8",
        "serve_flag": "--quantization ascend",
    }
    assert r.remote_code is True and r.remote_code_files == ["modeling_x.py"]
    assert r.support.vllm.verdict == "transformers-backend-candidate"
    assert "no-weights" in codes(r)
    (d / "tokenizer_config.json").write_text("{oops")
    r = analyze(d, registries=real_registries)
    assert "side-file-not-json" in codes(r)
    assert not problem(r, "side-file-not-json").blocking
