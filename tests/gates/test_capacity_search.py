"""The capacity search starts from the KV prediction (pure), and the steps `--concurrency` asks for."""

from __future__ import annotations

from runners.analysis import kv
from runners.analysis.config import ConfigView
from runners.profile import CapacitySpec, load_profile
from runners.stages.capacity import (
    first_len,
    fixed_kv_bytes,
    next_len,
    predict,
    requests_for,
    seq_steps,
)

SPEC = CapacitySpec(max_model_len=131072, min_model_len=4096, granularity=1024, search_steps=5)


def drive(baseline: int, predicted: int | None, serves_up_to: int, estimate: int | None = None) -> list[int]:
    """Run the search against a 'server' that starts at any length ≤ serves_up_to; a failed start
    reports vLLM's estimate (if given). Returns the lengths tried, in order."""
    tried: list[tuple[int, bool]] = []
    cand: int | None = first_len(baseline, predicted, SPEC)
    hint = None
    while cand is not None and len(tried) <= SPEC.search_steps:
        ok = cand <= serves_up_to
        tried.append((cand, ok))
        hint = None if ok else estimate
        cand = next_len(tried, baseline, SPEC, hint)
    return [n for n, _ in tried]


def test_baseline_first_when_the_prediction_says_it_starts() -> None:
    assert first_len(131072, 200000, SPEC) == 131072
    assert first_len(131072, None, SPEC) == 131072  # no prediction: the old behaviour
    assert drive(131072, 200000, serves_up_to=10**9) == [131072]  # one start


def test_starts_at_the_predicted_length_not_at_the_baseline() -> None:
    # prediction: 70000 tokens start; the first start asks for 69632 (granularity), not 131072
    assert first_len(131072, 70000, SPEC) == 69632
    # exact prediction: one step above (+10 %) fails, the bracket is within the margin: 2 starts
    assert drive(131072, 70000, serves_up_to=70000) == [69632, 75776]
    # the floor when the prediction is below it
    assert first_len(131072, 1000, SPEC) == 4096


def test_a_conservative_prediction_is_corrected_upwards() -> None:
    tried = drive(131072, 40000, serves_up_to=90000)
    assert tried[0] == 39936 and tried[1] > tried[0]
    assert max(n for n in tried if n <= 90000) >= 80000  # ends close to the truth
    assert len(tried) <= 1 + SPEC.search_steps


def test_after_a_failure_vllms_estimate_is_the_next_try() -> None:
    # optimistic prediction (100000), truth 61000; vLLM's error says "estimated maximum model
    # length is 61440": the second start asks for exactly that (rounded to the granularity)
    assert drive(131072, 100000, serves_up_to=61440, estimate=61440)[:2] == [99328, 61440]
    # without the estimate: the floor first (a model that never starts is found quickly), then halving
    assert drive(131072, 100000, serves_up_to=61440)[:3] == [99328, 4096, 51200]


def test_bisection_between_ok_and_failed_stops_at_the_margin() -> None:
    assert next_len([(131072, False), (4096, True)], 131072, SPEC) == 67584
    assert next_len([(66560, False), (65536, True)], 131072, SPEC) is None
    assert next_len([(2048, False)], 2048, SPEC) is None  # even the floor is above the failure
    assert next_len([(4096, False)], 131072, SPEC) is None  # the floor failed: nothing starts
    assert next_len([(131072, True)], 131072, SPEC) is None


def test_concurrency_steps() -> None:
    spec = CapacitySpec(max_num_seqs=[16], optional_max_num_seqs=[32, 64], concurrency=16)
    assert seq_steps(spec, None) == [16]
    assert seq_steps(spec.model_copy(update={"run_optional": True}), None) == [16, 32, 64]
    assert seq_steps(spec, [64, 16, 32]) == [16, 32, 64]  # --concurrency 16,32,64
    assert [requests_for(spec, s, 16, explicit=True) for s in (16, 32, 64)] == [16, 32, 64]
    assert [requests_for(spec, s, 16, explicit=False) for s in (16, 32, 64)] == [16, 32, 64]
    cpu = load_profile("cpu").capacity
    assert requests_for(cpu, 2, 2, explicit=False) == cpu.concurrency  # the profile's own load


def test_prediction_from_the_cpu_profile_is_the_kvcache_space() -> None:
    prof = load_profile("cpu")
    assert fixed_kv_bytes(prof) == int(float(prof.serve.env["VLLM_CPU_KVCACHE_SPACE"]) * kv.GIB)
    lay = kv.layout(
        ConfigView(
            {"num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 32}
        )
    )
    assert lay is not None
    (fit,) = predict(lay, prof, parameter_bytes=None, length=512, seqs=2, tps=[1], cap=512)
    # float32 (the cpu profile's --dtype): 2 × 2 layers × 2 heads × 32 × 4 = 1024 bytes per token
    assert fit.kv_bytes_per_token_per_rank == 1024
    assert fit.kv_tokens == fixed_kv_bytes(prof) // 1024
    assert fit.fits and fit.max_len_start == 512


def test_prediction_on_ascend_says_which_tp_fits() -> None:
    prof = load_profile("ascend-a2")
    lay = kv.layout(
        ConfigView(
            {
                "num_hidden_layers": 36,
                "num_attention_heads": 32,
                "num_key_value_heads": 8,
                "head_dim": 128,
                "torch_dtype": "bfloat16",
            }
        )
    )
    assert lay is not None
    fits = {
        f.tp: f
        for f in predict(
            lay, prof, parameter_bytes=16_400_000_000, length=131072, seqs=16, tps=[1, 2, 4, 8], cap=131072
        )
    }
    # Qwen3-8B-shaped: 144 KiB per token at TP 1; 16 × 131072 tokens need 288 GiB: not at TP 1
    assert fits[1].kv_bytes_per_token_per_rank == 147456 and not fits[1].fits and fits[1].starts
    assert fits[8].kv_bytes_per_token_per_rank == 147456 // 8
    assert [fits[t].fits for t in (1, 2, 4, 8)] == sorted(fits[t].fits for t in (1, 2, 4, 8))


def test_default_scheduler_budget_when_the_log_gives_none() -> None:
    from runners.stages.capacity import in_flight_default

    cpu = load_profile("cpu").capacity
    # the recorded cpu log at 256 tokens × 2 sequences says "max_num_batched_tokens=512"
    assert in_flight_default(cpu, 256, 2) == 512
    assert in_flight_default(cpu, 4096, 2) == 2048  # vLLM's serve default on CPU
    lay = kv.layout(
        ConfigView(
            {
                "num_hidden_layers": 2,
                "num_attention_heads": 4,
                "num_key_value_heads": 2,
                "head_dim": 32,
                "layer_types": ["full_attention", "sliding_attention"],
                "sliding_window": 64,
            }
        )
    )
    assert lay is not None
    (fit,) = predict(lay, load_profile("cpu"), parameter_bytes=None, length=4096, seqs=2, tps=[1], cap=4096)
    # 16384 blocks of 128 tokens; per request 32 full blocks + ceil((64 - 1 + 2048) / 128) + 1 = 18
    assert fit.max_concurrency == round(16384 / 50, 2)
