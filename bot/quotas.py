"""Active-job quotas per user, per repository and per installation (one atomic Redis script).

A job holds a slot in three sorted sets (`adapt:quota:{user|repo|inst}:<who>`, member = job id,
score = admission time) from its start until it ends. Nothing has to remember to give a slot
back: the script that admits a job first drops the members whose job record is terminal
(succeeded, failed:<stage>, cancelled) or was never written (a start that died between admission
and creation, after a grace period), then counts, then adds — all inside Redis, so 25 labels in
8 s admit exactly the quota, however many control workers apply them at once.

A job over a quota is refused with a reply (no waiting queue: the user starts it again when a slot
frees). On top of the active jobs, device-hours per rolling 24 h are limited per user, repository
and installation (`device_check`, below; `ADAPT_BOT_QUOTA_*_DEVICE_HOURS`), counted from the
stage results the control plane accepted. The limits come from the service settings
(`ADAPT_BOT_QUOTA_USER|REPO|INSTALLATION`); a repository's `.github/adapt-bot.yml` may lower the
user and repo limits (`quotas:`), never raise them.
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
    #: device-hours per rolling 24 h (see `device_check`); None: not checked
    device: DeviceLimits | None = None

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
        device=device_limits_for(settings, repo_quotas),
    )


@dataclass(frozen=True)
class Exceeded:
    """A quota that is full: which one, how many jobs hold it, and their ids."""

    scope: Scope
    who: str
    active: int
    limit: int
    jobs: list[str] = field(default_factory=list)

    kind = "active"

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


def shown_jobs(store: Any, repo: str, over: Exceeded | DeviceExceeded) -> list[Any]:
    """The jobs holding a full quota that a reply on `repo` may name: only this repository's
    (another repository of the installation may be private)."""
    jobs = [store.get(job_id) for job_id in over.jobs[:10]]
    return [j for j in jobs if j is not None and j.repo == repo]


def admit_job(
    client: redis.Redis, job: Any, user: str | None, limits: Limits
) -> Exceeded | DeviceExceeded | None:
    """`admit` for a stored job (a rerun makes a finished job active again), after the device-hour
    quotas of the last 24 h (`device_check`); an admitted job's spending is charged to `user`."""
    if limits.device is not None:
        used = device_check(
            client, user=user, repo=job.repo, installation_id=job.installation_id, limits=limits.device
        )
        if used is not None:
            return used
    over = admit(
        client, job_id=job.id, user=user, repo=job.repo, installation_id=job.installation_id, limits=limits
    )
    if over is None:
        note_owner(client, job.id, user)
    return over


def admit_start(
    client: redis.Redis, store: Any, job: Any, user: str | None, limits: Limits
) -> Exceeded | DeviceExceeded | None:
    """The hook where a job starts: an issue that already has an active job takes no slot (the
    start resumes that job, or is refused as already active); otherwise `admit`."""
    if store.active_for(job.repo, job.issue) is not None:
        return None
    return admit_job(client, job, user, limits)


# --------------------------------------------------------------------------- device-hours per day
#
# What a job spends is counted when a stage's result is accepted (`record_spent`, called by
# bot.tasks.stage_finished): the stage's `data.device_seconds` (runners.accounting: devices ×
# seconds of every server and reference process inside the stage's window). One Lua call files
# it, once per (job, stage, attempt), into
#   - the job's ledger `adapt:spent:job:<id>` (field `<stage>:<attempt>`; every attempt counts),
#   - the rolling ledgers of the user, the repository and the installation
#     (`adapt:spent:{user|repo|inst}:<who>`, member `<job>|<stage>|<attempt>|<device-seconds>`,
#     score = when the stage finished), and
#   - the per-repository counter /metrics shows (`adapt_bot_device_seconds_total{repo}`).
# The daily quota is a ROLLING 24 h window by the time each stage finished (not the UTC day): a
# start is refused while what finished in the last 24 h has reached the limit. A stage still
# running is not counted until it reports.

DAY_S = 24 * 3600
DEVICE_SECONDS_TOTAL = "adapt:metrics:device_seconds_by_repo"

_SPENT_LUA = """
local ds = tonumber(ARGV[3])
if redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[3]) == 0 then
  return 0
end
redis.call('EXPIRE', KEYS[1], 90 * 86400)
local at = tonumber(ARGV[4])
for i = 2, 4 do
  redis.call('ZADD', KEYS[i], at, ARGV[2])
  redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', at - tonumber(ARGV[5]))
  redis.call('EXPIRE', KEYS[i], 3 * 86400)
end
if ds > 0 then
  redis.call('HINCRBYFLOAT', KEYS[5], ARGV[6], ARGV[3])
end
return 1
"""


def _owner_key(job_id: str) -> str:
    return f"adapt:quota:owner:{job_id}"


def spent_keys(user: str | None, repo: str, installation_id: int | None) -> list[str]:
    inst = str(installation_id) if installation_id is not None else f"repo:{repo}"
    return [f"adapt:spent:user:{user or '-'}", f"adapt:spent:repo:{repo}", f"adapt:spent:inst:{inst}"]


def note_owner(client: redis.Redis, job_id: str, user: str | None) -> None:
    """Whose device-hours the job's next stages are (the starter; after a rerun, the rerunner)."""
    client.set(_owner_key(job_id), user or "-", ex=90 * 24 * 3600)


def record_spent(client: redis.Redis, job: Any, result: Any) -> bool:
    """File a stage result's device-seconds once (see above); False when already filed."""
    raw = (result.data or {}).get("device_seconds") if isinstance(result.data, dict) else None
    try:
        ds = max(0.0, float(raw or 0.0))
    except (TypeError, ValueError):  # a runner's malformed figure counts as nothing, not a crash
        ds = 0.0
    owner = client.get(_owner_key(job.id))
    user = None if owner in (None, "-") else str(owner)
    at = result.finished_at.timestamp() if result.finished_at is not None else time.time()
    field_ = f"{result.stage}:{result.attempt}"
    member = f"{job.id}|{field_}|{ds:.2f}"
    ks = [f"adapt:spent:job:{job.id}", *spent_keys(user, job.repo, job.installation_id), DEVICE_SECONDS_TOTAL]
    out: Any = client.eval(_SPENT_LUA, len(ks), *ks, field_, member, f"{ds:.2f}", at, 2 * DAY_S, job.repo)
    return bool(int(out))


@dataclass(frozen=True)
class JobSpent:
    """A job's device-seconds: per stage (its latest attempt) and in total (every attempt)."""

    by_stage: dict[str, float]
    total: float


def job_spent(client: redis.Redis, job_id: str) -> JobSpent:
    raw: Any = client.hgetall(f"adapt:spent:job:{job_id}")
    return spent_of(raw)


def spent_of(ledger: dict[str, str]) -> JobSpent:
    """Pure: a job ledger {"<stage>:<attempt>": device-seconds} -> per stage (latest attempt) and total."""
    latest: dict[str, tuple[int, float]] = {}
    total = 0.0
    for key, value in ledger.items():
        stage, _, attempt = key.rpartition(":")
        ds = float(value)
        total += ds
        n = int(attempt) if attempt.isdigit() else 0
        if stage not in latest or n >= latest[stage][0]:
            latest[stage] = (n, ds)
    return JobSpent({s: v for s, (_, v) in latest.items()}, round(total, 2))


@dataclass(frozen=True)
class DeviceLimits:
    """Device-hours per rolling 24 h, per user, repository and installation (None: no limit)."""

    user: float | None
    repo: float | None
    installation: float | None

    def of(self, scope: Scope) -> float | None:
        return {"user": self.user, "repo": self.repo, "installation": self.installation}[scope]


def device_limits_for(settings: Any, repo_quotas: Any = None) -> DeviceLimits:
    """The service's device-hour limits, lowered (never raised) by the repository's `quotas:`."""

    def lowered(service: float | None, repo: float | None) -> float | None:
        if repo is None:
            return service
        return repo if service is None else min(service, repo)

    return DeviceLimits(
        user=lowered(
            getattr(settings, "quota_user_device_hours", None),
            getattr(repo_quotas, "user_device_hours_per_day", None),
        ),
        repo=lowered(
            getattr(settings, "quota_repo_device_hours", None),
            getattr(repo_quotas, "repo_device_hours_per_day", None),
        ),
        installation=getattr(settings, "quota_installation_device_hours", None),
    )


@dataclass(frozen=True)
class DeviceExceeded:
    """A device-hour quota that is used up: spent in the window, the limit, and from when a start
    is admitted again (when enough of the spending has left the 24 h window)."""

    scope: Scope
    who: str
    spent_hours: float
    limit_hours: float
    frees_at: float
    jobs: list[str] = field(default_factory=list)

    kind = "device"

    @property
    def frees_at_utc(self) -> str:
        return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(self.frees_at))

    def __str__(self) -> str:
        return (
            f"{self.scope} device-hour quota of {self.who} is used up "
            f"({self.spent_hours:.2f} of {self.limit_hours:g} device-hours in the last 24 h)"
        )


def window_spent(
    entries: list[tuple[str, float]], now: float, window_s: float = DAY_S
) -> list[tuple[float, float]]:
    """Pure: ledger members (`job|stage:attempt|ds`, score) -> (finished at, device-seconds) inside
    the window, oldest first."""
    out = []
    for member, score in entries:
        if score <= now - window_s:
            continue
        try:
            out.append((float(score), float(member.rsplit("|", 1)[1])))
        except (IndexError, ValueError):
            continue
    return sorted(out)


def over_device_limit(
    spending: list[tuple[float, float]], limit_hours: float, window_s: float = DAY_S
) -> tuple[float, float] | None:
    """Pure: (spent hours, frees at) when `spending` (oldest first) has reached the limit, else None.
    It frees when the oldest entries have left the window until the rest is under the limit."""
    total = sum(ds for _, ds in spending)
    limit_s = limit_hours * 3600
    if total < limit_s:
        return None
    rest = total
    frees_at = spending[-1][0] + window_s if spending else 0.0
    for at, ds in spending:
        rest -= ds
        if rest < limit_s:
            frees_at = at + window_s
            break
    return round(total / 3600, 4), frees_at


def device_check(
    client: redis.Redis,
    *,
    user: str | None,
    repo: str,
    installation_id: int | None,
    limits: DeviceLimits,
    now: float | None = None,
) -> DeviceExceeded | None:
    """The first device-hour quota (user, repo, installation) the last 24 h have used up, or None."""
    now_ = now if now is not None else time.time()
    ks = spent_keys(user, repo, installation_id)
    pipe = client.pipeline(transaction=False)
    for key in ks:
        pipe.zrangebyscore(key, now_ - DAY_S, "+inf", withscores=True)
    got: Any = pipe.execute()
    for scope, entries in zip(SCOPES, got, strict=True):
        limit = limits.of(scope)
        if limit is None:
            continue
        over = over_device_limit(window_spent(list(entries), now_), limit)
        if over is not None:
            names = {"user": user or "-", "repo": repo, "installation": f"installation {installation_id}"}
            who = names[scope]
            return DeviceExceeded(scope, who, over[0], limit, over[1])
    return None
