"""The analyze stage through the real pipeline entry (execute_stage), with the cpu runner profile."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from runners.contracts import JobOptions
from runners.pipeline import execute_stage
from runners.stages.analyze import vllm_python_of
from tests.analysis.ckpt import dense_layer, write_config, write_index, write_shard


@pytest.fixture
def ckpt(tmp_path: Path) -> Path:
    d = tmp_path / "models" / "Tiny-Qwen3"
    write_config(d)
    shards = {
        "model-00001-of-00002.safetensors": {
            "model.embed_tokens.weight": np.zeros((32, 64), np.float16),
            **dense_layer(0),
        },
        "model-00002-of-00002.safetensors": dense_layer(1),
    }
    for name, tensors in shards.items():
        write_shard(d / name, tensors)
    write_index(d, shards)
    return d


def run_stage(ckpt: Path, tmp_path: Path, vllm_python: Path, monkeypatch):
    monkeypatch.setenv("ADAPT_BOT_CPU_VLLM", str(vllm_python))
    options = JobOptions(model="Qwen/Tiny-Qwen3", local_path=str(ckpt), profile="cpu")
    return execute_stage("job-1", "analyze", options, work_root=tmp_path / "work")


def test_stage_passes_with_the_analysis_as_data(
    ckpt: Path, tmp_path: Path, vllm_python: Path, monkeypatch
) -> None:
    result = run_stage(ckpt, tmp_path, vllm_python, monkeypatch)
    assert result.status == "passed", result.diagnosis
    data = result.data
    assert data["architecture"] == "Qwen3ForCausalLM"
    # the installed vllm of the profile's environment gave the verdict
    assert data["support"]["verdict"] == "registered"
    assert data["support"]["vllm"]["version"].startswith("0.32")
    assert data["features"]["mtp"]["status"] == "not-applicable"
    assert any("Qwen3ForCausalLM" in e.text for e in result.evidence)
    stored = json.loads((tmp_path / "work" / "job-1" / "results" / "analyze.json").read_text())
    assert stored["data"] == json.loads(json.dumps(data))
    log = tmp_path / "work" / "job-1" / "logs" / "analyze.log"
    assert "Suggested TP" in log.read_text()


def test_missing_shard_fails_the_stage(ckpt: Path, tmp_path: Path, vllm_python: Path, monkeypatch) -> None:
    (ckpt / "model-00002-of-00002.safetensors").unlink()
    result = run_stage(ckpt, tmp_path, vllm_python, monkeypatch)
    assert result.status == "failed"
    assert result.reason == "checkpoint-incomplete"
    assert "model-00002-of-00002.safetensors" in (result.diagnosis or "")
    assert result.next_step and "rerun analyze" in result.next_step
    assert result.data["problems"][0]["code"] == "missing-shard"


def test_non_blocking_problems_still_pass(ckpt: Path, tmp_path: Path, vllm_python: Path, monkeypatch) -> None:
    write_shard(ckpt / "extra.safetensors", {"x": np.zeros((2,), np.float32)})
    result = run_stage(ckpt, tmp_path, vllm_python, monkeypatch)
    assert result.status == "passed"
    assert [p["code"] for p in result.data["problems"]] == ["shard-not-in-index"]
    assert any(e.text.startswith("shard-not-in-index") for e in result.evidence)


def test_bad_config_fails_with_bad_config(ckpt: Path, tmp_path: Path, vllm_python: Path, monkeypatch) -> None:
    (ckpt / "config.json").write_text("{nope")
    result = run_stage(ckpt, tmp_path, vllm_python, monkeypatch)
    assert (result.status, result.reason) == ("failed", "bad-config")
    assert "not valid JSON" in (result.diagnosis or "")


def test_vllm_python_of_profiles(vllm_python: Path, monkeypatch) -> None:
    from runners.profile import load_profile

    monkeypatch.setenv("ADAPT_BOT_CPU_VLLM", str(vllm_python))
    assert vllm_python_of(load_profile("cpu")) == vllm_python
    assert vllm_python_of(object()) is None
