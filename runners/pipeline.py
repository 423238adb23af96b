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

from runners import accounting, shared_start
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
    share_servers: bool = False,
    job_cancelled: Callable[[], bool] | None = None,
) -> StageResult:
    """Run `stage` for `job_id`, save its result in the workspace and return it.

    `workspace` overrides `<work_root>/<job_id>` (the CLI writes straight into `--out`).
    `share_servers`: the caller runs the whole job, stage after stage, in this process (the runner
    task, `adapt-bot run`): the real gate, the capacity baseline and accuracy then share one
    real-weight start when their flags agree (runners.shared_start; `ADAPT_BOT_SHARED_START=0`
    turns it off). `job_cancelled` reads the job's cancel flag while a kept server waits between
    stages (default: the stage's cancel token).
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

        active = _share_plan(ctx, stage, job_cancelled) if shared_start.enabled(share_servers) else None
        if shared_start.enabled(share_servers):
            shared_start.release_others(job_id, f"a stage of another job ({job_id}) runs in this process")
            if stage == "features":
                try:
                    _room_for_probes(ctx)
                except Exception:  # the probes' own lease wait is the backstop
                    shared_start.release(job_id, "the feature probes' device needs are unknown")
        # blocking defects (and remote code without the opt-in) stop a server stage before any start
        with shared_start.activate(active):
            result = check_before_serving(ctx, stage) or stage_function(stage)(ctx)
        if active is not None:
            result.data["shared_start"] = _share_record(active)
            park = shared_start.park_of(job_id)
            last = active.uses[-1] if active.uses else {}
            if park is not None and last.get("id") != park.id:
                # e.g. a false-ready shared start and a pass on a ladder rung: what passed is not it
                shared_start.release(job_id, f"the last start of {stage} was not the shared one")
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
    if shared_start.park_of(job_id) is not None and (not result.ok or stage not in KEEP_AFTER):
        # the job stops here, or no later stage can use it: stop it now
        shared_start.release(job_id, f"{stage} {result.status}" if not result.ok else f"{stage} ended")
    if "device_seconds" not in result.data:  # devices × seconds of the stage's processes
        result.data.update(accounting.stage_data(ws.logs, result.started_at, result.finished_at))
    ws.save_result(result)
    return result


#: A kept real-weight server survives a passing stage only up to the last stage that can use it.
KEEP_AFTER = ("real-gate", "capacity")


def _share_plan(
    ctx: StageContext, stage: str, job_cancelled: Callable[[], bool] | None
) -> shared_start.Active | None:
    """The shared-start plan of a user stage; None for other stages, a checkpoint without
    weights, or a plan that cannot be made (sharing saves starts; it never fails a stage)."""
    if stage not in shared_start.USERS:
        return None
    try:
        return _make_share_plan(ctx, stage, job_cancelled)
    except Exception as exc:
        ctx.progress(f"no shared real-weight start for {stage}: {type(exc).__name__}: {exc}")
        return None


def _make_share_plan(
    ctx: StageContext, stage: str, job_cancelled: Callable[[], bool] | None
) -> shared_start.Active | None:
    from runners.gates.gate import has_weights

    if not has_weights(ctx.model_path):
        return None
    from runners.stages.accuracy import serve_overrides
    from runners.stages.capacity import first_request

    analysis = ctx.previous.get("analyze")
    acc = serve_overrides(ctx, analysis.data if analysis else {})
    defaults = ctx.profile.serve.defaults
    acc_len = acc.get("max_model_len") or ctx.options.max_model_len or defaults.get("max_model_len")
    plan = shared_start.make_plan(
        ctx.job_id,
        stage,
        first=first_request(ctx),
        accuracy_len=int(acc_len) if acc_len is not None else None,
        accuracy_seqs=defaults.get("max_num_seqs"),
    )
    return shared_start.Active(plan=plan, ctx=ctx, cancel_probe=job_cancelled or ctx.cancel.is_set)


def _share_record(active: shared_start.Active) -> dict[str, object]:
    """`data.shared_start` of a user stage: the plan, each start's role, and the shared server's id
    (a later stage of the same run adopts the server only when this id is in its previous results)."""
    ids = [u["id"] for u in active.uses if u.get("id") and u.get("role") in ("started", "adopted")]
    return {"id": ids[-1] if ids else None, **active.summary()}


def _room_for_probes(ctx: StageContext) -> None:
    """The feature probes run between the real gate and capacity: stop the kept real-weight server
    when a probe needs devices it holds (the Ascend pools), keep it when the pool has room."""
    park = shared_start.park_of(ctx.job_id)
    if park is None:
        return
    from runners.contracts import FEATURES
    from runners.gates.gate import model_facts
    from runners.serve import per_job_devices
    from runners.stages.features import data_parallel, decide_static

    prof = ctx.profile
    applic = model_facts(ctx).get("features") or {}
    needs = []
    for feature in FEATURES:
        spec = prof.features.get(feature)
        decision = decide_static(
            feature, applic.get(feature), spec, prof, tp=ctx.options.tp or 1, requested=ctx.options.features
        )
        if spec is not None and not hasattr(decision, "status"):
            needs.append(spec.devices or per_job_devices(ctx, prof) * data_parallel(decision))
    if needs:
        shared_start.make_room(
            ctx.job_id, len(prof.devices.pool), max(needs), "the feature probes need the devices it holds"
        )
