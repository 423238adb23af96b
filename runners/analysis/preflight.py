"""The analysis check before any server starts, for every stage that starts one.

`adapt-bot run` and a GitHub job run the analyze stage first, but `adapt-bot gate --stage
real-gate` (or a rerun of a gate after the checkpoint changed) would otherwise go straight to
`vllm serve`. `check_before_serving` runs the analysis when no passed analysis is stored, applies
the job's options (the remote-code opt-in), and returns a failed result for the requested stage
when a blocking defect stops it — so nothing is started for a checkpoint the headers already
condemn. `runners.pipeline.execute_stage` calls it; `runners.serve` asks `remote_code_flags`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from runners.analysis import remote_code as rc
from runners.analysis.model import BLOCKING, Problem
from runners.context import StageContext
from runners.contracts import StageResult, utcnow

#: Stages that start `vllm serve` (or lm-eval against it).
SERVER_STAGES = frozenset({"dummy-gate", "real-gate", "features", "capacity", "accuracy"})

#: The next step for each reason a blocking problem carries (analyze stage and pre-flight).
NEXT_STEP: dict[str, str] = {
    "checkpoint-incomplete": "Download the missing files again (or fix model.safetensors.index.json), "
    "then `/adapt rerun analyze`.",
    "checkpoint-corrupt": "Re-download the named shard files (their headers are damaged), then "
    "`/adapt rerun analyze`.",
    "bad-config": "Fix config.json in the checkpoint, then `/adapt rerun analyze`.",
    "bad-registry-root": "Point the runner at a vLLM / vllm-ascend checkout that exists.",
    "shape-mismatch": "config.json and the weights disagree on the named dimension: correct that key in "
    "config.json (or re-export the weights from the model they came from), then `/adapt rerun analyze`.",
    "tokenizer-vocab-mismatch": "Make vocab_size cover every tokenizer id (resize embed_tokens / lm_head "
    "to match) or ship the tokenizer the weights were trained with, then `/adapt rerun analyze`.",
    "remote-code-not-allowed": "If you trust this checkpoint's code, " + rc.HOW_TO_ALLOW + "; then rerun "
    "(`/adapt rerun analyze`). Otherwise adapt the architecture natively (vLLM / vllm-ascend model code).",
}


def option_problems(analysis: Mapping[str, Any], trust_remote_code: bool) -> list[Problem]:
    """Problems that depend on the job's options rather than on the checkpoint alone."""
    decision = rc.decide(analysis, trust_remote_code)
    return [decision.problem] if decision.problem is not None else []


def check_before_serving(ctx: StageContext, stage: str) -> StageResult | None:
    """None when `stage` may start servers; else its failed result (nothing was started)."""
    if stage not in SERVER_STAGES:
        return None
    started = utcnow()
    prev = ctx.previous.get("analyze")
    if prev is None or not prev.ok:
        from runners.stages.analyze import run as run_analyze

        ctx.progress("analysis check before the first server start")
        prev = run_analyze(ctx)
        prev.finished_at = prev.finished_at or utcnow()
        ctx.workspace.save_result(prev)
        ctx.previous["analyze"] = prev
    if prev.ok:
        extra = option_problems(prev.data, ctx.options.trust_remote_code)
        if not extra:
            return None
        blocking = [p.model_dump(mode="json") for p in extra]
        reason = BLOCKING[extra[0].code]
        diagnosis = extra[0].message
    else:
        problems = prev.data.get("problems") or []
        blocking = [p for p in problems if isinstance(p, dict) and p.get("blocking")]
        reason = prev.reason or "bad-config"
        diagnosis = prev.diagnosis or reason
    return StageResult(
        stage=stage,
        status="failed",
        reason=reason,
        diagnosis=f"stopped before starting a server (analysis check): {diagnosis}",
        next_step=NEXT_STEP.get(reason),
        started_at=started,
        finished_at=utcnow(),
        evidence=[e for e in prev.evidence if e.kind == "analysis"][:10],
        data={"preflight": "analysis", "servers_started": 0, "problems": blocking},
    )


def remote_code_flags(ctx: StageContext, profile: Any) -> list[str]:
    """The profile's `--trust-remote-code` flags for this serve: only when needed AND allowed."""
    prev = ctx.previous.get("analyze")
    analysis = prev.data if prev is not None and prev.data.get("model_path") else None
    args = getattr(getattr(profile, "serve", None), "remote_code_args", None) or []
    return rc.serve_args(args, ctx.options.trust_remote_code, analysis, ctx.model_path)
