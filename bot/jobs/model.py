"""The job record (DESIGN.md contract): what was asked, where it stands, where it reports."""

from __future__ import annotations

import datetime as dt
import secrets

from pydantic import BaseModel, Field

from runners.contracts import Candidate, JobOptions, utcnow

TERMINAL_PREFIXES = ("succeeded", "failed:", "cancelled")


def new_job_id() -> str:
    """Short, URL- and path-safe, unguessable enough for a jobs page link."""
    return utcnow().strftime("%Y%m%d") + "-" + secrets.token_hex(5)


class StageSummary(BaseModel):
    """What the status comment shows for one stage (the full StageResult stays in the store)."""

    status: str  # passed | failed | skipped | error | running | queued
    attempt: int = 1
    started_at: dt.datetime | None = None
    finished_at: dt.datetime | None = None
    reason: str | None = None
    diagnosis: str | None = None
    next_step: str | None = None

    @property
    def duration_s(self) -> float | None:
        if self.started_at and self.finished_at:
            return (self.finished_at - self.started_at).total_seconds()
        return None


class PushedHead(BaseModel):
    """The last push to the job's PR that was re-gated (bot.intents._rerun): what changed since the
    bot's own delivered head, and whether the pushed code runs as the job's candidate."""

    #: the commit the bot itself last put on the PR branch (the compare base of every later push)
    bot_head: str | None = None
    head: str
    #: changed files outside what the bot delivers (the first few; `code_total` counts them all)
    code_files: list[str] = Field(default_factory=list)
    code_total: int = 0
    #: the re-gate runs the pushed head as the job's candidate
    candidate: bool = False
    #: the compare failed (the re-gate then runs on the docs/YAML only); safe to show
    compare_error: str | None = None
    #: the job's own candidate before a push replaced it (back when a later push holds no code)
    job_candidate: Candidate | None = None


class Job(BaseModel):
    id: str = Field(default_factory=new_job_id)
    repo: str
    installation_id: int | None = None
    issue: int
    options: JobOptions
    #: Celery queue of the runner pool the stages run on.
    pool: str = "cpu"
    state: str = "queued"
    attempts: dict[str, int] = Field(default_factory=dict)
    stages: dict[str, StageSummary] = Field(default_factory=dict)
    created_at: dt.datetime = Field(default_factory=utcnow)
    updated_at: dt.datetime = Field(default_factory=utcnow)
    finished_at: dt.datetime | None = None
    status_comment_id: int | None = None
    pr_number: int | None = None
    pr_merged: bool | None = None
    #: The job's PR was merged or closed: its life is over (bot/jobs/machine.archive). A flag, not a
    #: state, so the stage history and verdict stay as they were; reruns are refused.
    archived: bool = False
    #: The PR head a person pushed (pull_request.synchronize). From then on the branch is theirs too:
    #: delivery re-validates and reports on that head (bot.tasks.report_pushed_head) and never
    #: force-moves the branch over their commits.
    pr_head_sha: str | None = None
    #: What that push changed and how it was re-gated (shown in the status comment).
    pushed: PushedHead | None = None
    trigger_comment_id: int | None = None
    requested_by: str | None = None
    #: Dedupe key of the intent that created the job (a retried start resumes instead of refusing).
    origin: str | None = None
    cancel_requested: bool = False
    #: The repository was private when the job was created (None: unknown = private); jobs pages.
    repo_private: bool | None = None
    #: Why the job waits or failed, and what a human does next (shown in the status comment).
    message: str | None = None
    next_step: str | None = None
    #: Monotonic counter bumped by every stored transition (compare-and-set guard, debugging).
    version: int = 0

    @property
    def active(self) -> bool:
        return not self.state.startswith(TERMINAL_PREFIXES)

    @property
    def stage(self) -> str | None:
        """The stage running now, or the one that failed."""
        if ":" in self.state:
            return self.state.split(":", 1)[1]
        return None

    @property
    def phase(self) -> str:
        """State without the stage: queued, running, waiting, succeeded, failed, cancelled."""
        return self.state.split(":", 1)[0]

    def summary(self) -> dict[str, object]:
        return {
            "id": self.id,
            "repo": self.repo,
            "issue": self.issue,
            "model": self.options.model,
            "state": self.state,
            "phase": self.phase,
            "stage": self.stage,
            "pool": self.pool,
            "pr_number": self.pr_number,
            "created_at": self.created_at.isoformat(),
            "updated_at": self.updated_at.isoformat(),
        }
