"""Contracts between the control plane and the runners.

Everything that crosses a process boundary (Celery message, result JSON on disk, `--json` output)
is one of these models, so both sides validate the same shape. Keep them free of I/O.
"""

from __future__ import annotations

import datetime as dt
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator

from runners import feature_catalog

#: The stage vocabulary, declared once. Runner stages run on a runner host, one Celery task each,
#: in this order; `deliver` then runs on the control plane (it holds the GitHub credentials).
#: A rerun of stage S reuses the stored results of the stages before S.
RUNNER_STAGES: tuple[str, ...] = (
    "analyze",
    "dummy-gate",
    # the feature probes run on the shrunk model before any real-weight start (issue 13); the
    # real-weight start then carries the set that passed and confirms each at full size
    "features",
    "real-gate",
    "capacity",
    "accuracy",
    "artifacts",
)
CONTROL_STAGES: tuple[str, ...] = ("deliver",)
#: Every stage of a job, in order (what `/adapt rerun <stage>` accepts).
STAGES: tuple[str, ...] = (*RUNNER_STAGES, *CONTROL_STAGES)


def stages_before(stage: str) -> tuple[str, ...]:
    """The stages whose stored results a run (or rerun) of `stage` reuses."""
    return STAGES[: STAGES.index(stage)]


#: The feature vocabulary, declared once with its version ranges in runners/feature_catalog.py.
FEATURES: tuple[str, ...] = feature_catalog.FEATURES

StageStatus = Literal["passed", "failed", "skipped", "error"]


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class Evidence(BaseModel):
    """One piece of proof: a log excerpt, a request/response, or a config fact."""

    kind: str  # "log", "request", "response", "config", "command", "analysis", ...
    text: str
    log_path: str | None = None
    line: int | None = None  # 1-based line number in log_path


class StageResult(BaseModel):
    """The JSON every stage writes (`results/<stage>.json`) and `adapt-bot gate --json` prints."""

    stage: str
    status: StageStatus
    started_at: dt.datetime = Field(default_factory=utcnow)
    finished_at: dt.datetime | None = None
    #: Machine-readable failure class: false-ready, not-registered, timeout, crashed, cancelled, ...
    reason: str | None = None
    #: One or two sentences for a human: what went wrong.
    diagnosis: str | None = None
    #: What a human should do next (a command, a fix to try).
    next_step: str | None = None
    evidence: list[Evidence] = Field(default_factory=list)
    #: Stage-specific data (serve command, timings, feature matrix, capacity figures, ...).
    data: dict[str, Any] = Field(default_factory=dict)
    attempt: int = 1

    @property
    def ok(self) -> bool:
        return self.status in ("passed", "skipped")

    @property
    def duration_s(self) -> float | None:
        if self.finished_at is None:
            return None
        return (self.finished_at - self.started_at).total_seconds()


class FeatureStatus(StrEnum):
    """The status vocabulary of the workflow, used verbatim in every report."""

    SUPPORTED = "✅ supported and verified"
    UNSUPPORTED = "❌ framework-level unsupported"
    CHECKPOINT_MISSING = "⚠️ checkpoint missing"
    NOT_APPLICABLE = "N/A not-applicable"


class FeatureResult(BaseModel):
    feature: str
    status: FeatureStatus
    reason: str
    evidence: list[Evidence] = Field(default_factory=list)


class FeatureMatrix(BaseModel):
    """feature -> status + evidence; renders the issue comment, the report and the tutorial."""

    features: dict[str, FeatureResult] = Field(default_factory=dict)


class ArtifactOptions(BaseModel):
    """Which artifacts a job writes: the per-repo config's `artifacts:` section, declared once here
    (bot.repo_config validates the file into it) and carried to the runner in the job's options,
    so no runner reads a repository's config from its own checkout."""

    model_config = {"extra": "forbid"}

    e2e_config: bool = True
    tutorial: bool = True
    #: Add the e2e config to `.github/workflows/configs/nightly_config.yaml`: false, true (the
    #: `pr_only` section) or the section name.
    nightly: bool | str = False
    #: Add the hub id to `.github/workflows/misc/model_dataset_list.json`.
    model_list: bool = False

    @property
    def nightly_section(self) -> str | None:
        if self.nightly is False or self.nightly == "":
            return None
        return "pr_only" if self.nightly is True else str(self.nightly)


class Candidate(BaseModel):
    """A contributor branch the job runs against (`--candidate <owner>/<repo>@<ref>`), pinned by the
    control plane: `sha` is the commit GitHub (or, for the CLI's local path, git) resolved `ref` to,
    and `url` the clone URL the control plane built from its own settings, never from user text.
    Runners fetch exactly `sha` from `url` (runners.candidate)."""

    model_config = {"extra": "forbid"}

    repo: str  # "owner/repo", or the local path on the CLI
    ref: str
    sha: str = Field(pattern=r"^[0-9a-f]{40}$")
    url: str


class AdapterSpec(BaseModel):
    """The adapter step (issue 14, off by default): a command the runner runs in the job's workspace
    when a gate fails, whose `git diff` of an implementation checkout is re-gated (runners.adapter).
    From the repo config key `adapter:` or the CLI's `--adapter-command`; an argv list, never a shell."""

    model_config = {"extra": "forbid"}

    command: list[str] = Field(min_length=1, max_length=64)
    attempts: int = Field(default=2, ge=1, le=5)
    timeout_s: int = Field(default=900, ge=1, le=4 * 3600)
    device_hours: float = Field(default=0.5, gt=0, le=100)

    @field_validator("command")
    @classmethod
    def _plain_argv(cls, v: list[str]) -> list[str]:
        if not v[0].strip():
            raise ValueError("the command's first element (the program) is empty")
        if any("\x00" in a or len(a) > 4096 for a in v):
            raise ValueError("command elements must be text without NUL, at most 4096 characters each")
        return v


class JobOptions(BaseModel):
    """What a job was asked to do (from the issue, `/adapt run` options and repo config)."""

    model: str  # validated hub id, hub URL or /models/<name> (see bot.model_ref)
    hardware: Literal["a2", "a3"] = "a2"
    tp: int | None = None
    max_model_len: int | None = None
    features: list[str] | None = None  # None = all applicable
    profile: str = "cpu"
    served_model_name: str | None = None
    #: A local checkpoint directory given on the CLI (`adapt-bot run DIR`). Never set from
    #: GitHub input: issue text only ever yields a validated `model` reference.
    local_path: str | None = None
    #: The hub commit SHA the pre-flight read (runners.analysis.hub); runners download and use
    #: exactly this revision (runners.weights). None: a local checkout, or not pinned yet.
    revision: str | None = None
    #: Issue number the job belongs to (names the branch `adapt/<slug>-<issue>`).
    issue: int | None = None
    artifacts: ArtifactOptions = Field(default_factory=ArtifactOptions)
    #: Explicit opt-in to run the checkpoint's own Python (`--trust-remote-code`): the CLI flag
    #: `--trust-remote-code`, or the repo config key `remote_code.allow` for GitHub jobs.
    trust_remote_code: bool = False
    #: Capacity steps (`--concurrency 16,32,64`): concurrent sequences the capacity stage tries, in
    #: rising order; None = the profile's own steps. Validated by bot.options on both entry points.
    capacity_steps: list[int] | None = None
    #: Published scores the issue names ({task: {metric or "*": value}}, runners.accuracy.references)
    #: for the accuracy plausibility check; None = none named (ADAPT_BOT_ACCURACY_REFERENCES applies).
    accuracy_references: dict[str, dict[str, float]] | None = None
    #: Where each task's reference came from ({task: "issue" | "model card"}), for the report.
    accuracy_reference_sources: dict[str, str] | None = None
    #: A contributor branch to install for this job only (runners.candidate); None = none.
    candidate: Candidate | None = None
    #: The adapter step (runners.adapter): None = off (the default).
    adapter: AdapterSpec | None = None


# -- the runner channel (runners/host/) ------------------------------------------------------------
#: Bounds the control plane enforces on everything a runner sends (runners are untrusted).
MAX_EVENT_BYTES = 8 * 1024 * 1024
MAX_FILE_BYTES = 2 * 1024 * 1024
MAX_FILES = 16
MAX_PROGRESS_CHARS = 500

#: Runner pool names: queue names, Redis key parts and ACL user names (`runner-<pool>`).
POOL_PATTERN = r"^[a-z0-9][a-z0-9-]{0,31}$"


class StageRequest(BaseModel):
    """What the control plane sends a runner for ONE attempt of ONE stage (the Celery message).

    Everything the stage needs travels here, so a runner never reads the control plane's job
    records: the options, the stored results of the earlier stages (a rerun may land on another
    host), the time limit, and the attempt's `token`. The token is a random capability for this
    attempt only; the control plane accepts a runner event only when it carries it.
    """

    job_id: str
    stage: str
    attempt: int = Field(ge=1)
    pool: str = Field(pattern=POOL_PATTERN)
    token: str = Field(min_length=16)
    options: JobOptions
    previous: dict[str, StageResult] = Field(default_factory=dict)
    timeout_s: int = Field(gt=0)


RunnerEventKind = Literal["started", "progress", "result"]


class RunnerEvent(BaseModel):
    """What a runner may hand back: `started`, a `progress` line, or the stage `result` with its
    bounded files. Validated again, and tied to its attempt, on the control plane."""

    kind: RunnerEventKind
    job_id: str
    stage: str
    attempt: int = Field(ge=1)
    token: str
    at: dt.datetime = Field(default_factory=utcnow)
    line: str | None = None
    result: StageResult | None = None
    #: Files to commit (repo-relative path -> text) and report previews (file name -> text).
    files: dict[str, str] = Field(default_factory=dict)
    reports: dict[str, str] = Field(default_factory=dict)
    #: The stage's logs (file name -> gzip + base64 of the scrubbed tail; runners.host.logs).
    logs: dict[str, str] = Field(default_factory=dict)
