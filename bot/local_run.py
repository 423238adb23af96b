"""The whole job on one machine, no GitHub: what `adapt-bot run` and `adapt-bot demo` do.

Runs the runner stages in order through `runners.pipeline.execute_stage` (the same entry the
Celery task uses), stops at the first stage that fails, then delivers locally: one signed-off
commit on `adapt/<slug>-<issue>` in the target checkout, and the report, runbook and
result.json in the output directory. It ends with the verdict the runs earned (runners.verdict):
`validated`, `serves, not validated: <reasons>` or `failed: <stage>: <reason>`, also in
result.json. The exit code is 0 when every stage ran (whatever the verdict), 1 otherwise.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bot.progress import StageProgress
from runners.artifacts.wording import verdict_block
from runners.context import LocalCancel
from runners.contracts import RUNNER_STAGES, JobOptions, StageResult
from runners.model_ref import parse_model_ref
from runners.pipeline import execute_stage
from runners.verdict import Verdict, judge
from runners.workspace import Workspace

DEFAULT_SIGNOFF = "adapt-bot <adapt-bot@users.noreply.github.com>"


@dataclass
class LocalRunConfig:
    options: JobOptions
    repo: Path
    out: Path
    models_root: Path | None = None
    signoff: str = DEFAULT_SIGNOFF
    vllm_root: Path | None = None
    vllm_ascend_root: Path | None = None
    stop_after: str | None = None


@dataclass
class LocalRunOutcome:
    state: str  # succeeded | failed:<stage> | cancelled
    results: dict[str, StageResult]
    timings: dict[str, float]
    total_s: float
    commit: dict[str, Any] | None = None
    files: dict[str, str] = field(default_factory=dict)  # name -> path written in out/
    #: what the runs earned (runners.verdict); a finished run is not a validated one
    verdict: Verdict | None = None

    @property
    def ok(self) -> bool:
        return self.state == "succeeded"


def model_slug(options: JobOptions) -> str:
    if options.local_path:
        name = Path(options.local_path).name
        return parse_model_ref(f"/models/{name}").slug if name else "model"
    return parse_model_ref(options.model).slug


def branch_name(options: JobOptions) -> str:
    return f"adapt/{model_slug(options)}-{options.issue if options.issue is not None else 0}"


def run_local(cfg: LocalRunConfig, progress: StageProgress | None = None) -> LocalRunOutcome:
    ws = Workspace(cfg.out.resolve())
    ws.ensure()
    job_id = f"local-{model_slug(cfg.options)}"
    cancel = LocalCancel()
    stages = (
        RUNNER_STAGES if cfg.stop_after is None else RUNNER_STAGES[: RUNNER_STAGES.index(cfg.stop_after) + 1]
    )
    progress = progress or StageProgress(total=len(stages) + (cfg.stop_after is None))
    results: dict[str, StageResult] = {}
    timings: dict[str, float] = {}
    t0 = time.monotonic()
    state = "succeeded"
    for stage in stages:
        progress.begin(stage)
        s0 = time.monotonic()
        try:
            result = execute_stage(
                job_id,
                stage,
                cfg.options,
                cancel=cancel,
                progress=progress.update,
                models_root=cfg.models_root,
                target_repo=cfg.repo,
                vllm_root=cfg.vllm_root,
                vllm_ascend_root=cfg.vllm_ascend_root,
                workspace=ws,
                share_servers=True,  # one real-weight start for real gate, capacity, accuracy
            )
        except KeyboardInterrupt:
            cancel.set()
            state = "cancelled"
            progress.end("cancelled")
            break
        timings[stage] = time.monotonic() - s0
        results[stage] = result
        progress.end(result.status, result.diagnosis or result.reason or "")
        if not result.ok:
            state = f"failed:{stage}"
            break

    commit: dict[str, Any] | None = None
    if state == "succeeded" and cfg.stop_after is None:
        progress.begin("deliver")
        s0 = time.monotonic()
        commit = _deliver(cfg, ws)
        timings["deliver"] = time.monotonic() - s0
        progress.end("passed", f"{commit['sha'][:12]} on {commit['branch']}")
    total = time.monotonic() - t0
    outcome = LocalRunOutcome(
        state=state,
        results=results,
        timings=timings,
        total_s=total,
        commit=commit,
        verdict=judge(results, cfg.options.profile),
    )
    outcome.files = _write_outputs(cfg, ws, outcome)
    return outcome


def print_outcome(outcome: LocalRunOutcome, repo: Path) -> int:
    """The closing summary of `adapt-bot run` / `demo` on stderr; returns the exit code."""
    print(f"\n{outcome.state} in {outcome.total_s:.1f} s", file=sys.stderr)
    for stage, seconds in outcome.timings.items():
        print(f"  {stage:<11} {seconds:7.1f} s", file=sys.stderr)
    if outcome.commit:
        print(
            f"commit {outcome.commit['sha']} on branch {outcome.commit['branch']} in {repo}", file=sys.stderr
        )
    for path in outcome.files.values():
        print(f"wrote {path}", file=sys.stderr)
    if outcome.verdict is not None:
        # the last word: what the run earned and why (a finished run is not a validated one)
        print(verdict_block(outcome.verdict), file=sys.stderr)
    return 0 if outcome.ok else 1


def _deliver(cfg: LocalRunConfig, ws: Workspace) -> dict[str, Any]:
    from runners.artifacts import commit_message
    from runners.candidate import adapter_files, delivered_files
    from runners.delivery_local import commit_local

    code: dict[str, bytes] = {}
    if cfg.options.candidate is not None:  # its minimal diff, fetched here at the pinned SHA
        code = delivered_files(cfg.options.candidate)
    code.update(adapter_files(ws.load_results(), code))  # an adopted adapter patch (runners.adapter)
    for rel, data in code.items():
        (ws.repo_files / rel).parent.mkdir(parents=True, exist_ok=True)
        (ws.repo_files / rel).write_bytes(data)
    analysis = ws.load_result("analyze")
    message = commit_message(
        options=cfg.options, analysis=analysis.data if analysis else {}, results=ws.load_results()
    )
    done = commit_local(
        cfg.repo, ws.repo_files, branch=branch_name(cfg.options), message=message, signoff=cfg.signoff
    )
    return {"sha": done.sha, "branch": done.branch, "base": done.base, "files": list(done.files)}


def _write_outputs(cfg: LocalRunConfig, ws: Workspace, outcome: LocalRunOutcome) -> dict[str, str]:
    from runners.artifacts import render_report, render_runbook

    results = ws.load_results()
    written: dict[str, str] = {}
    report = render_report(options=cfg.options, results=results, commit=outcome.commit, workspace=ws)
    runbook = render_runbook(options=cfg.options, results=results)
    for name, text in (("report.zh.md", report), ("runbook.zh.md", runbook)):
        path = cfg.out / name
        path.write_text(text, encoding="utf-8")
        written[name] = str(path)
    features = results.get("features")
    doc = {
        "job_id": f"local-{model_slug(cfg.options)}",
        "state": outcome.state,
        "verdict": outcome.verdict.model_dump(mode="json") if outcome.verdict else None,
        "options": cfg.options.model_dump(mode="json"),
        "stages": {s: r.model_dump(mode="json") for s, r in results.items()},
        "feature_matrix": (features.data.get("features") if features else None),
        "commit": outcome.commit,
        "timings": {
            "total_s": round(outcome.total_s, 3),
            "by_stage_s": {k: round(v, 3) for k, v in outcome.timings.items()},
        },
        "logs": sorted(str(p) for p in ws.logs.glob("*.log")),
    }
    path = cfg.out / "result.json"
    path.write_text(json.dumps(doc, indent=2, ensure_ascii=False), encoding="utf-8")
    written["result.json"] = str(path)
    return written
