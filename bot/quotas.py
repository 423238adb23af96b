"""Active-job quotas per user, per repository and per installation (one atomic Redis script).

A job holds a slot in three sorted sets (`adapt:quota:{user|repo|inst}:<who>`, member = job id,
score = admission time) from its start until it ends. Nothing has to remember to give a slot
back: the script that admits a job first drops the members whose job record is terminal
(succeeded, failed:<stage>, cancelled) or was never written (a start that died between admission
and creation, after a grace period), then counts, then adds — all inside Redis, so 25 labels in
8 s admit exactly the quota, however many control workers apply them at once.

A job over a quota is refused with a reply (no waiting queue: the user starts it again when a slot
frees). The limits come from the service settings (`ADAPT_BOT_QUOTA_USER|REPO|INSTALLATION`); a
repository's `.github/adapt-bot.yml` may lower the user and repo limits (`quotas:`), never raise them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Literal

import redis

Scope = Literal["user", "repo", "installation"]
SCOPES: tuple[Scope, ...] = ("user", "repo", "installation")
#: A member without a job record is dropped only after this long (admission precedes creation).
GRACE_S = 120

_ADMIT_LUA = """
local job_id = ARGV[1]
local now = tonumber(ARGV[2])
local grace = tonumber(ARGV[3])
local function terminal(state)
  return string.sub(state, 1, 9) == 'succeeded' or string.sub(state, 1, 7) == 'failed:'
      or string.sub(state, 1, 9) == 'cancelled'
end
local held = true
for i, key in ipairs(KEYS) do
  local members = redis.call('ZRANGE', key, 0, -1, 'WITHSCORES')
  for j = 1, #members, 2 do
    local m, score = members[j], tonumber(members[j + 1])
    if m ~= job_id then
      local raw = redis.call('GET', 'adapt:job:' .. m)
      if raw then
        local ok, job = pcall(cjson.decode, raw)
        if ok and type(job) == 'table' and type(job.state) == 'string' and terminal(job.state) then
          redis.call('ZREM', key, m)
        end
      elseif now - score > grace then
        redis.call('ZREM', key, m)
      end
    end
  end
  if not redis.call('ZSCORE', key, job_id) then
    held = false
  end
end
if held then
  return {0}
end
for i, key in ipairs(KEYS) do
  local n = redis.call('ZCARD', key)
  if redis.call('ZSCORE', key, job_id) then
    n = n - 1
  end
  local limit = tonumber(ARGV[3 + i])
  if n >= limit then
    local out = {i, n, limit}
    for _, m in ipairs(redis.call('ZRANGE', key, 0, -1)) do
      if m ~= job_id then
        table.insert(out, m)
      end
    end
    return out
  end
end
for i, key in ipairs(KEYS) do
  redis.call('ZADD', key, now, job_id)
end
return {0}
"""


@dataclass(frozen=True)
class Limits:
    user: int
    repo: int
    installation: int

    def of(self, scope: Scope) -> int:
        return {"user": self.user, "repo": self.repo, "installation": self.installation}[scope]


def limits_for(settings: Any, repo_quotas: Any = None) -> Limits:
    """The service's limits, lowered (never raised) by the repository's `quotas:` section."""

    def lowered(service: int, repo: int | None) -> int:
        return min(service, repo) if repo is not None else service

    return Limits(
        user=lowered(settings.quota_user, getattr(repo_quotas, "user", None)),
        repo=lowered(settings.quota_repo, getattr(repo_quotas, "repo", None)),
        installation=settings.quota_installation,
    )


@dataclass(frozen=True)
class Exceeded:
    """A quota that is full: which one, how many jobs hold it, and their ids."""

    scope: Scope
    who: str
    active: int
    limit: int
    jobs: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        return f"{self.scope} quota of {self.who} is full ({self.active} active jobs, limit {self.limit})"


def keys(user: str | None, repo: str, installation_id: int | None) -> list[str]:
    inst = str(installation_id) if installation_id is not None else f"repo:{repo}"
    return [f"adapt:quota:user:{user or '-'}", f"adapt:quota:repo:{repo}", f"adapt:quota:inst:{inst}"]


def admit(
    client: redis.Redis,
    *,
    job_id: str,
    user: str | None,
    repo: str,
    installation_id: int | None,
    limits: Limits,
    now: float | None = None,
) -> Exceeded | None:
    """Take a slot for `job_id` in all three quotas, or none of them. Idempotent per job id."""
    ks = keys(user, repo, installation_id)
    args: list[str | int | float] = [job_id, now if now is not None else time.time(), GRACE_S]
    args += [limits.user, limits.repo, limits.installation]
    out: Any = client.eval(_ADMIT_LUA, len(ks), *ks, *args)
    if int(out[0]) == 0:
        return None
    scope = SCOPES[int(out[0]) - 1]
    who = {"user": user or "-", "repo": repo, "installation": f"installation {installation_id}"}[scope]
    return Exceeded(scope, who, int(out[1]), int(out[2]), [str(m) for m in out[3:]])


def release(client: redis.Redis, job: Any, user: str | None) -> None:
    """Give a job's slot back at once (a start that did not create its job); a job that ends
    needs no call (the next admission drops it)."""
    pipe = client.pipeline()
    for key in keys(user, job.repo, job.installation_id):
        pipe.zrem(key, job.id)
    pipe.execute()


def shown_jobs(store: Any, repo: str, over: Exceeded) -> list[Any]:
    """The jobs holding a full quota that a reply on `repo` may name: only this repository's
    (another repository of the installation may be private)."""
    jobs = [store.get(job_id) for job_id in over.jobs[:10]]
    return [j for j in jobs if j is not None and j.repo == repo]


def admit_job(client: redis.Redis, job: Any, user: str | None, limits: Limits) -> Exceeded | None:
    """`admit` for a stored job (a rerun makes a finished job active again)."""
    return admit(
        client, job_id=job.id, user=user, repo=job.repo, installation_id=job.installation_id, limits=limits
    )


def admit_start(
    client: redis.Redis, store: Any, job: Any, user: str | None, limits: Limits
) -> Exceeded | None:
    """The hook where a job starts: an issue that already has an active job takes no slot (the
    start resumes that job, or is refused as already active); otherwise `admit`."""
    if store.active_for(job.repo, job.issue) is not None:
        return None
    return admit_job(client, job, user, limits)
