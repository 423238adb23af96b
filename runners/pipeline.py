"""Run one stage of a job on this host: the only entry the Celery task and the CLI use.

Order and reuse: a stage sees the stored results of the stages before it, so a rerun of S
reuses everything before S. Any exception inside a stage becomes an `error` StageResult
(with the exception type and message) instead of a lost task.
"""

from __future__ import annotations

import os
import traceback
from collections.abc import Callable
from pathlib import Path

from runners import accounting
from runners.context import CancelToken, LocalCancel, StageContext
from runners.contracts import RUNNER_STAGES, JobOptions, StageResult, stages_before, utcnow
from runners.model_ref import ModelRefError, parse_model_ref
from runners.stages import stage_function
from runners.weights import WeightsError
from runners.workspace import Workspace


def default_models_root() -> Path:
    return Path(os.environ.get("ADAPT_BOT_MODELS_ROOT", "/models"))


def resolve_model_path(
    options: JobOptions, models_root: Path | None = None, progress: Callable[[str], None] | None = None
) -> Path:
    """The checkpoint directory: `local_path`, a local checkout whose provenance matches, or the
    pinned revision downloaded once into the shared model cache (runners.weights)."""
    if options.local_path:
        path = Path(options.local_path).resolve()
        if not path.is_dir():
            raise ModelRefError(f"{options.local_path} is not a directory")
        return path
    from runners.weights import ensure_weights

    weights = ensure_weights(
        parse_model_ref(options.model),
        models_root=models_root or default_models_root(),
        revision=getattr(options, "revision", None),
        progress=progress,
    )
    return weights.path


def execute_stage(
    job_id: str,
    stage: str,
    options: JobOptions,
    *,
    attempt: int = 1,
    cancel: CancelToken | None = None,
    progress: Callable[[str], None] | None = None,
    work_root: Path | None = None,
    models_root: Path | None = None,
    target_repo: Path | None = None,
    vllm_root: Path | None = None,
    vllm_ascend_root: Path | None = None,
    workspace: Workspace | None = None,
) -> StageResult:
    """Run `stage` for `job_id`, save its result in the workspace and return it.

    `workspace` overrides `<work_root>/<job_id>` (the CLI writes straight into `--out`).
    """
    if stage not in RUNNER_STAGES:
        raise ValueError(f"unknown stage {stage!r}; runner stages: {', '.join(RUNNER_STAGES)}")
    ws = workspace or Workspace.for_job(job_id, work_root)
    ws.ensure()
    started = utcnow()
    try:
        from runners.profile import load_profile

        model_path = resolve_model_path(options, models_root, progress)
        stored = ws.load_results()
        ctx = StageContext(
            job_id=job_id,
            options=options,
            model_path=model_path,
            workspace=ws,
            profile=load_profile(options.profile),
            previous={s: stored[s] for s in stages_before(stage) if s in stored},
            cancel=cancel or LocalCancel(),
            progress=progress or (lambda _line: None),
            attempt=attempt,
            target_repo=target_repo,
            vllm_root=vllm_root,
            vllm_ascend_root=vllm_ascend_root,
        )
        from runners.analysis.preflight import check_before_serving

        # blocking defects (and remote code without the opt-in) stop a server stage before any start
        result = check_before_serving(ctx, stage) or stage_function(stage)(ctx)
        if "versions" not in result.data:  # what ran: vLLM, vllm-ascend, torch, model revision
            from runners.versions import job_versions

            result.data["versions"] = job_versions(ctx)
    except WeightsError as exc:  # the checkpoint could not be made available on this runner
        result = StageResult(
            stage=stage,
            status="error" if exc.retryable else "failed",
            reason=f"weights-{exc.code}",
            diagnosis=exc.message,
            next_step=f"/adapt rerun {stage}" if exc.retryable else None,
            started_at=started,
        )
    except ModelRefError as exc:
        result = StageResult(
            stage=stage, status="failed", reason="bad-model", diagnosis=str(exc), started_at=started
        )
    except Exception as exc:  # a stage bug must still produce a result the job can report
        result = StageResult(
            stage=stage,
            status="error",
            reason="internal-error",
            diagnosis=f"{type(exc).__name__}: {exc}",
            next_step="This is a bug in adapt-bot; the traceback is in the stage result data.",
            started_at=started,
            data={"traceback": traceback.format_exc(limit=20)},
        )
    result.attempt = attempt
    if result.finished_at is None:
        result.finished_at = utcnow()
    if "device_seconds" not in result.data:  # devices × seconds of the stage's processes
        result.data.update(accounting.stage_data(ws.logs, result.started_at, result.finished_at))
    ws.save_result(result)
    return result
