"""A job that passed only through a zero-code rung (issue 14): the e2e YAML `serve` block and the
tutorial carry exactly the flags that worked, and the report says plainly that the model runs
through an override / the Transformers backend, not a native vLLM implementation."""

from __future__ import annotations

from pathlib import Path

import yaml

from runners.artifacts.builders import render_report
from runners.artifacts.docs import render_tutorial
from runners.artifacts.e2e_config import render_e2e_config
from runners.artifacts.facts import collect
from runners.artifacts.target import detect
from runners.contracts import StageResult
from tests.artifacts import builders as b

MODEL = "acme/Renamed-8B"
OVERRIDE = '{"architectures":["Qwen3ForCausalLM"]}'
RECIPE = {
    "rung": "architecture-override",
    "args": ["--hf-overrides", OVERRIDE],
    "runs_through": "vLLM's native Qwen3ForCausalLM through --hf-overrides (architectures)",
    "basis": ["transformers maps model_type 'qwen3' to Qwen3ForCausalLM, which vLLM registers"],
    "architecture": "AcmeRenamedForCausalLM",
}


def _results(recipe: dict[str, object] | None = RECIPE) -> dict[str, StageResult]:
    results = b.full_results(MODEL)
    results["analyze"] = b.analysis(architecture="AcmeRenamedForCausalLM")
    for stage in ("dummy-gate", "real-gate"):
        g = results[stage]
        g.data["serve_argv"] = [*g.data["serve_argv"], "--hf-overrides", OVERRIDE]
        if recipe is not None:
            g.data["serve_recipe"] = recipe
    acc = results["accuracy"]
    acc.data["serve_argv"] = [*acc.data["serve_argv"], "--hf-overrides", OVERRIDE]
    return results


def test_the_e2e_config_serves_with_the_override_as_a_mapping() -> None:
    facts = collect(b.options(MODEL), _results())
    cfg = yaml.safe_load(render_e2e_config(facts))
    assert cfg["serve"]["hf_overrides"] == {"architectures": ["Qwen3ForCausalLM"]}
    assert "model_impl" not in cfg["serve"]


def test_the_transformers_backend_flag_reaches_the_config() -> None:
    results = _results()
    acc = results["accuracy"]
    acc.data["serve_argv"] = [*acc.data["serve_argv"], "--model-impl", "transformers"]
    cfg = yaml.safe_load(render_e2e_config(collect(b.options(MODEL), results)))
    assert cfg["serve"]["model_impl"] == "transformers"


def test_the_report_and_tutorial_say_it_is_not_a_native_implementation(mkdocs_repo: Path) -> None:
    facts = collect(b.options(MODEL), _results())
    assert facts.zero_code is not None and facts.zero_code.rung == "architecture-override"
    report = render_report(b.options(MODEL), _results(), commit={"sha": "0" * 40, "branch": "b", "files": []})
    assert "零代码方案" in report and "不是 vLLM 原生注册的 `AcmeRenamedForCausalLM` 实现" in report
    assert "--hf-overrides" in report and "transformers maps model_type" in report
    page = render_tutorial(facts, detect(mkdocs_repo))
    assert "--hf-overrides" in page and "Qwen3ForCausalLM" in page
    assert "vLLM does not register `AcmeRenamedForCausalLM`" in page


def test_a_native_job_says_nothing_of_zero_code() -> None:
    facts = collect(b.options(MODEL), b.full_results(MODEL))
    assert facts.zero_code is None
    report = render_report(
        b.options(MODEL), b.full_results(MODEL), commit={"sha": "0" * 40, "branch": "b", "files": []}
    )
    assert "零代码方案" not in report


def test_the_tutorial_command_carries_the_override_quoted_for_a_shell(mkdocs_repo: Path) -> None:
    import shlex

    page = render_tutorial(collect(b.options(MODEL), _results()), detect(mkdocs_repo))
    command = next(block for block in page.split("```") if "vllm serve" in block)
    argv = shlex.split(command.replace("\\\n", " ").strip().removeprefix("bash").strip())
    assert argv[argv.index("--hf-overrides") + 1] == OVERRIDE
