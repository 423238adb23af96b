"""The job page (`/jobs/{id}`) and its logs (`/jobs/{id}/logs/{stage}/{file}`), server-rendered.

These are the pages every link the bot posts lands on (status comment, PR body, check runs, final
and failure reports). Access is `bot.api.jobs.readable_job` (the repository's visibility, via
bot.api.access). Everything shown comes from the runner (untrusted): the templates are autoescaped
`*.html`, reports and logs are shown as text, and the Content-Security-Policy forbids scripts and
any resource from elsewhere (the pages need neither).

Log names are `<stage>/<file>` as stored by `JobStore.save_logs`; an evidence item's `log_path`
(a path on the runner) maps to the stored name by file name, the evidence's own stage first.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping
from pathlib import PurePosixPath
from typing import Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import HTMLResponse, PlainTextResponse, Response
from starlette.concurrency import run_in_threadpool

from bot.api.access import access
from bot.api.jobs import readable_job
from bot.comments import fmt_duration, headline, verdict_for
from bot.jobs.logs import LogStoreError
from bot.jobs.model import Job
from bot.jobs.store import JobStore
from runners.artifacts.facts import collect, shell_join
from runners.artifacts.wording import verdict_block
from runners.contracts import STAGES, StageResult, utcnow
from runners.host.logs import LOG_NAME
from runners.render import clip, render

router = APIRouter()
log = logging.getLogger(__name__)

STAGE_NAME = re.compile(r"^[a-z][a-z0-9-]{0,40}$")
#: pages must not load anything from elsewhere, nor run scripts (runner text is shown on them)
CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; base-uri 'none'; form-action 'self'"
)
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}
#: report files in the order the page shows them, with their anchors
REPORT_ANCHORS = {"report.zh.md": "report", "runbook.zh.md": "runbook"}


def log_href(job_id: str, name: str, line: int | None = None) -> str:
    """The page of one stored log (`name` is `<stage>/<file>`), at a line when given."""
    return f"/jobs/{job_id}/logs/{name}" + (f"#L{line}" if line else "")


def stored_log_name(log_path: str | None, stage: str | None, names: Iterable[str]) -> str | None:
    """The stored `<stage>/<file>` for a runner path: same file name, the evidence's stage first."""
    if not log_path:
        return None
    base = PurePosixPath(log_path).name
    if not LOG_NAME.match(base):
        return None
    stored = list(names)
    if stage and f"{stage}/{base}" in stored:
        return f"{stage}/{base}"
    return next((n for n in stored if n.rpartition("/")[2] == base), None)


def _report_anchor(name: str) -> str:
    return REPORT_ANCHORS.get(name) or "file-" + re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def job_view(
    job: Job,
    results: Mapping[str, StageResult],
    log_names: list[str],
    reports: Mapping[str, str],
    progress: list[dict[str, str]],
) -> dict[str, Any]:
    """What `templates/pages/job.html` shows (pure: from the stored records)."""
    now = utcnow()
    options = job.options.model_copy(update={"issue": job.issue})
    facts = collect(options, results)
    verdict = verdict_for(job, results)

    def link(log_path: str | None, stage: str | None, line: int | None = None) -> str | None:
        name = stored_log_name(log_path, stage, log_names)
        return log_href(job.id, name, line) if name else None

    stages = []
    for stage in STAGES:
        s = job.stages.get(stage)
        r = results.get(stage)
        if s is None and r is None:
            continue
        started = (s.started_at if s else None) or (r.started_at if r else None)
        finished = (s.finished_at if s else None) or (r.finished_at if r else None)
        status = s.status if s else r.status if r else "?"
        if status == "running" and started is not None:
            duration = f"running for {fmt_duration((now - started).total_seconds())}"
        else:
            duration = fmt_duration((finished - started).total_seconds()) if started and finished else ""
        stages.append(
            {
                "name": stage,
                "status": status,
                "attempt": (s.attempt if s else None) or (r.attempt if r else 1),
                "started": started.strftime("%Y-%m-%d %H:%M:%S UTC") if started else "",
                "duration": duration,
                "reason": (s.reason if s else None) or (r.reason if r else None) or "",
                "diagnosis": (s.diagnosis if s else None) or (r.diagnosis if r else None) or "",
                "next_step": (s.next_step if s else None) or (r.next_step if r else None) or "",
                "logs": [n for n in log_names if n.startswith(stage + "/")],
            }
        )
    evidence = []
    for stage in STAGES:
        r = results.get(stage)
        for e in r.evidence if r else ():
            evidence.append(
                {
                    "stage": stage,
                    "kind": e.kind,
                    "text": clip(e.text, 4000),
                    "log_path": e.log_path or "",
                    "line": e.line,
                    "href": link(e.log_path, stage, e.line),
                }
            )
    gates = [
        {
            "g": g,
            "command": shell_join([*(f"{k}={v}" for k, v in g.serve.env), *g.serve.argv])
            if g.serve.argv
            else "",
            "href": link(g.log_path, g.stage),
        }
        for g in facts.gates
    ]
    features = [{"f": f, "href": link(f.log_path, "features")} for f in facts.features]
    ordered = sorted(reports, key=lambda n: (list(REPORT_ANCHORS).index(n) if n in REPORT_ANCHORS else 99, n))
    return {
        "job": job,
        "headline": headline(job, verdict).replace("**", "").replace("`", ""),
        "verdict": verdict_block(verdict) if verdict is not None else None,
        "verdict_level": verdict.level if verdict is not None else None,
        "issue_url": f"https://github.com/{job.repo}/issues/{job.issue}",
        "pr_url": f"https://github.com/{job.repo}/pull/{job.pr_number}" if job.pr_number else None,
        "age": fmt_duration((now - job.created_at).total_seconds()),
        "stages": stages,
        "evidence": evidence,
        "gates": gates,
        "features": features,
        "logs": [{"name": n, "href": log_href(job.id, n)} for n in log_names],
        "reports": [{"name": n, "anchor": _report_anchor(n), "text": reports[n]} for n in ordered],
        "progress": progress,
    }


def _load(store: JobStore, job: Job) -> dict[str, Any]:
    try:
        names, unavailable = store.log_names(job.id), False
    except LogStoreError as exc:  # the page still shows the job; the logs are kept, not lost
        log.warning("job page %s: %s", job.id, exc)
        names, unavailable = [], True
    view = job_view(job, store.results(job.id), names, store.reports(job.id), store.progress(job.id, 10))
    return {**view, "logs_unavailable": unavailable}


def _store(request: Request) -> JobStore:
    store: JobStore = request.app.state.store
    return store


def _page(html: str, status: int = 200) -> HTMLResponse:
    return HTMLResponse(html, status_code=status, headers=HEADERS)


async def _readable(request: Request, job_id: str) -> Job:
    """`readable_job`, its 404/403 shown as a page a browser user can act on (sign in)."""
    try:
        return await readable_job(request, job_id)
    except HTTPException as exc:
        raise PageError(exc.status_code, str(exc.detail)) from None


class PageError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


def error_page(request: Request, status: int, message: str) -> HTMLResponse:
    a = access(request)
    viewer = a.viewer(request)
    html = render(
        "pages/error.html",
        status=status,
        message=message,
        login=viewer.login,
        can_sign_in=a.oauth_enabled and viewer.anonymous,
    )
    return _page(html, status)


@router.get("/jobs/{job_id}", response_class=HTMLResponse)
async def job_page(request: Request, job_id: str) -> HTMLResponse:
    try:
        job = await _readable(request, job_id)
    except PageError as exc:
        return error_page(request, exc.status, exc.message)
    view = await run_in_threadpool(_load, _store(request), job)
    viewer = access(request).viewer(request)
    # rendering runs off the event loop: the same loop answers GitHub's webhooks
    return _page(await run_in_threadpool(lambda: render("pages/job.html", login=viewer.login, **view)))


@router.get("/jobs/{job_id}/logs/{stage}/{file}", response_model=None)
async def log_page(request: Request, job_id: str, stage: str, file: str, raw: int = 0) -> Response:
    try:
        job = await _readable(request, job_id)
    except PageError as exc:
        return error_page(request, exc.status, exc.message)
    name = f"{stage}/{file}"
    text: str | None = None
    if STAGE_NAME.match(stage) and LOG_NAME.match(file):
        try:
            text = await run_in_threadpool(_store(request).log_text, job.id, name)
        except ValueError:  # not a log we wrote (corrupt, or inflates past the bound)
            text = None
        except LogStoreError as exc:
            log.warning("log page %s %s: %s", job.id, name, exc)
            return error_page(request, 503, render("pages/logs_unavailable.txt.j2").strip())
    if text is None:
        return error_page(request, 404, "no such log")
    if raw:
        return PlainTextResponse(text, headers=HEADERS)
    # a log at the runner's bound renders in ~0.3 s (benchmarks/bench_log_page.py): off the loop
    html = await run_in_threadpool(
        lambda: render(
            "pages/log.html",
            job=job,
            name=name,
            lines=text.splitlines(),
            size=len(text.encode("utf-8")),
            raw_href=log_href(job.id, name) + "?raw=1",
        )
    )
    return _page(html)
