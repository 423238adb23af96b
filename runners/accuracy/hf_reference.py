"""The transformers reference for the plausibility check: lm-eval `model=hf` on the same samples.

When neither the issue nor the model card gives a published score for a task, the only reference
left is the checkpoint itself run by transformers: the same lm-eval task, the same settings and the
same first `limit` documents the served measurement used (lm-eval's `--limit` takes the first N),
on CPU in the serving environment's python (it has torch, transformers and lm-eval). A served
metric far below it (checks.REFERENCE_FRACTION) is the port losing accuracy, not the model.

Bounded like the parity reference (runners.gates.reference): the memory rule and its sentence
("reference skipped: needs N GB, budget M GB"), the process group's RSS polled against the budget,
a wall-clock limit (ADAPT_BOT_HF_REFERENCE_TIMEOUT_S), cancellation; at most MAX_DOCS documents
(ADAPT_BOT_HF_REFERENCE_LIMIT). ADAPT_BOT_HF_REFERENCE=off turns it off. It never fails the stage:
a reference that cannot run is recorded with its reason and only the chance-level check remains.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runners.accuracy.plan import AccuracyPlan, settings_argv
from runners.accuracy.references import SOURCE_ENV, SOURCE_ISSUE, SOURCE_TRANSFORMERS, sources_for
from runners.accuracy.results import find_results_file, parse_results, read_doc_scores, responses
from runners.gates.reference import (
    GB,
    budget_gb,
    need_gb,
    needs_remote_code,
    parameter_count_from_headers,
    reference_python,
    serve_dtype,
    skip_sentence,
    watch_group,
)

SWITCH_ENV = "ADAPT_BOT_HF_REFERENCE"
TIMEOUT_ENV = "ADAPT_BOT_HF_REFERENCE_TIMEOUT_S"
LIMIT_ENV = "ADAPT_BOT_HF_REFERENCE_LIMIT"
DEFAULT_TIMEOUT_S = 900.0
#: documents per task at most (transformers on CPU generates a few tokens per second on a big model)
MAX_DOCS = 50


@dataclass
class HfReference:
    """What the transformers run gave: {task: {metric: value}} and how it was obtained."""

    references: dict[str, dict[str, float]] = field(default_factory=dict)
    record: dict[str, Any] = field(default_factory=dict)


def _float_env(environ: Mapping[str, str], name: str, default: float) -> float:
    try:
        return float(environ.get(name) or default)
    except ValueError:
        return default


def hf_argv(
    python: Path, model_dir: Path, plan: AccuracyPlan, tasks: Sequence[str], *, limit: int, dtype: str,
    output: Path, trust_remote_code: bool,
) -> list[str]:  # fmt: skip
    """lm-eval with model=hf on CPU, with the served measurement's settings and `limit`."""
    model_args = f"pretrained={model_dir},dtype={dtype}"
    if trust_remote_code:
        model_args += ",trust_remote_code=True"
    argv = [
        str(python),
        "-m",
        "lm_eval",
        "run",
        "--model",
        "hf",
        "--model_args",
        model_args,
        "--device",
        "cpu",
    ]
    # batch 1: lm-eval's "auto" probes ever larger batches, which on CPU means ever more memory
    argv += settings_argv(tasks, {**plan.settings(), "limit": limit, "batch_size": 1})
    argv += ["--output_path", str(output), "--log_samples"]
    if plan.include_path is not None:
        argv += ["--include_path", str(plan.include_path)]
    return argv


def _run_bounded(
    argv: list[str], *, env: Mapping[str, str], cwd: Path, log: Path, budget: float, timeout_s: float,
    cancel: Any,
) -> tuple[int | None, str | None, float]:  # fmt: skip
    """(exit code, why it was stopped or None, peak group RSS in GB)."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("wb") as out:
        proc = subprocess.Popen(
            argv, env=dict(env), cwd=cwd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    reason, peak = watch_group(
        proc, budget_gb=budget, deadline=time.monotonic() + timeout_s, timeout_s=timeout_s, cancel=cancel
    )
    if reason is not None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(10)
    return proc.returncode, reason, round(peak / GB, 3)


def transformers_reference(
    *,
    model_dir: Path,
    plan: AccuracyPlan,
    tasks: Sequence[str],
    profile: Any,
    env: Mapping[str, str],
    cwd: Path,
    output: Path,
    log: Path,
    trust_remote_code: bool = False,
    served_output: Path | None = None,
    cancel: Any = None,
    environ: Mapping[str, str] | None = None,
) -> HfReference:
    """Run lm-eval model=hf on `tasks` (decide first whether it may run); never raises."""
    environ = os.environ if environ is None else environ
    limit = int(_float_env(environ, LIMIT_ENV, MAX_DOCS))
    limit = min(limit, plan.limit) if plan.limit is not None else limit
    rec: dict[str, Any] = {"source": SOURCE_TRANSFORMERS, "tasks": list(tasks), "limit": limit, "ran": False}
    try:
        config = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        config = {}
    config = config if isinstance(config, dict) else {}
    dtype = serve_dtype(profile.serve.argv, profile.serve.defaults, config)
    count, total_bytes = parameter_count_from_headers(model_dir)
    need = need_gb(count if count is not None else total_bytes // 2, dtype)
    budget, budget_source = budget_gb(environ, profile)
    timeout_s = _float_env(environ, TIMEOUT_ENV, DEFAULT_TIMEOUT_S)
    rec.update(need_gb=round(need, 2), budget_gb=budget, budget_source=budget_source, dtype=dtype)
    rec.update(timeout_s=timeout_s, log_path=str(log))
    if need > budget:
        return HfReference(record={**rec, "skip_reason": skip_sentence(need, budget)})
    if needs_remote_code(config) and not trust_remote_code:
        why = "reference skipped: the model needs its own code (auto_map) and the job does not allow it"
        return HfReference(record={**rec, "skip_reason": why})
    python = reference_python(profile.vllm_command())
    if not python.exists():
        why = f"reference skipped: no python at {python} (the serving environment's)"
        return HfReference(record={**rec, "skip_reason": why})
    output.mkdir(parents=True, exist_ok=True)
    argv = hf_argv(
        python, model_dir, plan, tasks, limit=limit, dtype=dtype, output=output,
        trust_remote_code=trust_remote_code,
    )  # fmt: skip
    rec["argv"] = argv
    t0 = time.monotonic()
    code, stopped, peak = _run_bounded(
        argv, env=env, cwd=cwd, log=log, budget=budget, timeout_s=timeout_s, cancel=cancel
    )
    rec.update(wall_s=round(time.monotonic() - t0, 2), peak_group_rss_gb=peak, exit_code=code)
    results = find_results_file(output)
    if stopped is not None or code != 0 or results is None:
        tail = [ln for ln in log.read_text("utf-8", errors="replace").splitlines() if ln.strip()][-3:]
        why = stopped or f"reference failed (exit {code}): {' | '.join(tail)[:500] or 'no output'}"
        return HfReference(record={**rec, "skip_reason": why})
    measured = parse_results(json.loads(results.read_text(encoding="utf-8")), tuple(tasks))
    docs = read_doc_scores(output)
    served = read_doc_scores(served_output) if served_output is not None else {}
    refs: dict[str, dict[str, float]] = {}
    rows = []
    for t in measured:
        for m in t["metrics"]:
            ids = docs.get((t["name"], m["name"]), {})
            same = served.get((t["name"], m["name"]), {})
            common = sorted(set(ids) & set(same))
            rows.append(
                {
                    "task": t["name"],
                    "metric": m["name"],
                    "value": m["value"],
                    "samples": len(ids),
                    # the served metric on exactly these documents (the like-for-like figure)
                    "served_same_samples": (sum(same[d] for d in common) / len(common)) if common else None,
                    "compared_samples": len(common),
                }
            )
            refs.setdefault(t["name"], {})[m["name"]] = float(m["value"])
    rec.update(ran=True, metrics=rows, samples=max((r["samples"] for r in rows), default=0))
    if served_output is not None:  # the same documents, answered by both (greedy: mostly alike)
        mine, theirs = responses(output), responses(served_output)
        common_docs = sorted(set(mine) & set(theirs))
        rec["compared_responses"] = len(common_docs)
        rec["identical_responses"] = sum(1 for k in common_docs if mine[k] == theirs[k])
    return HfReference(references=refs, record=rec)


def complete(
    ctx: Any,
    refs: dict[str, dict[str, float]],
    tasks: Sequence[Mapping[str, Any]],
    plan: AccuracyPlan,
    *,
    env: Mapping[str, str],
    cwd: Path,
    served_output: Path | None,
) -> tuple[dict[str, dict[str, float]], dict[str, str], dict[str, Any]]:
    """The accuracy stage's references: the issue's and the card's (their source told apart), then
    the transformers reference for the measured tasks neither names. (refs, {task: source}, record)."""
    default = SOURCE_ISSUE if getattr(ctx.options, "accuracy_references", None) else SOURCE_ENV
    refs = {t: m for t, m in refs.items() if m}
    sources = sources_for(refs, getattr(ctx.options, "accuracy_reference_sources", None), default)
    missing = [t["name"] for t in tasks if t["name"] not in refs and t.get("metrics")]
    if not missing:
        return refs, sources, {"ran": False, "why": "every measured task has a published reference"}
    if (os.environ.get(SWITCH_ENV) or "").lower() in ("off", "0", "false", "no"):
        return refs, sources, {"ran": False, "why": f"{SWITCH_ENV}=off"}
    hf = transformers_reference(
        model_dir=Path(ctx.model_path),
        plan=plan,
        tasks=missing,
        profile=ctx.profile,
        env=env,
        cwd=cwd,
        output=ctx.workspace.path / "accuracy" / "transformers",
        log=ctx.workspace.log_path("lm-eval-transformers"),
        trust_remote_code=bool(getattr(ctx.options, "trust_remote_code", False)),
        served_output=served_output,
        cancel=getattr(ctx, "cancel", None),
    )
    for task, metrics in hf.references.items():
        refs[task] = metrics
        sources[task] = SOURCE_TRANSFORMERS
    return refs, sources, hf.record
