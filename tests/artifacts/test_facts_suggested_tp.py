"""The analysis reports suggested TP per hardware; the facts pick the job's hardware."""

from __future__ import annotations

import pytest

from runners.artifacts import collect
from runners.contracts import JobOptions, StageResult


@pytest.mark.parametrize(("hardware", "expected"), [("a2", 4), ("a3", 2)])
def test_suggested_tp_follows_the_job_hardware(hardware: str, expected: int) -> None:
    analysis = StageResult(
        stage="analyze",
        status="passed",
        data={"architecture": "Qwen3ForCausalLM", "suggested_tp": {"a2": 4, "a3": 2, "reason": "x"}},
    )
    facts = collect(JobOptions(model="Qwen/Qwen3-32B", hardware=hardware), {"analyze": analysis})
    assert facts.analysis.suggested_tp == expected


def test_suggested_tp_null_when_the_model_does_not_fit_one_node() -> None:
    analysis = StageResult(stage="analyze", status="passed", data={"suggested_tp": {"a2": None, "a3": 16}})
    facts = collect(JobOptions(model="deepseek-ai/DeepSeek-V3"), {"analyze": analysis})
    assert facts.analysis.suggested_tp is None
