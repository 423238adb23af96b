"""The generated e2e config against the real vllm-ascend configs: same keys, same types, same values
when the runs measured the same values."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from runners.artifacts.e2e_config import ArtifactError, build_e2e_config, render_e2e_config, yaml_value
from runners.artifacts.facts import collect
from runners.contracts import JobOptions, StageResult
from tests.artifacts import builders as b

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "vllm-ascend-e2e-configs"
REAL = sorted(FIXTURES.glob("*.yaml"))


def _argv_for(model: str, serve: dict[str, Any]) -> list[str]:
    """The vllm serve argv a run with these settings would have used."""
    argv = ["vllm", "serve", model, "--tensor-parallel-size", str(serve["tensor_parallel_size"])]
    argv += ["--dtype", str(serve["dtype"]), "--max-model-len", str(serve["max_model_len"])]
    argv += ["--gpu-memory-utilization", str(serve["gpu_memory_utilization"])]
    for switch in ("trust_remote_code", "enforce_eager", "enable_expert_parallel"):
        if serve.get(switch):
            argv.append("--" + switch.replace("_", "-"))
    if "quantization" in serve:
        argv += ["--quantization", serve["quantization"]]
    if "block_size" in serve:
        argv += ["--block-size", str(serve["block_size"])]
    return argv


def results_like(real: dict[str, Any]) -> tuple[JobOptions, dict[str, StageResult]]:
    """Stage results of runs that measured exactly what the real config records."""
    serve = real["serve"]
    acc_data: dict[str, Any] = {
        "serve_argv": _argv_for(real["model_name"], serve),
        "env": real.get("envs", {}),
        "tasks": real["tasks"],
        "num_fewshot": real.get("num_fewshot"),
        "apply_chat_template": real.get("apply_chat_template"),
        "fewshot_as_multiturn": real.get("fewshot_as_multiturn"),
        "batch_size": real.get("batch_size"),
    }
    if "limit" in real:
        acc_data["limit"] = real["limit"]
    if "enable_thinking" in serve:
        acc_data["chat_template_kwargs"] = {"enable_thinking": serve["enable_thinking"]}
    results = {
        "analyze": b.analysis(multimodal=real.get("model_type") == "vllm-vlm"),
        "accuracy": StageResult(stage="accuracy", status="passed", data=acc_data),
    }
    hw = "a3" if "A3" in real["hardware"] else "a2"
    # the real configs were measured on Ascend: the same run on the Ascend profile yields the same file
    return JobOptions(model=real["model_name"], hardware=hw, profile=f"ascend-{hw}", issue=7), results


@pytest.mark.parametrize("path", REAL, ids=[p.stem for p in REAL])
def test_generated_config_matches_real_config_key_by_key_and_type_by_type(path: Path) -> None:
    real = yaml.safe_load(path.read_text(encoding="utf-8"))
    options, results = results_like(real)
    generated = yaml.safe_load(render_e2e_config(collect(options, results)))
    if "model_type" not in real:  # Mixtral's config predates the key; the default is "vllm"
        assert generated.pop("model_type") == "vllm"
    assert list(generated) == [k for k in real if k in generated]  # same order as hand-written
    assert set(generated) == set(real)
    for key, value in real.items():
        assert type(generated[key]) is type(value), key
        if isinstance(value, dict):
            assert set(generated[key]) == set(value), key
            for sub, sub_value in value.items():
                assert type(generated[key][sub]) is type(sub_value), f"{key}.{sub}"
    assert generated == real


def test_every_real_key_type_is_what_the_emitter_writes() -> None:
    """Across all real configs, a key always has the same type as in ours (schema check)."""
    options, results = b.options(), b.full_results()
    ours = yaml.safe_load(render_e2e_config(collect(options, results)))
    for path in REAL:
        real = yaml.safe_load(path.read_text(encoding="utf-8"))
        for key in set(real) & set(ours):
            if key == "batch_size":  # "auto" or an int in the real configs
                assert isinstance(ours[key], str | int)
                continue
            assert type(ours[key]) is type(real[key]), (path.name, key)
        for key in set(real["serve"]) & set(ours["serve"]):
            assert type(ours["serve"][key]) is type(real["serve"][key]), (path.name, key)


def test_multimodal_model_gets_vllm_vlm_and_its_task() -> None:
    results = b.full_results("Qwen/Qwen3-VL-8B-Instruct")
    results["analyze"] = b.analysis(multimodal=True)
    results["accuracy"] = b.accuracy(
        "Qwen/Qwen3-VL-8B-Instruct",
        tasks=[{"name": "mmmu_val", "metrics": [{"name": "acc,none", "value": 0.5512}]}],
        num_fewshot=0,
        fewshot_as_multiturn=False,
        batch_size=32,
    )
    cfg = build_e2e_config(collect(b.options("Qwen/Qwen3-VL-8B-Instruct"), results))
    assert cfg["model_type"] == "vllm-vlm"
    assert cfg["tasks"] == [{"name": "mmmu_val", "metrics": [{"name": "acc,none", "value": 0.5512}]}]
    assert cfg["num_fewshot"] == 0 and cfg["batch_size"] == 32


def test_no_measured_accuracy_means_no_config() -> None:
    results = b.full_results()
    del results["accuracy"]
    with pytest.raises(ArtifactError, match="accuracy"):
        build_e2e_config(collect(b.options(), results))
    results["accuracy"] = b.accuracy(tasks=[{"name": "gsm8k", "metrics": [{"name": "x", "value": "n/a"}]}])
    with pytest.raises(ArtifactError):
        build_e2e_config(collect(b.options(), results))


def test_defaults_are_vllm_defaults_and_measured_values_are_rounded() -> None:
    results = b.full_results()
    results["accuracy"] = b.accuracy(
        serve_argv=["vllm", "serve", "Qwen/Qwen3-8B", "--max-model-len", "2048"],
        tasks=[{"name": "gsm8k", "metrics": [{"name": "exact_match,strict-match", "value": 0.123456789}]}],
        limit=50,
    )
    cfg = build_e2e_config(collect(b.options(), results))
    assert cfg["serve"] == {
        "tensor_parallel_size": 1,
        "dtype": "auto",
        "max_model_len": 2048,
        "gpu_memory_utilization": 0.9,
        "trust_remote_code": False,  # the run did not pass the flag: the code was not needed (issue 9)
    }
    assert cfg["tasks"][0]["metrics"][0]["value"] == 0.1235
    assert cfg["limit"] == 50  # measured on a subset -> CI compares on the same subset


def test_trust_remote_code_only_when_the_run_passed_it() -> None:
    results = b.full_results()
    results["accuracy"] = b.accuracy(
        serve_argv=["vllm", "serve", "Qwen/Qwen3-8B", "--max-model-len", "2048", "--trust-remote-code"],
        tasks=[{"name": "gsm8k", "metrics": [{"name": "exact_match,strict-match", "value": 0.5}]}],
    )
    assert build_e2e_config(collect(b.options(), results))["serve"]["trust_remote_code"] is True


def test_runner_plumbing_env_never_reaches_the_config() -> None:
    results = b.full_results()
    results["accuracy"] = b.accuracy(
        env={
            "HCCL_OP_EXPANSION_MODE": "AIV",
            "VLLM_CPU_KVCACHE_SPACE": "1",
            "HF_TOKEN": "hf_secret",
            "HCCL_BAD\nKEY": "x",
        }
    )
    text = render_e2e_config(collect(b.options(), results))
    assert yaml.safe_load(text)["envs"] == {"HCCL_OP_EXPANSION_MODE": "AIV"}
    assert "hf_secret" not in text and "KVCACHE" not in text


@pytest.mark.parametrize(
    "hostile",
    ['gsm8k"\nmodel_name: evil', "a: b", "{{ x }} | `y` <script>alert(1)</script>", "x" * 5000, "'; DROP"],
)
def test_hostile_task_and_metric_names_stay_data(hostile: str) -> None:
    results = b.full_results()
    results["accuracy"] = b.accuracy(
        tasks=[{"name": hostile, "metrics": [{"name": hostile, "value": 0.5}]}],
        env={"HCCL_X": hostile},
    )
    text = render_e2e_config(collect(b.options(), results))
    loaded = yaml.safe_load(text)
    assert loaded["model_name"] == "Qwen/Qwen3-8B"
    assert loaded["tasks"][0]["name"] == hostile
    assert loaded["envs"]["HCCL_X"] == hostile


@pytest.mark.parametrize(
    ("value", "text"),
    [(True, "true"), (False, "false"), (4096, "4096"), (0.9, "0.9"), (1e-05, "0.00001"), (2.0, "2.0")],
)
def test_yaml_value_scalars_load_back_with_their_type(value: object, text: str) -> None:
    assert yaml_value(value) == text
    assert yaml.safe_load(f"k: {text}")["k"] == value
    assert type(yaml.safe_load(f"k: {text}")["k"]) is type(value)
