"""Our comments: the hidden marker, the live status comment, replies.

A comment is ours only if the App wrote it (`performed_via_github_app.id` is our App id) AND the
marker matches; the status comment's id is kept on the job and the comment is edited in place,
never deleted and re-posted. Bodies are kept under GitHub's 65,536-character limit. Building the
view and rendering are pure; `publish_status` is the one place that writes it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from bot.commands import BY_NAME, COMMANDS, PREFIX
from bot.github_ports import CommentWriter
from bot.jobs.model import Job
from runners.artifacts.wording import verdict_headline
from runners.contracts import STAGES, StageResult, utcnow
from runners.links import job_url
from runners.render import md_inline, render
from runners.verdict import Verdict, judge

log = logging.getLogger(__name__)

MAX_BODY = 65_000  # GitHub's hard limit is 65,536; leave room for the marker and a note
MARKER_RE = re.compile(r"<!-- adapt-bot:status job=([A-Za-z0-9._-]{1,64}) -->")

ICONS = {
    "passed": "✅",
    "skipped": "⏭️",
    "failed": "❌",
    "error": "⚠️",
    "running": "⏳",
    "queued": "🕒",
    "pending": "▫️",
    "cancelled": "🚫",
}


def marker(job_id: str) -> str:
    return f"<!-- adapt-bot:status job={job_id} -->"


def marker_job(body: str | None) -> str | None:
    m = MARKER_RE.search(body or "")
    return m.group(1) if m else None


def is_ours(comment: dict[str, Any], app_id: int | None, job_id: str) -> bool:
    app = comment.get("performed_via_github_app") or {}
    return app_id is not None and app.get("id") == app_id and marker_job(comment.get("body")) == job_id


def fit(body: str, limit: int = MAX_BODY, link: str | None = None) -> str:
    """Cut a body to the limit, keeping the marker (first line) and saying where the rest is."""
    if len(body) <= limit:
        return body
    note = "\n\n…(truncated" + (f"; full report: {link}" if link else "") + ")\n"
    return body[: limit - len(note)] + note


def fmt_duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
    s = int(max(0, seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m {s % 60:02d}s"
    return f"{s // 3600}h {(s % 3600) // 60:02d}m"


@dataclass(frozen=True)
class StageRow:
    name: str
    icon: str
    status: str
    duration: str
    note: str


def fmt_device(seconds: float | None) -> str:
    """Device time as people read it: device-seconds, device-hours past an hour (1 device = 1 NPU;
    on the cpu profile one server slot)."""
    if seconds is None:
        return ""
    if seconds < 3600:
        return f"{seconds:,.0f} device-s"
    return f"{seconds / 3600:,.2f} device-h"


def stage_rows(job: Job, now: dt.datetime, spent: Mapping[str, float] | None = None) -> list[StageRow]:
    rows: list[StageRow] = []
    for stage in STAGES:
        s = job.stages.get(stage)
        if s is None:
            status = "cancelled" if job.state == "cancelled" and stage == job.stage else "pending"
            rows.append(StageRow(stage, ICONS["pending"], "not run yet", "", ""))
            continue
        status = s.status
        if status == "running" and job.state == "cancelled":
            status = "cancelled"
        if status == "running" and s.started_at:
            dur = f"running for {fmt_duration((now - s.started_at).total_seconds())}"
        elif status == "queued":
            dur = "waiting for a runner"
        else:
            dur = fmt_duration(s.duration_s)
        if spent and spent.get(stage):
            dur = f"{dur} · {fmt_device(spent[stage])}" if dur else fmt_device(spent[stage])
        note = s.diagnosis or s.reason or ""
        attempt = f" (attempt {s.attempt})" if s.attempt > 1 else ""
        rows.append(StageRow(stage, ICONS.get(status, "•"), status + attempt, dur, note))
    return rows


def verdict_for(job: Job, results: Mapping[str, StageResult]) -> Verdict | None:
    """The verdict of a finished job (runners.verdict); None while it runs or after a cancel."""
    if job.phase not in ("succeeded", "failed"):
        return None
    return judge(results, job.options.profile)


def headline(job: Job, verdict: Verdict | None = None) -> str:
    """The status comment's headline. A delivered job is worded by its verdict; without one it
    claims nothing beyond "delivered" (a delivery is not a validation)."""
    phase = job.phase
    if phase == "running":
        return f"⏳ Running **{job.stage}**"
    if phase == "queued":
        return "🕒 Queued"
    if phase == "waiting":
        return "⏸️ Waiting for a maintainer"
    if phase == "succeeded":
        if verdict is None:
            return "📦 Delivered — the verdict is in the final report"
        return verdict_headline(verdict)
    if phase == "failed":
        summary = job.stages.get(job.stage or "")
        reason = (summary.reason or summary.status) if summary else None
        return f"❌ Failed at **{job.stage}**" + (f": `{md_inline(reason)[:80]}`" if reason else "")
    return "🚫 Cancelled"


def render_status(
    job: Job,
    progress: list[dict[str, str]] | None = None,
    now: dt.datetime | None = None,
    jobs_url: str | None = None,
    verdict: Verdict | None = None,
    spent: Any = None,
    queue: Any = None,
    estimate: Any = None,
) -> str:
    """The status comment. Pass `verdict` (`verdict_for(job, results)`) once the job has ended, so
    the headline and the reasons say what the runs earned, not merely that they ended; `spent`
    (bot.quotas.JobSpent) adds device time per stage and in total, `queue`
    (bot.queue_position.QueuePosition) the job's place in its pool's line while it waits,
    `estimate` (bot.preflight.BudgetVerdict) the job's estimated device-hours."""
    now = now or utcnow()
    body = render(
        "comments/status.md.j2",
        marker=marker(job.id),
        job=job,
        headline=headline(job, verdict),
        verdict=verdict if job.phase == "succeeded" else None,
        rows=stage_rows(job, now, spent.by_stage if spent is not None else None),
        spent_total=f"{spent.total:,.0f} device-seconds" if spent is not None and spent.total else None,
        spent_hours=round(spent.total / 3600, 2) if spent is not None else None,
        queue=queue,
        estimate=estimate,
        progress=(progress or [])[:1],
        job_url=job_url(jobs_url, job.id),
        prefix=PREFIX,
    )
    return fit(body, link=f"{jobs_url.rstrip('/')}/api/jobs/{job.id}" if jobs_url else None)


# Untrusted text (a stranger's command line, values quoted in error messages) must not speak in the
# App's voice: no links, images, mentions or `#123` / `org/repo#123` references in what we post.
_URL_SCHEME = re.compile(r"(?i)\b(https?|ftp|mailto)(:)")
_WWW = re.compile(r"(?i)\b(www)(\.)")
_REF = re.compile(r"(#|(?i:\bGH)-)(?=\d)")
ZWSP = "\u200b"


def inert(text: Any) -> str:
    """Prose from untrusted text, rendered inert (then passed through `md_inline`): brackets
    escaped (no links, images, footnotes), URL schemes and `www.` broken with a zero-width space
    (no autolinks), `#123` / `GH-123` / `org/repo#123` likewise (no references). `@` is handled by
    `md_inline`, HTML by its escaping."""
    s = "" if text is None else str(text)
    s = s.replace("\\", "\\\\").replace("[", "\\[").replace("]", "\\]")
    s = _URL_SCHEME.sub(lambda m: m.group(1) + ZWSP + m.group(2), s)
    s = _WWW.sub(lambda m: m.group(1) + ZWSP + m.group(2), s)
    return _REF.sub(lambda m: m.group(1) + ZWSP, s)


def code_span(text: Any, limit: int = 300) -> str:
    """Untrusted text as ONE inline code span: GitHub renders nothing inside it (no links,
    mentions, references, HTML). The fence is longer than any backtick run in the text."""
    s = " ".join(("" if text is None else str(text)).split("\n")).replace("\r", " ")
    if len(s) > limit:
        s = s[: limit - 1] + "…"
    fence = "`" * (max((len(m) for m in re.findall(r"`+", s)), default=0) + 1)
    pad = " " if s.startswith(("`", " ")) or s.endswith(("`", " ")) else ""
    return f"{fence}{pad}{s}{pad}{fence}"


def render_reply(kind: str, *, user: str | None, command: str | None, **ctx: Any) -> str:
    """One reply format for every answer: mention, quoted command, message, help footer.

    `command`, `error` and a text `detail` are untrusted: the command is shown as a code span,
    the others through `inert`; lines a too-many refusal lists are code spans too."""
    defaults: dict[str, Any] = {
        "job": None,
        "job_url": None,
        "error": None,
        "usage": None,
        "needed": None,
        "level": None,
        "detail": None,
        "status_url": None,
        "who": None,
        "jobs": [],
    }
    defaults.update(ctx)
    if defaults["error"] is not None:
        defaults["error"] = inert(defaults["error"])
    if isinstance(defaults["detail"], str):
        defaults["detail"] = inert(defaults["detail"])
    shown = defaults["detail"].get("shown", []) if isinstance(defaults["detail"], dict) else []
    return fit(
        render(
            "comments/reply.md.j2",
            kind=kind,
            user=user,
            command=code_span(command) if command else None,
            refused_lines=[code_span(line, 120) for line in shown],
            prefix=PREFIX,
            **defaults,
        )
    )


def render_help(topic: str | None = None) -> str:
    specs = [BY_NAME[topic]] if topic in BY_NAME else list(COMMANDS)
    return render("comments/help.md.j2", specs=specs, prefix=PREFIX, single=topic in BY_NAME)


def usage_for(name: str | None) -> str:
    return render_help(name if name in BY_NAME else None)


#: Redis: which job's status comment carries the skill link on an issue (no expiry: once per issue)
SKILL_KEY = "adapt:skill-link:{repo}#{issue}"
#: the holder when an earlier comment of ours carries the link (found on the issue, not in Redis)
SKILL_ELSEWHERE = "-"


def skill_note() -> str:
    """The line naming the model-adapter skill the job follows (templates/comments)."""
    from runners.links import SKILL_URL

    return render("comments/skill_link.md.j2", skill_url=SKILL_URL).strip()


def carries_skill_link(gh: Any, job: Job) -> bool:
    """Whether this job's status comment is the issue's one comment with the skill link: the first
    job whose status comment is published on the issue takes it (Redis SET NX, kept without expiry);
    later jobs and reruns on the issue do not repeat it. With the record missing (a new issue, or a
    Redis that lost it) the issue itself is read once: a comment of ours that already carries the
    link, other than this job's status comment, keeps it. No Redis: every status comment has it."""
    r = getattr(gh, "redis", None)
    if r is None:
        return True
    key = SKILL_KEY.format(repo=job.repo, issue=job.issue)
    holder = r.get(key)
    if holder is None:
        from runners.links import SKILL_URL as url

        elsewhere = any(
            (c.get("performed_via_github_app") or {}).get("id") == gh.app_id
            and gh.app_id is not None
            and not is_ours(c, gh.app_id, job.id)
            and url in (c.get("body") or "")
            for c in gh.list_comments(job.repo, job.issue)
        )
        r.set(key, SKILL_ELSEWHERE if elsewhere else job.id, nx=True)
        holder = r.get(key)
    if isinstance(holder, bytes):
        holder = holder.decode()
    return bool(holder == job.id)


def with_skill_link(body: str) -> str:
    """The status body with the skill line above its footer (the `<sub>` line), within the limit."""
    head, sep, foot = body.rpartition("\n<sub>")
    if not sep:
        return fit(f"{body.rstrip()}\n\n{skill_note()}")
    return fit(f"{head.rstrip()}\n\n{skill_note()}\n{sep}{foot}")


def publish_status(gh: CommentWriter, job: Job, body: str) -> int:
    """Edit the job's status comment in place, creating it only once. Returns its id.

    `gh` is an InstallationClient. Before creating, look for a comment we wrote with this job's
    marker (a previous attempt may have created it after a timeout), so a retry never re-posts.
    The issue's first job's status comment also carries the skill link (carries_skill_link).
    """
    if carries_skill_link(gh, job):
        body = with_skill_link(body)
    if job.status_comment_id is not None:
        gh.update_comment(job.repo, job.status_comment_id, body)
        return job.status_comment_id

    def find_existing() -> dict[str, Any] | None:
        for c in gh.list_comments(job.repo, job.issue):
            if is_ours(c, gh.app_id, job.id):
                return dict(c)
        return None

    existing = find_existing()
    if existing is not None:
        gh.update_comment(job.repo, int(existing["id"]), body)
        return int(existing["id"])
    created = gh.create_comment(job.repo, job.issue, body, find_existing=find_existing)
    return int(created["id"])


def report_marker(job_id: str) -> str:
    return f"<!-- adapt-bot:report job={job_id} -->"


def publish_report(gh: CommentWriter, job: Job, body: str) -> int:
    """Post the job's final report comment once; a redelivered `deliver` edits the same comment.

    Found again by its own marker (distinct from the status marker) AND our App id, so a rerun that
    delivers again updates the report in place instead of adding a second one.
    """
    return _publish_marked(gh, job, body)


def publish_failure_report(gh: CommentWriter, job: Job, body: str) -> int:
    """Post the full report of a failed job (runners.artifacts.render_failure_report).

    It is THE job's report comment (same marker as the final report): a failure after a rerun edits
    it, and a later successful delivery replaces it in place, so an issue never shows a stale
    failure report next to the final one."""
    return _publish_marked(gh, job, body)


def failure_results(job: Job, results: Mapping[str, StageResult]) -> dict[str, StageResult]:
    """The stored results plus the failed stage's summary when the store holds no result for it
    (a delivery error, a lost runner), so the failure report always names what failed."""
    out = dict(results)
    stage = job.stage
    summary = job.stages.get(stage or "")
    if job.phase == "failed" and stage and summary is not None and stage not in out:
        out[stage] = StageResult(
            stage=stage,
            status="failed" if summary.status == "failed" else "error",
            started_at=summary.started_at or job.updated_at,
            finished_at=summary.finished_at,
            reason=summary.reason,
            diagnosis=summary.diagnosis or job.message,
            next_step=summary.next_step or job.next_step,
            attempt=summary.attempt,
        )
    return out


def post_failure_report(
    gh: Any, job: Job, results: Mapping[str, StageResult], *, logs_url: str | None = None
) -> int:
    """Render and post the report of a job that ended `failed:<stage>` — what ran, the evidence,
    the diagnosis, the next step — as the job's report comment. One call for bot.tasks."""
    from runners.artifacts import render_failure_report

    full = failure_results(job, results)
    body = render_failure_report(
        job.options.model_copy(update={"issue": job.issue}),
        full,
        job_id=job.id,
        verdict=judge(full, job.options.profile),
        limit=MAX_BODY - 100,
        logs_url=logs_url,
    )
    return publish_failure_report(gh, job, body)


def preflight_marker(job_id: str) -> str:
    return f"<!-- adapt-bot:preflight job={job_id} -->"


def publish_preflight(gh: CommentWriter, job: Job, body: str) -> int:
    """The job's pre-flight comment (bot.preflight), posted once and edited in place."""
    return _publish_marked(gh, job, body, preflight_marker(job.id))


def _publish_marked(gh: CommentWriter, job: Job, body: str, mark: str | None = None) -> int:
    mark = mark or report_marker(job.id)
    text = fit(f"{mark}\n{body}")

    def find_existing() -> dict[str, Any] | None:
        for c in gh.list_comments(job.repo, job.issue):
            app = c.get("performed_via_github_app") or {}
            if gh.app_id is not None and app.get("id") == gh.app_id and mark in (c.get("body") or ""):
                return dict(c)
        return None

    existing = find_existing()
    if existing is not None:
        if existing.get("body") != text:
            gh.update_comment(job.repo, int(existing["id"]), text)
        return int(existing["id"])
    created = gh.create_comment(job.repo, job.issue, text, find_existing=find_existing)
    return int(created["id"])


# -- replies: every other comment the bot posts, created at most once ----------------------------------
REPLY_MARKER_RE = re.compile(r"<!-- adapt-bot:reply key=([0-9a-f]{20}) -->")
#: Create records of replies (Redis): "attempted" before the POST, the comment id after it.
CREATE_RECORD_TTL_S = 8 * 24 * 3600


def reply_key(*parts: object) -> str:
    """A short stable key for one reply: what it answers (intent dedupe key) and its kind."""
    return hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).hexdigest()[:20]


def reply_marker(key: str) -> str:
    return f"<!-- adapt-bot:reply key={key} -->"


def with_marker(body: str, mark: str) -> str:
    """The body with its marker as the last line, cut so that both fit GitHub's limit."""
    return fit(body, MAX_BODY - len(mark) - 1).rstrip("\n") + "\n" + mark


def find_ours(gh: Any, repo: str, issue: int, mark: str) -> dict[str, Any] | None:
    """Our comment (App id AND marker) on the issue, or None."""
    for c in gh.list_comments(repo, issue):
        app = c.get("performed_via_github_app") or {}
        if gh.app_id is not None and app.get("id") == gh.app_id and mark in (c.get("body") or ""):
            return dict(c)
    return None


def publish_reply(gh: Any, repo: str, issue: int, body: str, key: str) -> int:
    """Post one reply exactly once, whatever happened to earlier attempts. Returns its id.

    The body ends with a hidden marker of `key`. A Redis record says "attempted" before the POST
    and holds the comment id after it: a redelivered or retried intent finds the id and posts
    nothing; one whose earlier POST got no answer (timeout, 5xx, Redis or worker gone) looks for
    the marker on the issue first. The happy path costs no extra request.
    """
    mark = reply_marker(key)
    text = with_marker(body, mark)
    r = getattr(gh, "redis", None)
    record = f"adapt:reply:{repo}:{key}"
    seen = r.get(record) if r is not None else "attempted"
    if seen and seen != "attempted":
        return int(seen)
    if seen == "attempted":
        existing = find_ours(gh, repo, issue, mark)
        if existing is not None:
            if r is not None:
                r.set(record, str(existing["id"]), ex=CREATE_RECORD_TTL_S)
            log.info("reply %s on %s#%s was posted by an earlier attempt; not again", key, repo, issue)
            return int(existing["id"])
    if r is not None:
        r.set(record, "attempted", ex=CREATE_RECORD_TTL_S)
    created = gh.create_comment(repo, issue, text, find_existing=lambda: find_ours(gh, repo, issue, mark))
    if r is not None:
        r.set(record, str(created["id"]), ex=CREATE_RECORD_TTL_S)
    return int(created["id"])
