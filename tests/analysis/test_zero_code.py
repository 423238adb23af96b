"""Zero-code rungs (issue 14): the structural match, the Transformers-backend rung and the ladder's
zero-code path, as pure decisions. The served outcome is in tests/gates/test_zero_code_vllm.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from runners.analysis import zero_code as zc
from runners.analysis.config import ConfigView
from runners.analysis.registry import probe_python
from runners.gates.ladder import LadderState, RungRecord, Stop, ZeroCodeStep, next_step
from runners.profile import DEFAULT_RUNGS

CONFIGS = Path(__file__).resolve().parents[1] / "fixtures" / "hf-configs"


def qwen3_names(layers: int = 2, *, bias: bool = False, qk_norm: bool = True) -> list[str]:
    """The tensor names transformers' Qwen3ForCausalLM.state_dict() has (written out, not derived
    from zero_code.LAYOUTS, so a wrong layout table fails here)."""
    names = ["model.embed_tokens.weight", "model.norm.weight", "lm_head.weight"]
    for i in range(layers):
        p = f"model.layers.{i}."
        names += [p + "input_layernorm.weight", p + "post_attention_layernorm.weight"]
        names += [p + f"self_attn.{x}_proj.weight" for x in "qkvo"]
        names += [p + f"mlp.{x}_proj.weight" for x in ("gate", "up", "down")]
        if qk_norm:
            names += [p + "self_attn.q_norm.weight", p + "self_attn.k_norm.weight"]
        if bias:
            names += [p + f"self_attn.{x}_proj.bias" for x in "qkv"]
    return names


REGISTERED = {"Qwen3ForCausalLM", "Qwen2ForCausalLM", "LlamaForCausalLM"}
TF_NAMES = {"qwen3": "Qwen3ForCausalLM", "qwen2": "Qwen2ForCausalLM", "llama": "LlamaForCausalLM"}


def match(
    model_type: str, names: list[str] | None, tf: dict[str, str] | None = TF_NAMES
) -> zc.StructuralMatch:
    return zc.structural_match(
        architecture="SomeNewForCausalLM",
        model_type=model_type,
        weight_names=names,
        is_registered=REGISTERED.__contains__,
        registered=sorted(REGISTERED),
        causal_lm_names=tf,
    )


def test_a_renamed_qwen3_matches_qwen3_on_its_mapping_and_its_weight_layout() -> None:
    m = match("qwen3", qwen3_names())
    assert m.architecture == "Qwen3ForCausalLM"
    assert any("maps model_type 'qwen3'" in b for b in m.basis)
    assert any("follow Qwen3ForCausalLM's layout" in b for b in m.basis)
    assert zc.override_args("Qwen3ForCausalLM") == [
        "--hf-overrides",
        '{"architectures":["Qwen3ForCausalLM"]}',
    ]


def test_weights_of_another_family_refuse_the_match_and_say_which_tensors() -> None:
    m = match("qwen3", qwen3_names(bias=True, qk_norm=False))  # Qwen2's layout under model_type qwen3
    assert m.architecture is None
    assert "missing model.layers.N.self_attn.q_norm.weight" in m.reason
    assert "unexpected model.layers.N.self_attn.q_proj.bias" in m.reason


def test_without_weight_names_or_a_layout_the_basis_says_what_was_not_checked() -> None:
    assert "config alone" in match("qwen3", None).basis[-1]
    m = zc.structural_match(
        architecture="X",
        model_type="phi3",
        weight_names=["a.weight"],
        is_registered=lambda a: a == "Phi3ForCausalLM",
        registered=["Phi3ForCausalLM"],
        causal_lm_names={"phi3": "Phi3ForCausalLM"},
    )
    assert m.architecture == "Phi3ForCausalLM" and "not compared" in m.basis[-1]


def test_an_unknown_model_type_cannot_be_overridden() -> None:
    m = match("brand_new", qwen3_names())
    assert m.architecture is None and "knows no causal-LM class for model_type 'brand_new'" in m.reason
    # no transformers install known: the registry's naming is the only hint, and it says so
    m = match("qwen3", qwen3_names(), tf=None)
    assert m.architecture == "Qwen3ForCausalLM" and "no transformers install" in m.basis[0]


def test_the_transformers_mapping_is_read_from_the_installed_transformers_source(vllm_python: Path) -> None:
    installed = probe_python(vllm_python)
    names = zc.transformers_causal_lm_names(installed.transformers)
    assert names is not None and names["qwen3"] == "Qwen3ForCausalLM" and names["llama"] == "LlamaForCausalLM"
    assert zc.transformers_causal_lm_names(None) is None


def _tf(config: str, **kw: object) -> zc.ZeroCodeRung:
    cfg = ConfigView(json.loads((CONFIGS / config / "config.json").read_text()))
    quant = (cfg.get("quantization_config") or {}).get("quant_method")
    args: dict[str, object] = dict(
        architecture=cfg.architecture,
        in_transformers=False,
        auto_map=None,
        quant_method=quant,
        attention_detail=cfg.attention()[1],
        match=zc.StructuralMatch(),
    )
    args.update(kw)
    return zc.transformers_rung(**args)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("config", "why"),
    [
        ("gpt-oss-20b", "MXFP4"),  # quant_method mxfp4 (real config)
        ("Qwen3-Next-80B-A3B-Thinking", "full_attention_interval"),  # linear attention layers
        ("NVIDIA-Nemotron-3-Nano-30B-A3B-BF16", "hybrid_override_pattern"),  # Mamba layers
    ],
)
def test_the_transformers_backend_is_skipped_where_vllm_documents_it_cannot_run(
    config: str, why: str
) -> None:
    rung = _tf(config, in_transformers=True)
    assert rung.args == [] and rung.skip and why in rung.skip


def test_the_transformers_backend_rung_and_what_it_needs() -> None:
    assert _tf("Qwen3-8B", in_transformers=True).args == ["--model-impl", "transformers"]
    own = _tf("Qwen3-8B", auto_map={"AutoModelForCausalLM": "m.X"})
    assert own.remote_code and own.args == ["--model-impl", "transformers"]
    via = _tf("Qwen3-8B", match=zc.StructuralMatch(architecture="Qwen3ForCausalLM"))
    assert via.args[:2] == ["--model-impl", "transformers"] and "Qwen3ForCausalLM" in via.args[-1]
    nothing = _tf("Qwen3-8B")
    assert nothing.args == [] and "ships no code" in (nothing.skip or "")


def test_analyze_plans_the_rungs_only_for_an_architecture_vllm_does_not_register(
    tmp_path: Path, vllm_python: Path
) -> None:
    """The real Qwen3-8B config against the installed vLLM's registry: no plan as published; under an
    invented class name, the override to Qwen3ForCausalLM (config only: no weights to compare)."""
    from runners.analysis import analyze

    assert analyze(CONFIGS / "Qwen3-8B", vllm_python=vllm_python).zero_code is None
    cfg = json.loads((CONFIGS / "Qwen3-8B" / "config.json").read_text())
    cfg["architectures"] = ["Qwen3RenamedForCausalLM"]
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    plan = analyze(tmp_path, vllm_python=vllm_python).zero_code
    assert plan is not None and plan.match.architecture == "Qwen3ForCausalLM"
    assert "config alone" in plan.match.basis[-1]
    override, tfb = plan.rungs
    assert override.rung == zc.OVERRIDE_RUNG and "Qwen3ForCausalLM" in override.args[1]
    assert tfb.args[:2] == ["--model-impl", "transformers"]


# --------------------------------------------------------------------------- the ladder's zero-code path


def _state(done: list[RungRecord], steps: list[ZeroCodeStep], rungs: list[str] | None = None) -> LadderState:
    return LadderState(
        rungs=rungs or list(DEFAULT_RUNGS),
        done=done,
        base_argv=["vllm", "serve", "m"],
        eager_args=["--enforce-eager"],
        text_only_args=[],
        multimodal=False,
        signature="not-registered",
        hint="stop",
        meaning="not registered",
        next_step="adaptation needed",
        first_signature="not-registered",
        zero_code=steps,
    )


def test_an_unregistered_architecture_tries_the_override_then_the_transformers_backend_then_stops() -> None:
    override = ZeroCodeStep(zc.OVERRIDE_RUNG, ("--hf-overrides", '{"architectures":["Qwen3ForCausalLM"]}'))
    tfb = ZeroCodeStep(zc.TRANSFORMERS_RUNG, ("--model-impl", "transformers"))
    skipped, first = next_step(_state([], [override, tfb]))
    # no reproduction and no eager/dynamo/text-only: vLLM's registry check is static
    assert [r.rung for r in skipped] == ["reproduce", "enforce-eager", "torchdynamo-disable", "text-only"]
    assert all(r.status == "skipped" and "does not register" in r.note for r in skipped)
    assert not isinstance(first, Stop) and first.name == zc.OVERRIDE_RUNG and first.args == override.args
    done = [*skipped, RungRecord(rung=zc.OVERRIDE_RUNG, status="failed", signature="weight-mapping")]
    more, second = next_step(_state(done, [override, tfb]))
    assert more == [] and not isinstance(second, Stop) and second.args == ("--model-impl", "transformers")
    done.append(RungRecord(rung=zc.TRANSFORMERS_RUNG, status="failed"))
    _, stop = next_step(_state(done, [override, tfb]))
    assert isinstance(stop, Stop) and "architecture-override, transformers-backend failed" in stop.next_step
    assert stop.next_step.endswith("adaptation needed")


def test_a_rung_the_analysis_could_not_plan_is_recorded_with_its_reason() -> None:
    steps = [
        ZeroCodeStep(zc.OVERRIDE_RUNG, skip="no registered vLLM architecture implements model_type 'x'"),
        ZeroCodeStep(zc.TRANSFORMERS_RUNG, skip=zc.REMOTE_CODE_SKIP),
    ]
    skipped, stop = next_step(_state([], steps))
    assert isinstance(stop, Stop)
    notes = {r.rung: r.note for r in skipped}
    assert "model_type 'x'" in notes[zc.OVERRIDE_RUNG] and "remote code" in notes[zc.TRANSFORMERS_RUNG]
    assert "no zero-code rung served it" in stop.next_step


def test_other_failures_never_take_a_zero_code_rung() -> None:
    state = _state([], [ZeroCodeStep(zc.OVERRIDE_RUNG, ("--hf-overrides", "{}"))])
    state = LadderState(**{**state.__dict__, "first_signature": "oom", "signature": "oom", "hint": "none"})
    done: list[RungRecord] = []
    while True:
        skipped, decision = next_step(LadderState(**{**state.__dict__, "done": done}))
        done.extend(skipped)
        if isinstance(decision, Stop):
            break
        assert decision.name not in zc.ZERO_CODE_RUNGS
        done.append(RungRecord(rung=decision.name, status="failed"))
    assert {r.rung: r.status for r in done if r.rung in zc.ZERO_CODE_RUNGS} == {
        zc.OVERRIDE_RUNG: "skipped",
        zc.TRANSFORMERS_RUNG: "skipped",
    }
