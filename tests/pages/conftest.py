"""Jobs with stored results, logs and reports, as the control plane keeps them, for the page tests.

The results are real stage output (tests/artifacts/data/real-run: a real `adapt-bot run` on the
cpu profile); the failed job's real-gate log is a real `vllm serve` log (tests/fixtures/vllm-logs/
head16-false-ready.log) whose evidence is found by the gate's own code (runners.gates.evidence), shipped
through the runner's own packer (runners.host.logs.pack) and stored by JobStore.save_logs. Reports
are rendered by the real renderers (runners.artifacts)."""

from __future__ import annotations

import datetime as dt
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.plugins.standin import REPO

REPO_ROOT = Path(__file__).resolve().parents[2]
REAL_RUN = REPO_ROOT / "tests" / "artifacts" / "data" / "real-run"
VLLM_LOGS = REPO_ROOT / "tests" / "fixtures" / "vllm-logs"
MODEL = "org/Tiny-Llama-1B"
#: the runner's log directory as the gate wrote it (the evidence cites this path)
RUNNER_LOGS = "/var/lib/adapt-bot/work/job/out/logs"


@dataclass
class StoredJob:
    job: Any
    results: dict[str, Any]
    #: (stored log name, 1-based line, text of that line) of every evidence item with a line
    cited: list[tuple[str, int, str]]


def real_results() -> dict[str, Any]:
    from runners.contracts import StageResult

    return {p.stem: StageResult.model_validate_json(p.read_text()) for p in sorted(REAL_RUN.glob("*.json"))}


def _summaries(results: dict[str, Any]) -> dict[str, Any]:
    from bot.jobs.model import StageSummary

    return {
        k: StageSummary(
            status=r.status,
            attempt=r.attempt,
            started_at=r.started_at,
            finished_at=r.finished_at,
            reason=r.reason,
            diagnosis=r.diagnosis,
            next_step=r.next_step,
        )
        for k, r in results.items()
    }


def _store_reports(store: Any, job: Any, results: dict[str, Any], logs_url: str | None) -> None:
    from runners.artifacts import Delivery
    from runners.artifacts.builders import render_report, render_runbook

    options = job.options.model_copy(update={"issue": job.issue})
    delivery = Delivery(logs_url=logs_url)
    store.save_reports(
        job.id,
        {
            "report.zh.md": render_report(options, results, delivery),
            "runbook.zh.md": render_runbook(options, results),
        },
    )


@pytest.fixture
def make_job(deps: Any, tmp_path: Path) -> Callable[..., StoredJob]:
    """`make_job(kind, repo=..., private=..., public_url=...)`: kind "failed" (real gate died on a
    real log) or "succeeded" (the real run's results)."""
    from bot.jobs.model import Job
    from runners.contracts import JobOptions
    from runners.gates.evidence import explain
    from runners.host.logs import pack

    store = deps.store
    counter = iter(range(100, 1000))

    def make(kind: str, repo: str = REPO, private: bool = False, public_url: str | None = None) -> StoredJob:
        results = real_results()
        issue = next(counter)
        options = JobOptions(model=MODEL, profile="cpu", issue=issue)
        cited: list[tuple[str, int, str]] = []
        logs: dict[str, dict[str, str]] = {}
        if kind == "failed":
            text = (VLLM_LOGS / "head16-false-ready.log").read_text()
            lines = text.splitlines()
            sig, err = explain(lines)
            assert sig is not None and err is not None
            log_path = f"{RUNNER_LOGS}/real-gate.log"
            evidence = [sig.hit.evidence(log_path), err.evidence(log_path, kind="first-error")]
            results.pop("features"), results.pop("capacity"), results.pop("accuracy")
            real = results["real-gate"]
            results["real-gate"] = real.model_copy(
                update={
                    "status": "failed",
                    "reason": sig.signature.reason,
                    "diagnosis": sig.signature.meaning,
                    "next_step": sig.signature.next_step,
                    "evidence": evidence,
                    "data": {**real.data, "log_path": log_path},
                    "attempt": 2,
                }
            )
            run_dir = tmp_path / f"runner-{issue}"
            run_dir.mkdir()
            shutil.copy(VLLM_LOGS / "head16-false-ready.log", run_dir / "real-gate.log")
            os.utime(run_dir / "real-gate.log")
            logs["real-gate"] = pack(run_dir, since=0)
            cited = [("real-gate/real-gate.log", e.line, lines[e.line - 1]) for e in evidence if e.line]
            state = "failed:real-gate"
        else:
            state = "succeeded"
        job = Job(
            repo=repo,
            issue=issue,
            options=options,
            state=state,
            repo_private=private,
            stages=_summaries(results),
            attempts={k: r.attempt for k, r in results.items()},
            finished_at=dt.datetime.now(dt.UTC),
        )
        store.create(job)
        for r in results.values():
            store.save_result(job.id, r)
        for stage, blobs in logs.items():
            store.save_logs(job.id, stage, blobs)
        logs_url = f"{public_url.rstrip('/')}/jobs/{job.id}" if public_url else None
        _store_reports(store, job, results, logs_url)
        return StoredJob(job=job, results=results, cited=cited)

    return make
