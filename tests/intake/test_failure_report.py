"""A job that fails gets its full report on the issue (what ran, the evidence, the diagnosis, the
next step), posted by its own control task — once, edited in place on a later failure."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from runners.contracts import Evidence
from tests.intake.test_flow import finish_stage, label, new_issue, ours
from tests.plugins.standin import REPO


def reports(gh: Any, n: int, job_id: str) -> list[dict[str, Any]]:
    return [c for c in ours(gh, n) if f"<!-- adapt-bot:report job={job_id} -->" in c["body"]]


def test_a_failed_job_gets_its_full_report_once(
    post: Callable[..., Any], github_standin: Any, deps: Any, drain: Callable[[], list[Any]]
) -> None:
    gh = github_standin
    n = new_issue(gh)
    label(post, gh, n)
    drain()
    job = deps.store.active_for(REPO, n)
    finish_stage(deps, job.id, "analyze")
    finish_stage(
        deps,
        job.id,
        "dummy-gate",
        status="failed",
        reason="false-ready",
        diagnosis="the first completion crashed the engine: Unsupported CPU attention configuration",
        next_step="use a supported head size (32, 64, 80, ...), then `/adapt rerun dummy-gate`",
        evidence=[Evidence(kind="log", text="Unsupported CPU attention configuration: head_dim=16", line=42)],
    )
    assert deps.store.get(job.id).state == "failed:dummy-gate"
    assert "reported" in drain()
    (report,) = reports(gh, n, job.id)
    body = report["body"]
    assert "dummy-gate" in body and "false-ready" in body
    assert "Unsupported CPU attention configuration" in body
    assert "/adapt rerun dummy-gate" in body
    # the task is idempotent: a redelivered copy edits the same comment
    import bot.tasks

    assert bot.tasks.report_failure(job.id) == "reported"
    assert len(reports(gh, n, job.id)) == 1
