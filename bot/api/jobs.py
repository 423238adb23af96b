"""Jobs as JSON (`/api/jobs`, `/api/jobs/{id}`) and a small HTML page (`/jobs`, autoescaped).

What a viewer sees follows the repository's visibility (bot.api.access): public repositories'
jobs for everyone, private ones for a signed-in user who can read the repository or the operator
token. The page also lists accepted deliveries that are not applied yet (bot.ledger), so a GitHub
outage shows as "waiting, retry n" instead of silence."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from starlette.concurrency import run_in_threadpool

from bot.api.access import Viewer, access, job_visibility
from bot.comments import fmt_duration, headline
from bot.jobs.model import Job
from bot.jobs.store import JobStore
from bot.ledger import Ledger
from runners.contracts import utcnow
from runners.render import render

router = APIRouter()


def _store(request: Request) -> JobStore:
    store: JobStore = request.app.state.store
    return store


async def _visible_jobs(request: Request, viewer: Viewer, limit: int) -> list[Job]:
    jobs = await run_in_threadpool(_store(request).recent, limit)
    ok = await access(request).visible(viewer, [job_visibility(j) for j in jobs])
    return [j for j, shown in zip(jobs, ok, strict=True) if shown]


def _pending_rows(request: Request) -> list[dict[str, Any]]:
    """Accepted deliveries not applied yet, with what they ask for (from the stored intents)."""
    r = request.app.state.redis
    now = utcnow().timestamp()
    rows = []
    for p in Ledger(r).pending(100):
        raws = r.mget([f"adapt:intent:{i}" for i in p.ids])
        intents = [orjson.loads(x) for x in raws if x]
        if not intents:
            continue
        first = intents[0]
        rows.append(
            {
                "repo": first.get("repo") or "",
                "private": first.get("repo_private"),
                "issue": first.get("issue"),
                "kinds": ", ".join(str(i.get("kind")) for i in intents),
                "via": first.get("via"),
                "age": fmt_duration(now - p.accepted_at),
                "retries": p.retries,
                "error": p.error or "",
            }
        )
    return rows


async def _visible_pending(request: Request, viewer: Viewer) -> list[dict[str, Any]]:
    rows = await run_in_threadpool(_pending_rows, request)
    ok = await access(request).visible(viewer, [(row["repo"], row["private"]) for row in rows])
    return [row for row, shown in zip(rows, ok, strict=True) if shown]


@router.get("/api/jobs")
async def list_jobs(request: Request, limit: int = 100) -> dict[str, Any]:
    viewer = access(request).viewer(request)
    jobs = await _visible_jobs(request, viewer, max(1, min(limit, 500)))
    out: dict[str, Any] = {"jobs": [j.summary() for j in jobs]}
    pending = await _visible_pending(request, viewer)
    if pending:
        out["pending"] = pending
    return out


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


async def readable_job(request: Request, job_id: str) -> Job:
    """The job if the viewer may read it (bot.api.access), else 404 (anonymous: a private
    repository's job does not exist for them) or 403. Every per-job route (JSON, pages, logs) asks here."""
    if len(job_id) > 64:
        raise HTTPException(404, "no such job")
    a = access(request)
    viewer = a.viewer(request)
    job = await run_in_threadpool(_store(request).get, job_id)
    if job is None:
        raise HTTPException(404, "no such job")
    if not await a.can_read(viewer, *job_visibility(job)):
        if viewer.anonymous:  # do not confirm to strangers that a private repository has jobs
            raise HTTPException(404, "no such job")
        raise HTTPException(403, f"{viewer.login or 'this token'} cannot read {job.repo}")
    return job


@router.get("/api/jobs/{job_id}")
async def get_job(request: Request, job_id: str) -> dict[str, Any]:
    await readable_job(request, job_id)
    detail = await run_in_threadpool(_detail, _store(request), job_id)
    if detail is None:
        raise HTTPException(404, "no such job")
    return detail


@router.get("/", include_in_schema=False)
async def root() -> RedirectResponse:
    return RedirectResponse("/jobs")


@router.get("/jobs", response_class=HTMLResponse)
async def jobs_page(request: Request) -> HTMLResponse:
    a = access(request)
    viewer = a.viewer(request)
    jobs = await _visible_jobs(request, viewer, 200)
    pending = await _visible_pending(request, viewer)
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
    return HTMLResponse(
        render(
            "pages/jobs.html",
            rows=rows,
            pending=pending,
            login=viewer.login,
            can_sign_in=a.oauth_enabled and viewer.anonymous,
        )
    )
