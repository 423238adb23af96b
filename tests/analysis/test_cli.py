"""`adapt-bot analyze` end to end: the installed console script in a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

from tests.analysis.ckpt import dense_layer, raw_shard, write_config, write_index, write_shard
from tests.analysis.conftest import HF_CONFIGS, REPO

ADAPT_BOT = REPO / ".venv" / "bin" / "adapt-bot"


def cli(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    if not ADAPT_BOT.exists():
        pytest.fail(f"{ADAPT_BOT} missing: install the project (`pip install -e .[dev]`)", pytrace=False)
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [str(ADAPT_BOT), "analyze", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=full_env,
        cwd=cwd or REPO,
        check=False,
    )


@pytest.fixture
def env(vllm_python: Path) -> dict[str, str]:
    return {"ADAPT_BOT_CPU_VLLM": str(vllm_python)}


@pytest.fixture
def models_root(tmp_path: Path) -> Path:
    root = tmp_path / "models"
    d = root / "Tiny-Qwen3"
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
    # a flat <root>/<name> checkout is used for a hub id only when it says which repo it holds
    (d / ".adapt-bot-source").write_text('{"repo_id": "Qwen/Tiny-Qwen3"}')
    return root


def test_json_for_a_local_directory(models_root: Path, env: dict[str, str]) -> None:
    proc = cli(str(models_root / "Tiny-Qwen3"), "--json", env=env)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["architecture"] == "Qwen3ForCausalLM"
    assert data["parameter_estimated"] is False
    assert data["support"]["vllm"]["class_name"] == "Qwen3ForCausalLM"
    assert data["problems"] == []
    # the same object the Python API returns
    from runners.analysis import analyze

    assert data == analyze(models_root / "Tiny-Qwen3").model_dump(mode="json")


@pytest.mark.parametrize(
    "ref",
    ["Qwen/Tiny-Qwen3", "https://huggingface.co/Qwen/Tiny-Qwen3", "/models/Tiny-Qwen3", "Qwen/Tiny-Qwen3/"],
)
def test_hub_ids_resolve_under_the_models_root(
    models_root: Path, env: dict[str, str], ref: str, tmp_path: Path
) -> None:
    proc = cli(ref, "--json", "--models-root", str(models_root), env=env, cwd=tmp_path)
    if ref.endswith("/") and not ref.startswith(("http", "/")):
        assert proc.returncode == 2  # not a valid hub id
        return
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["served_model_name"] == "Tiny-Qwen3"


def test_models_root_from_the_environment(models_root: Path, env: dict[str, str], tmp_path: Path) -> None:
    proc = cli(
        "Qwen/Tiny-Qwen3", "--json", env={**env, "ADAPT_BOT_MODELS_ROOT": str(models_root)}, cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize(
    "hostile", ["../../etc/passwd", "a;rm -rf /", "$(id)/x", "Qwen/x`id`", "/etc/passwd"]
)
def test_hostile_model_ids_are_refused_in_one_line(
    hostile: str, models_root: Path, env: dict[str, str], tmp_path: Path
) -> None:
    proc = cli(hostile, "--json", "--models-root", str(models_root), env=env, cwd=tmp_path)
    assert proc.returncode == 2, proc
    assert proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("adapt-bot analyze: ")
    assert "Traceback" not in proc.stderr


def test_symlink_escaping_the_models_root_is_refused(
    models_root: Path, env: dict[str, str], tmp_path: Path
) -> None:
    outside = tmp_path / "outside"
    write_config(outside)
    (models_root / "Escape").symlink_to(outside)
    proc = cli("org/Escape", "--models-root", str(models_root), env=env, cwd=tmp_path)
    assert proc.returncode == 2
    assert "outside the models root" in proc.stderr


def test_model_not_downloaded(models_root: Path, env: dict[str, str], tmp_path: Path) -> None:
    # no local checkout: the CLI would ask the hub; offline, it says so in the same one line
    proc = cli(
        "Qwen/Not-Here", "--models-root", str(models_root), env={**env, "HF_HUB_OFFLINE": "1"}, cwd=tmp_path
    )
    assert proc.returncode == 1
    assert "not downloaded" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_bad_config_exits_1_with_one_line(tmp_path: Path, env: dict[str, str]) -> None:
    d = tmp_path / "bad"
    d.mkdir()
    (d / "config.json").write_text('{"architectures": [')
    proc = cli(str(d), "--json", env=env)
    assert proc.returncode == 1
    assert proc.stdout == ""
    (line,) = proc.stderr.strip().splitlines()
    assert "config.json is not valid JSON" in line


def test_missing_config_exits_1(tmp_path: Path, env: dict[str, str]) -> None:
    proc = cli(str(tmp_path), env=env)
    assert proc.returncode == 1 and "no config.json" in proc.stderr


@pytest.mark.parametrize(
    ("damage", "code"),
    [
        (lambda d: (d / "model-00002-of-00002.safetensors").unlink(), "missing-shard"),
        (lambda d: raw_shard(d / "model-00002-of-00002.safetensors", "{}", b"", 10_000), "header-truncated"),
        (
            lambda d: raw_shard(d / "model-00002-of-00002.safetensors", "{}", b"", 200_000_000),
            "header-too-large",
        ),
        (lambda d: raw_shard(d / "model-00002-of-00002.safetensors", "]]not json"), "header-not-json"),
        (
            lambda d: raw_shard(
                d / "model-00002-of-00002.safetensors",
                json.dumps({"model.layers.1.x": {"dtype": "F16", "shape": [4], "data_offsets": [0, 8]}}),
                b"\0" * 4,
            ),
            "data-offsets-out-of-range",
        ),
        (
            lambda d: write_config(d, architectures=None),
            "architectures-missing",
        ),
    ],
)
def test_problems_are_reported_and_exit_0(models_root: Path, env: dict[str, str], damage, code: str) -> None:
    d = models_root / "Tiny-Qwen3"
    damage(d)
    proc = cli(str(d), "--json", env=env)
    assert proc.returncode == 0, proc.stderr
    problems = json.loads(proc.stdout)["problems"]
    hit = [p for p in problems if p["code"] == code]
    assert hit and hit[0]["blocking"] is True and hit[0]["message"]
    text = cli(str(d), env=env)
    assert text.returncode == 0
    assert f"BLOCKING {code}:" in text.stdout


def test_readable_summary(env: dict[str, str]) -> None:
    proc = cli(str(HF_CONFIGS / "DeepSeek-R1"), env=env)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "DeepseekV3ForCausalLM" in out and "mla" in out and "256 experts, top-8, shared 1" in out
    assert "A3: 16" in out and "registered" in out


def test_explicit_registry_roots(
    vllm_python: Path, ascend_tree: Path, models_root: Path, env: dict[str, str]
) -> None:
    import subprocess as sp

    site = sp.run(
        [
            str(vllm_python),
            "-I",
            "-c",
            "import importlib.util as u; print(u.find_spec('vllm').submodule_search_locations[0])",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    proc = cli(
        str(HF_CONFIGS / "Qwen3-Next-80B-A3B-Thinking"),
        "--json",
        "--vllm",
        site,
        "--vllm-ascend",
        str(ascend_tree),
        env=env,
    )
    assert proc.returncode == 0, proc.stderr
    support = json.loads(proc.stdout)["support"]
    assert (support["verdict"], support["source"]) == ("registered", "vllm-ascend")
    assert support["vllm"]["class_name"] == "Qwen3NextForCausalLM"
    proc = cli(str(models_root / "Tiny-Qwen3"), "--vllm", str(models_root), env=env)
    assert proc.returncode == 1 and "--vllm" in proc.stderr


def test_vllm_python_option(models_root: Path, vllm_python: Path, tmp_path: Path) -> None:
    env = {"ADAPT_BOT_CPU_VLLM": str(tmp_path / "nothing-here")}
    proc = cli(str(models_root / "Tiny-Qwen3"), "--json", env=env)
    assert json.loads(proc.stdout)["support"]["verdict"] == "unknown"
    proc = cli(str(models_root / "Tiny-Qwen3"), "--json", "--vllm-python", str(vllm_python), env=env)
    assert json.loads(proc.stdout)["support"]["verdict"] == "registered"
