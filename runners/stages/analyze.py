"""The analyze stage: the first stage of every job; its data is the analysis JSON.

Passed whenever the checkpoint could be analysed; problems are reported in the data and only fail
the stage when the checkpoint cannot be served as it is (missing shards, corrupt headers, a config
without architectures): reason `checkpoint-incomplete`, `checkpoint-corrupt` or `bad-config`.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from runners import candidate
from runners.analysis import BLOCKING, AnalysisError, AnalysisResult, analyze
from runners.analysis.preflight import NEXT_STEP, option_problems
from runners.context import StageContext
from runners.contracts import Evidence, StageResult, utcnow
from runners.render import render
from runners.stage_data import AnalyzeData, Problem, wire


def vllm_python_of(profile: Any) -> Path | None:
    """The python of the profile's vLLM environment, to find its installed vllm without importing it."""
    try:
        cmd = profile.vllm_command()
    except Exception:  # a profile without a vLLM locator: fall back to discovery defaults
        return None
    if not cmd:
        return None
    exe = Path(cmd[0])
    if exe.name.startswith("python"):
        return exe
    found = shutil.which(str(exe)) if not exe.is_absolute() else str(exe)
    if found:
        sibling = Path(found).parent / "python"
        if sibling.exists():
            return sibling
    return None


def run(ctx: StageContext) -> StageResult:
    started = utcnow()
    ctx.progress(f"analysing {ctx.model_path.name}")
    try:
        result = analyze(
            ctx.model_path,
            vllm_root=ctx.vllm_root,
            vllm_ascend_root=ctx.vllm_ascend_root,
            vllm_python=vllm_python_of(ctx.profile) if ctx.vllm_root is None else None,
        )
    except AnalysisError as exc:
        reason = BLOCKING.get(exc.code, exc.code if exc.code == "bad-registry-root" else "bad-config")
        return StageResult(
            stage="analyze",
            status="failed",
            reason=reason,
            diagnosis=exc.message,
            next_step=NEXT_STEP.get(reason),
            started_at=started,
            finished_at=utcnow(),
            evidence=[Evidence(kind="analysis", text=exc.message)],
            data=wire(AnalyzeData(problems=[Problem(code=exc.code, message=exc.message, blocking=True)])),
        )
    result.problems.extend(option_problems(result.model_dump(mode="json"), ctx.options.trust_remote_code))
    record = AnalyzeData.model_validate(result.model_dump(mode="json"))
    cand = candidate.record(ctx)  # the contributor branch this job runs against (issue 14)
    if cand is not None:
        record.candidate = cand
    data = wire(record)
    summary_path = ctx.workspace.log_path("analyze")
    summary_path.parent.mkdir(parents=True, exist_ok=True)
    summary_path.write_text(summary(result), encoding="utf-8")
    evidence = [Evidence(kind="analysis", text=line) for line in headline(result)]
    evidence += [
        Evidence(kind="analysis", text=f"{p.code}: {p.message}", log_path=str(summary_path))
        for p in result.problems
    ]
    blocking = result.blocking_problems
    if blocking:
        reason = BLOCKING[blocking[0].code]
        return StageResult(
            stage="analyze",
            status="failed",
            reason=reason,
            diagnosis="; ".join(p.message for p in blocking[:3]),
            next_step=NEXT_STEP.get(reason),
            started_at=started,
            finished_at=utcnow(),
            evidence=evidence,
            data=data,
        )
    return StageResult(
        stage="analyze",
        status="passed",
        started_at=started,
        finished_at=utcnow(),
        evidence=evidence,
        data=data,
    )


def headline(result: AnalysisResult) -> list[str]:
    moe = f"MoE {result.moe.experts} experts top-{result.moe.experts_per_token}" if result.moe else "dense"
    return [
        f"{result.architecture} ({result.model_type}), attention {result.attention}, {moe}, "
        f"MTP layers {result.mtp_layers}, quantization {(result.quantization or {}).get('method')}",
        f"support: {result.support.verdict} — {result.support.reason}",
    ]


def summary(result: AnalysisResult) -> str:
    return render("analysis/summary.txt.j2", r=result, data=result.model_dump(mode="json"))
