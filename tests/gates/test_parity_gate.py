"""Reference parity and output quality around the gate, without a server (fast): the reference's
budget / dtype / remote-code decisions, the reference process on real failure paths, how a gate
result is judged from the checks, the 4xx refusal and the ladder's `no-retry`."""

from __future__ import annotations

import json
import struct
import sys
from pathlib import Path
from typing import Any

import pytest

from runners.context import LocalCancel
from runners.contracts import StageResult
from runners.gates import checks
from runners.gates import parity as par
from runners.gates import reference as ref
from runners.gates.gate import Attempt, _judge
from runners.gates.ladder import LadderState, RungRecord, Stop, next_step
from runners.profile import load_profile
from runners.serve import error_message

CPU = load_profile("cpu")


# --------------------------------------------------------------------------- reference decisions


@pytest.mark.parametrize(
    ("argv", "defaults", "config", "dtype"),
    [
        (["{vllm}", "serve", "--dtype", "{dtype}"], {"dtype": "float32"}, {}, "float32"),
        (["--dtype", "bfloat16"], {}, {}, "bfloat16"),
        (["--dtype=half"], {}, {}, "float16"),
        (["--dtype", "bf16"], {}, {}, "bfloat16"),
        (["--dtype", "fp32"], {}, {}, "float32"),
        (["--dtype", "auto"], {}, {"torch_dtype": "bfloat16"}, "bfloat16"),
        ([], {}, {"dtype": "float16"}, "float16"),
        ([], {}, {"text_config": {"torch_dtype": "bfloat16"}}, "bfloat16"),
        ([], {}, {}, "float32"),
        (["--dtype", "{dtype}"], {}, {}, "float32"),  # template without a default -> auto -> config
        (["--dtype", "float8"], {}, {}, "float32"),  # nothing transformers loads as is
        (["--dtype"], {}, {"torch_dtype": "weird"}, "float32"),
    ],
)
def test_serve_dtype(argv: list[str], defaults: dict[str, Any], config: dict[str, Any], dtype: str) -> None:
    assert ref.serve_dtype(argv, defaults, config) == dtype


def test_cpu_profile_reference_dtype_is_float32() -> None:
    assert ref.serve_dtype(CPU.serve.argv, CPU.serve.defaults, {"torch_dtype": "bfloat16"}) == "float32"


def test_need_and_skip_sentence() -> None:
    assert ref.need_gb(0, "float32") == ref.RUNTIME_GB
    assert ref.need_gb(10**9, "float32") == pytest.approx(4 * ref.FACTOR + ref.RUNTIME_GB)
    assert ref.need_gb(10**9, "bfloat16") == pytest.approx(2 * ref.FACTOR + ref.RUNTIME_GB)
    assert ref.skip_sentence(9.04, 2) == "reference skipped: needs 9.0 GB, budget 2.0 GB"


def test_budget_sources() -> None:
    class P:
        reference_budget_gb = 3.5

    mem = "MemTotal: 100 kB\nMemAvailable:    8000000 kB\n"
    assert ref.budget_gb({ref.BUDGET_ENV: "2.5"}, CPU, mem) == (2.5, ref.BUDGET_ENV)
    assert ref.budget_gb({ref.BUDGET_ENV: "lots"}, P(), mem) == (3.5, "profile reference_budget_gb")
    assert ref.budget_gb({}, CPU, mem) == (4.1, "half of the host's available memory")
    assert ref.budget_gb({}, CPU, "MemTotal: 1 kB\n") == (8.0, "default 8 GB")
    budget, source = ref.budget_gb({}, CPU)  # this host's /proc/meminfo
    assert budget > 0 and source == "half of the host's available memory"


def _safetensors(
    path: Path, tensors: dict[str, tuple[str, list[int]]], raw_header: bytes | None = None
) -> None:
    header = (
        raw_header
        or json.dumps(
            {
                "__metadata__": {"format": "pt"},
                **{k: {"dtype": d, "shape": s, "data_offsets": [0, 0]} for k, (d, s) in tensors.items()},
            }
        ).encode()
    )
    path.write_bytes(struct.pack("<Q", len(header)) + header)


def test_parameter_count_from_headers(tmp_path: Path) -> None:
    _safetensors(tmp_path / "a.safetensors", {"w": ("BF16", [4, 8]), "b": ("F32", [8])})
    _safetensors(tmp_path / "b.safetensors", {"x": ("F32", [2, 2, 2])})
    count, total = ref.parameter_count_from_headers(tmp_path)
    assert count == 32 + 8 + 8 and total == sum(p.stat().st_size for p in tmp_path.iterdir())
    (tmp_path / "c.safetensors").write_bytes(struct.pack("<Q", 0))
    assert ref.parameter_count_from_headers(tmp_path)[0] is None  # an unreadable header: unknown
    empty = tmp_path / "empty"
    empty.mkdir()
    assert ref.parameter_count_from_headers(empty) == (None, 0)
    bins = tmp_path / "bins"
    bins.mkdir()
    (bins / "pytorch_model.bin").write_bytes(b"\0" * 100)
    assert ref.parameter_count_from_headers(bins) == (None, 100)
    broken = tmp_path / "broken"
    broken.mkdir()
    _safetensors(broken / "x.safetensors", {}, raw_header=b"{not json")
    assert ref.parameter_count_from_headers(broken)[0] is None


def test_needs_remote_code_and_python() -> None:
    assert ref.needs_remote_code({"auto_map": {"AutoModelForCausalLM": "m.M"}})
    assert not ref.needs_remote_code({"auto_map": {"AutoTokenizer": "t.T"}})
    assert not ref.needs_remote_code({})
    assert ref.reference_python(["/env/bin/python", "-m", "vllm"]) == Path("/env/bin/python")
    assert ref.reference_python(["/env/bin/vllm"]) == Path("/env/bin/python")


def _start(tmp_path: Path, **kw: Any) -> ref.ReferenceRun:
    model = tmp_path / "model"
    model.mkdir(exist_ok=True)
    _safetensors(model / "model.safetensors", {"w": ("F32", [4, 4])})
    args: dict[str, Any] = dict(
        model_dir=model,
        config={},
        facts={},
        profile=CPU,
        trust_remote_code=False,
        scratch=tmp_path / "scratch",
        log_path=tmp_path / "logs" / "ref.log",
        vllm_cmd=[sys.executable],
        environ={ref.BUDGET_ENV: "4", "PATH": "/usr/bin:/bin"},
    )
    args.update(kw)
    return ref.start_reference(**args)


def test_over_budget_is_skipped_with_the_plain_sentence(tmp_path: Path) -> None:
    run = _start(tmp_path, facts={"parameter_count": 2 * 10**9}, environ={ref.BUDGET_ENV: "2"})
    assert run.proc is None
    out = run.wait()
    assert not out.ok and out.skip_reason == "reference skipped: needs 11.4 GB, budget 2.0 GB"
    assert out.info["parameter_source"] == "analysis parameter_count" and out.info["dtype"] == "float32"
    result = par.skipped(out.skip_reason, reference=out.info)
    assert result.status == "skipped"


def test_remote_code_is_not_run_without_the_opt_in(tmp_path: Path) -> None:
    cfg = {"auto_map": {"AutoModelForCausalLM": "modeling_x.X"}}
    run = _start(tmp_path, config=cfg)
    assert run.proc is None and "does not allow remote code" in (run.wait().skip_reason or "")


def test_missing_python_is_skipped(tmp_path: Path) -> None:
    run = _start(tmp_path, vllm_cmd=[str(tmp_path / "nope" / "vllm")])
    assert run.proc is None and "no python at" in (run.wait().skip_reason or "")


def test_size_from_files_when_headers_unknown(tmp_path: Path) -> None:
    model = tmp_path / "bin-model"
    model.mkdir()
    (model / "pytorch_model.bin").write_bytes(b"\0" * 1000)
    run = _start(tmp_path, model_dir=model, environ={ref.BUDGET_ENV: "0.5"})
    assert run.info["parameter_source"] == "checkpoint file sizes" and run.info["parameter_count"] == 500
    assert run.proc is None  # 1 GB runtime > 0.5 GB budget


def test_reference_process_failure_is_reported_not_passed(tmp_path: Path) -> None:
    """A python without torch: the real script runs, fails to import, and says so; the run is a
    skip with the script's own error, never a pass. The argv is a list, remote code is off."""
    run = _start(tmp_path, vllm_cmd=["/usr/bin/python3"])
    assert run.proc is not None and "--trust-remote-code" not in run.argv
    assert run.argv[:3] == ["/usr/bin/python3", "-I", str(ref.SCRIPT)]
    out = run.wait()
    assert not out.ok and out.skip_reason and out.skip_reason.startswith("reference failed (exit 1)")
    assert "ModuleNotFoundError" in out.skip_reason or "No module named" in out.skip_reason
    assert out.info["wall_s"] >= 0 and (tmp_path / "logs" / "ref.log").is_file()
    assert run.wait() is out  # kept
    assert not list((tmp_path / "scratch").glob("reference-*/out.json"))  # scratch cleaned


def test_reference_timeout_and_cancel_stop_the_process(tmp_path: Path) -> None:
    run = _start(tmp_path, vllm_cmd=["/usr/bin/python3"], environ={ref.BUDGET_ENV: "4", ref.TIMEOUT_ENV: "0"})
    out = run.wait()
    assert out.skip_reason == "reference skipped: no result within 0 s"
    assert run.proc is not None and run.proc.poll() is not None
    cancel = LocalCancel()
    cancel.set()
    run2 = _start(
        tmp_path, vllm_cmd=["/usr/bin/python3"], environ={ref.BUDGET_ENV: "4", ref.TIMEOUT_ENV: "x"}
    )
    assert run2.timeout_s == ref.DEFAULT_TIMEOUT_S
    assert run2.wait(cancel).skip_reason == "reference stopped: the job was cancelled"
    run2.stop()  # idempotent


def test_trust_remote_code_only_when_allowed(tmp_path: Path) -> None:
    run = _start(tmp_path, vllm_cmd=["/usr/bin/python3"], trust_remote_code=True)
    try:
        assert run.argv[-1] == "--trust-remote-code" and run.info["trust_remote_code"] is True
    finally:
        run.stop()


# --------------------------------------------------------------------------- judging a served gate


def _stream(tokens: list[int]) -> par.Stream:
    return par.Stream(tokens=tokens, logprobs=[-1.0] * len(tokens), top=[{t: -1.0} for t in tokens])


def _att(
    quality: dict[str, Any] | None = None, parity: par.ParityResult | None = None, **extra: Any
) -> Attempt:
    att = Attempt(ok=True, log_name="real-gate")
    att.extra["quality"] = {"degenerate": False, "known_answers": [], **(quality or {})}
    if parity is not None:
        att.extra["parity"] = parity.model_dump(mode="json")
    att.extra.update(extra)
    return att


def _passed(stage: str = "real-gate") -> StageResult:
    return StageResult(stage=stage, status="passed")


PASSED = par.compare(["p"], [_stream([1, 2])], [_stream([1, 2])], top_k=5, max_tokens=2, dtype="float32")
FAILED = par.compare(["p"], [_stream([1, 9])], [_stream([1, 2])], top_k=5, max_tokens=2, dtype="float32")
SKIPPED = par.skipped("reference skipped: needs 9.0 GB, budget 1.0 GB")
DEGEN = {"degenerate": True, "detail": "the whole reply is 'a' repeated", "reply": "aaaa"}


def test_parity_failure_fails_the_gate_with_reference_mismatch() -> None:
    FAILED.reference = {"loading": {"unexpected_keys": [f"model.layers.{i}.q_proj.bias" for i in range(6)]}}
    r = _judge(_passed(), _att(parity=FAILED), real=True, chat=True)
    assert r.status == "failed" and r.reason == "reference-mismatch"
    assert r.data["parity"]["status"] == "failed"
    d = r.diagnosis or ""
    assert "diverged at generated token 1 after 1 equal tokens" in d and "server token 9" in d
    assert "weight mapping" in d and "rope" in d and "norm" in d and "dtype" in d
    assert "ignored (unexpected) checkpoint keys: model.layers.0.q_proj.bias" in d and "…" in d
    assert "max |Δlogprob| over the matched prefix 0.0000" in d
    assert r.next_step == checks.MISMATCH_NEXT_STEP
    parity_ev = [e.text for e in r.evidence if e.kind == "parity"]
    assert (
        parity_ev
        and "server [1, 9] / reference [1, 2]" in parity_ev[0]
        and "within top-5: False" in parity_ev[0]
    )


def test_mismatch_diagnosis_without_divergence_or_prompts() -> None:
    empty = par.compare(["p"], [_stream([])], [_stream([1])], top_k=5, max_tokens=1, dtype="float32")
    assert "nothing to compare" in checks.mismatch_diagnosis(empty)
    bare = par.ParityResult(status="failed", reason="x")
    assert checks.mismatch_diagnosis(bare).startswith("the served model does not compute")


def test_degenerate_chat_reply_fails_unless_parity_passed() -> None:
    r = _judge(_passed(), _att(DEGEN, SKIPPED), real=True, chat=True)
    assert r.status == "failed" and r.reason == "degenerate-output"
    assert "'a' repeated" in (r.diagnosis or "") and "needs 9.0 GB" in (r.diagnosis or "")
    assert r.data["quality"]["failed_gate"] is True and r.data["parity"]["status"] == "skipped"
    assert any(e.kind == "parity" and "needs 9.0 GB" in e.text for e in r.evidence)
    ok = _judge(_passed(), _att(DEGEN, PASSED), real=True, chat=True)
    assert ok.status == "passed" and "recorded only: parity passed" in ok.data["warnings"][0]
    # no parity record at all is a skip, never a pass
    none = _judge(_passed(), _att(DEGEN), real=True, chat=True)
    assert none.status == "failed" and none.data["parity"]["status"] == "skipped"


def test_degenerate_is_recorded_only_for_dummy_weights_and_base_models() -> None:
    dummy = _judge(_passed("dummy-gate"), _att(DEGEN), real=False, chat=True)
    assert dummy.status == "passed" and "parity" not in dummy.data
    assert "recorded only: dummy weights" in dummy.data["warnings"][0]
    base = _judge(_passed(), _att(DEGEN, SKIPPED), real=True, chat=False)
    assert base.status == "passed" and "base model without a chat template" in base.data["warnings"][0]
    assert any(e.text == "no chat template: smoke through /v1/completions" for e in base.evidence)


def test_known_answers_are_evidence_and_wrong_ones_warnings() -> None:
    answers = [
        {"prompt": "What is 2+3?", "expected": "5", "answer": "5", "ok": True},
        {"prompt": "Capital?", "expected": "Paris", "answer": "Lyon", "ok": False},
    ]
    att = _att({"known_answers": answers}, PASSED, warnings=["known-answer prompts: 1 of 2 wrong"])
    result = _passed()
    result.data["warnings"] = ["known-answer prompts: 1 of 2 wrong"]  # the first attempt's extra
    r = _judge(result, att, real=True, chat=True)
    assert r.status == "passed" and r.data["warnings"] == ["known-answer prompts: 1 of 2 wrong"]
    texts = [e.text for e in r.evidence if e.kind == "known-answer"]
    assert texts == [
        "'What is 2+3?' -> '5' (expected 5: right)",
        "'Capital?' -> 'Lyon' (expected Paris: WRONG)",
    ]


# --------------------------------------------------------------------------- 4xx and the ladder


def test_error_message_quotes_the_server() -> None:
    body = json.dumps(
        {"error": {"message": "This model's maximum context length is 256 tokens", "code": 400}}
    )
    assert error_message(body) == "This model's maximum context length is 256 tokens"
    assert error_message('{"message": "bad"}') == "bad"
    assert error_message('{"object": "error", "message": "clipped \\"quote') == 'clipped "quote'
    assert error_message('{"message": "cut \\u00') == "cut \\u00"
    assert error_message('{"error": {"message": "ok \\u00e9"}, "x": "cut') == "ok é"
    assert error_message("{}") is None
    assert error_message("<html>") is None
    assert error_message("[1]") is None


def test_ladder_does_not_retry_a_refused_request() -> None:
    rungs = ["reproduce", "enforce-eager", "torchdynamo-disable", "text-only"]
    state = LadderState(
        rungs=rungs,
        done=[],
        base_argv=["vllm", "serve", "m"],
        eager_args=["--enforce-eager"],
        text_only_args=[],
        multimodal=True,
        signature=None,
        hint="no-retry",
        meaning="HTTP 400: too long",
        next_step="lower max_tokens",
    )
    skipped, decision = next_step(state)
    assert isinstance(decision, Stop) and decision.next_step == "lower max_tokens"
    assert [r.rung for r in skipped] == rungs and all(r.status == "skipped" for r in skipped)
    assert all("HTTP 4xx" in r.note for r in skipped)
    bare = LadderState(
        **{
            **state.__dict__,
            "meaning": "",
            "next_step": "",
            "done": [RungRecord(rung="reproduce", status="failed")],
        }
    )
    skipped, decision = next_step(bare)
    assert isinstance(decision, Stop) and decision.diagnosis == "the server refused the request"
    assert [r.rung for r in skipped] == rungs[1:]


def test_chat_template_and_special_tokens(tmp_path: Path) -> None:
    assert not checks.chat_template_present(tmp_path)
    assert checks.chat_template_present(tmp_path, {"chat_template": True})
    (tmp_path / "tokenizer_config.json").write_text(
        json.dumps(
            {
                "chat_template": "{{ x }}",
                "eos_token": "<|im_end|>",
                "bos_token": {"content": "<s>"},
                "added_tokens_decoder": {
                    "5": {"content": "<|x|>", "special": True},
                    "6": {"content": "y", "special": False},
                },
                "additional_special_tokens": ["[EOT]"],
            }
        )
    )
    assert checks.chat_template_present(tmp_path)
    assert checks.special_tokens_of(tmp_path) == ["<s>", "<|im_end|>", "<|x|>", "[EOT]"]
    (tmp_path / "tokenizer_config.json").write_text("[]")
    assert not checks.chat_template_present(tmp_path) and checks.special_tokens_of(tmp_path) == []
    (tmp_path / "chat_template.jinja").write_text("{{ x }}")
    assert checks.chat_template_present(tmp_path)
