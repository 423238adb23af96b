"""Jobs as JSON (`/api/jobs`, `/api/jobs/{id}`) and a small HTML page (`/jobs`, autoescaped)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from starlette.concurrency import run_in_threadpool

from bot.comments import fmt_duration, headline
from bot.jobs.store import JobStore
from runners.contracts import utcnow
from runners.render import render

router = APIRouter()


def _store(request: Request) -> JobStore:
    store: JobStore = request.app.state.store
    return store


@router.get("/api/jobs")
async def list_jobs(request: Request, limit: int = 100) -> dict[str, Any]:
    jobs = await run_in_threadpool(_store(request).recent, max(1, min(limit, 500)))
    return {"jobs": [j.summary() for j in jobs]}


def _detail(store: JobStore, job_id: str) -> dict[str, Any] | None:
    job = store.get(job_id)
    if job is None:
        return None
    results = store.results(job_id)
    return {
        **job.summary(),
        "job": job.model_dump(mode="json"),
        "results": {k: v.model_dump(mode="json", exclude={"data"}) for k, v in results.items()},
        "progress": store.progress(job_id, 20),
        "files": sorted(store.files(job_id)),
        "reports": sorted(store.reports(job_id)),
    }


@router.get("/api/jobs/{job_id}")
async def get_job(request: Request, job_id: str) -> dict[str, Any]:
    if len(job_id) > 64:
        raise HTTPException(404, "no such job")
    detail = await run_in_threadpool(_detail, _store(request), job_id)
    if detail is None:
        raise HTTPException(404, "no such job")
    return detail


@router.get("/", include_in_schema=False)
async def root() -> RedirectResponse:
    return RedirectResponse("/jobs")


@router.get("/jobs", response_class=HTMLResponse)
async def jobs_page(request: Request) -> HTMLResponse:
    jobs = await run_in_threadpool(_store(request).recent, 200)
    now = utcnow()
    rows = [
        {
            "job": j,
            "headline": headline(j),
            "age": fmt_duration((now - j.created_at).total_seconds()),
            "issue_url": f"https://github.com/{j.repo}/issues/{j.issue}",
        }
        for j in jobs
    ]
    return HTMLResponse(render("pages/jobs.html", rows=rows))
