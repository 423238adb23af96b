"""Redis store for jobs, stage results, artifact files, progress lines and cancel flags; the logs
runners ship go to the job's log store (bot.jobs.logs: local disk by default, or S3-compatible).

Every transition is compare-and-set (WATCH/MULTI): the transition function sees the job as stored
and the write fails and retries if anyone changed it meanwhile. "One active job per issue" is a key
claimed with SET NX inside the same transaction, so two concurrent starts create one job.
Counters for /metrics (jobs by state) change in the same transaction as the job.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import redis

from bot.jobs.logs import LogStore
from bot.jobs.machine import NoChange
from bot.jobs.model import Job
from runners.contracts import StageResult, utcnow
from runners.host import keys

P = "adapt"
JOBS_INDEX = f"{P}:jobs"
STATE_COUNTS = f"{P}:metrics:jobs_by_state"
PROGRESS_KEEP = 50


def _job_key(job_id: str) -> str:
    return f"{P}:job:{job_id}"


def _active_key(repo: str, issue: int) -> str:
    return f"{P}:active:{repo}#{issue}"


def _pr_key(repo: str, pr: int) -> str:
    return f"{P}:pr:{repo}#{pr}"


class ActiveJobExists(Exception):
    """The issue already has an active job (its id is attached)."""

    def __init__(self, job_id: str) -> None:
        super().__init__(job_id)
        self.job_id = job_id


class JobStore:
    def __init__(self, client: redis.Redis, logs: LogStore | None = None) -> None:
        self.r: Any = client  # decode_responses=True: str in, str out
        self._logs = logs

    @property
    def logs(self) -> LogStore:
        if self._logs is None:
            raise RuntimeError("this JobStore has no log store (bot.jobs.logs.from_settings)")
        return self._logs

    # -- jobs ---------------------------------------------------------------------------------
    def create(self, job: Job) -> Job:
        """Store a new job and claim its issue; raise ActiveJobExists if the issue has one."""
        active = _active_key(job.repo, job.issue)

        def txn(pipe: Any) -> None:
            existing = pipe.get(active)
            if existing and pipe.exists(_job_key(existing)):
                raise ActiveJobExists(existing)
            pipe.multi()
            pipe.set(active, job.id)
            pipe.set(_job_key(job.id), job.model_dump_json())
            pipe.zadd(JOBS_INDEX, {job.id: job.created_at.timestamp()})
            pipe.hincrby(STATE_COUNTS, job.phase, 1)

        self.r.transaction(txn, active)
        return job

    def get(self, job_id: str) -> Job | None:
        raw = self.r.get(_job_key(job_id))
        return Job.model_validate_json(raw) if raw else None

    def active_for(self, repo: str, issue: int) -> Job | None:
        job_id = self.r.get(_active_key(repo, issue))
        return self.get(job_id) if job_id else None

    def latest_for(self, repo: str, issue: int) -> Job | None:
        """The active job, else the most recent one for the issue (for status and reruns)."""
        job = self.active_for(repo, issue)
        if job:
            return job
        job_id = self.r.get(f"{P}:last:{repo}#{issue}")
        return self.get(job_id) if job_id else None

    def for_pr(self, repo: str, pr: int) -> Job | None:
        job_id = self.r.get(_pr_key(repo, pr))
        return self.get(job_id) if job_id else None

    def update(self, job_id: str, fn: Callable[[Job], Job]) -> Job:
        """Apply a pure transition with compare-and-set. `fn` may raise NoChange/TransitionError."""
        key = _job_key(job_id)
        result: dict[str, Job] = {}

        def txn(pipe: Any) -> None:
            raw = pipe.get(key)
            if raw is None:
                raise NoChange(f"job {job_id} does not exist")
            old = Job.model_validate_json(raw)
            new = fn(old)
            active = _active_key(new.repo, new.issue)
            holder = pipe.get(active)
            if new.active and holder not in (None, new.id) and pipe.exists(_job_key(holder)):
                raise ActiveJobExists(holder)
            pipe.multi()
            pipe.set(key, new.model_dump_json())
            if old.phase != new.phase:
                pipe.hincrby(STATE_COUNTS, old.phase, -1)
                pipe.hincrby(STATE_COUNTS, new.phase, 1)
            if new.active:
                pipe.set(active, new.id)
            elif holder == new.id:
                pipe.delete(active)
                pipe.set(f"{P}:last:{new.repo}#{new.issue}", new.id)
            if new.pr_number is not None:
                pipe.set(_pr_key(new.repo, new.pr_number), new.id)
            result["job"] = new

        # watch the active key of the job's issue too (read inside the transaction)
        job = self.get(job_id)
        watch = [key] + ([_active_key(job.repo, job.issue)] if job else [])
        self.r.transaction(txn, *watch)
        return result["job"]

    def recent(self, limit: int = 100) -> list[Job]:
        ids = self.r.zrevrange(JOBS_INDEX, 0, max(0, limit - 1))
        if not ids:
            return []
        raws = self.r.mget([_job_key(i) for i in ids])
        return [Job.model_validate_json(raw) for raw in raws if raw]

    def state_counts(self) -> dict[str, int]:
        return {k: int(v) for k, v in self.r.hgetall(STATE_COUNTS).items()}

    # -- stage results and files ----------------------------------------------------------------
    def save_result(self, job_id: str, result: StageResult) -> None:
        self.r.hset(f"{_job_key(job_id)}:results", result.stage, result.model_dump_json())

    def get_result(self, job_id: str, stage: str) -> StageResult | None:
        raw = self.r.hget(f"{_job_key(job_id)}:results", stage)
        return StageResult.model_validate_json(raw) if raw else None

    def results(self, job_id: str) -> dict[str, StageResult]:
        raw = self.r.hgetall(f"{_job_key(job_id)}:results")
        return {k: StageResult.model_validate_json(v) for k, v in raw.items()}

    def _replace_hash(self, key: str, mapping: dict[str, str]) -> None:
        pipe = self.r.pipeline()
        pipe.delete(key)
        if mapping:
            pipe.hset(key, mapping=mapping)
        pipe.execute()

    def save_files(self, job_id: str, files: dict[str, str]) -> None:
        """Files to commit (repo-relative path -> text), from Workspace.repo_files; replaced whole."""
        self._replace_hash(f"{_job_key(job_id)}:files", files)

    def files(self, job_id: str) -> dict[str, str]:
        return dict(self.r.hgetall(f"{_job_key(job_id)}:files"))

    def save_logs(self, job_id: str, stage: str, logs: dict[str, str]) -> None:
        """A stage's shipped logs (name -> gzip+base64, runners.host.logs), replacing that stage's.
        Raises bot.jobs.logs.LogStoreError when the store is away (the inbox retries the event)."""
        self.logs.save(job_id, stage, logs)

    def log_names(self, job_id: str) -> list[str]:
        """`<stage>/<file>` of every stored log of the job."""
        return self.logs.names(job_id)

    def log_text(self, job_id: str, name: str) -> str | None:
        """The log's text; ValueError when the stored bytes are not a bounded gzip text."""
        from runners.host.logs import inflate

        raw = self.logs.read(job_id, name)
        return inflate(raw) if raw is not None else None

    def save_reports(self, job_id: str, reports: dict[str, str]) -> None:
        """Report files (`*.md` directly under Workspace.artifacts, e.g. report.zh.md) by file name."""
        self._replace_hash(f"{_job_key(job_id)}:reports", reports)

    def reports(self, job_id: str) -> dict[str, str]:
        return dict(self.r.hgetall(f"{_job_key(job_id)}:reports"))

    # -- progress, cancel, delivery counting -------------------------------------------------------
    def add_progress(self, job_id: str, stage: str, line: str) -> None:
        entry = json.dumps({"at": utcnow().isoformat(), "stage": stage, "line": line[:500]})
        pipe = self.r.pipeline()
        pipe.lpush(f"{_job_key(job_id)}:progress", entry)
        pipe.ltrim(f"{_job_key(job_id)}:progress", 0, PROGRESS_KEEP - 1)
        pipe.execute()

    def progress(self, job_id: str, limit: int = 10) -> list[dict[str, str]]:
        raw = self.r.lrange(f"{_job_key(job_id)}:progress", 0, limit - 1)
        return [json.loads(x) for x in raw]

    def set_cancel(self, job: Job) -> None:
        """The flag the job's runner polls: the only job key a runner pool may read."""
        self.r.set(keys.cancel_flag(job.pool, job.id), "1", ex=7 * 24 * 3600)

    def clear_cancel(self, job: Job) -> None:
        self.r.delete(keys.cancel_flag(job.pool, job.id))

    def cancel_set(self, job: Job) -> bool:
        return bool(self.r.exists(keys.cancel_flag(job.pool, job.id)))

    def claim_refresh(self, job_id: str, interval_s: int) -> bool:
        """True at most once per interval: progress lines refresh the status comment that often."""
        return bool(self.r.set(f"{_job_key(job_id)}:refresh", "1", nx=True, ex=max(1, interval_s)))

    def claim_enqueue(self, job_id: str, stage: str, attempt: int) -> bool:
        """True once per (stage, attempt): a retried control task never sends a stage twice."""
        key = f"{_job_key(job_id)}:enqueued:{stage}:{attempt}"
        return bool(self.r.set(key, "1", nx=True, ex=30 * 24 * 3600))

    # -- runner liveness (see bot.tasks.watch) -------------------------------------------------
    def _pending_key(self, job_id: str, stage: str, attempt: int) -> str:
        return f"{_job_key(job_id)}:pending:{stage}:{attempt}"

    def mark_pending(self, job_id: str, stage: str, attempt: int, ttl_s: int) -> None:
        """The stage message is on its way to a runner (queued, not yet claimed)."""
        self.r.set(self._pending_key(job_id, stage, attempt), "1", ex=ttl_s)

    def clear_pending(self, job_id: str, stage: str, attempt: int) -> None:
        self.r.delete(self._pending_key(job_id, stage, attempt))

    def run_alive(self, job: Job, stage: str, attempt: int) -> bool:
        """A runner holds the attempt (its claim, refreshed by its heartbeat, lives in the pool's
        key space) or the message is still queued for one."""
        return bool(
            self.r.exists(
                keys.claim(job.pool, job.id, stage, attempt), self._pending_key(job.id, stage, attempt)
            )
        )
