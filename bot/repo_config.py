"""Per-repository settings: `.github/adapt-bot.yml` on the default branch (Probot convention).

Read through the contents API, merged over the defaults (built-in, then the service's
ADAPT_BOT_DEFAULT_PROFILE / ADAPT_BOT_DEFAULT_POOL / ADAPT_BOT_LABEL), validated with pydantic and
cached briefly in Redis. A broken file does not stop the bot: the defaults apply and the error is
reported. Parsing and merging are pure.
"""

from __future__ import annotations

import logging
from typing import Any, Literal

import redis
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from bot.config import Settings
from bot.github_ports import ContentsReader
from runners.contracts import AdapterSpec, ArtifactOptions

log = logging.getLogger(__name__)

PATH = ".github/adapt-bot.yml"
Permission = Literal["write", "maintain", "admin"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Defaults(_Strict):
    hardware: Literal["a2", "a3"] = "a2"
    tp: int | None = None
    max_model_len: int | None = None


class Delivery(_Strict):
    mode: Literal["app-commit", "fork"] = "app-commit"
    fork: str | None = None
    base_branch: str | None = None
    #: None = the App's bot identity; otherwise "Name <email>".
    signoff: str | None = None
    draft_until_real_gate: bool = True
    #: When the bot's PR is merged: post the closing summary AND close the issue (False: summary only).
    close_issue_on_merge: bool = True


class Quotas(_Strict):
    """Active jobs at most per user and for this repository; lowers the service's limits
    (ADAPT_BOT_QUOTA_USER / _REPO), never raises them (bot/quotas.py)."""

    user: int | None = Field(default=None, ge=1)
    repo: int | None = Field(default=None, ge=1)
    #: device-hours per rolling 24 h (ADAPT_BOT_QUOTA_USER_DEVICE_HOURS / _REPO_DEVICE_HOURS)
    user_device_hours_per_day: float | None = Field(default=None, gt=0)
    repo_device_hours_per_day: float | None = Field(default=None, gt=0)


class Budget(_Strict):
    """A job whose pre-flight estimate of device-hours exceeds this is stopped before any device
    time (bot/preflight.py `budget_verdict`); None: no budget."""

    device_hours_per_job: float | None = Field(default=None, gt=0)


class RemoteCode(_Strict):
    #: Let jobs of this repository run a checkpoint's own Python (`--trust-remote-code`) when vLLM
    #: cannot serve it natively. Off by default: runner hosts would execute code from the internet.
    allow: bool = False


class RepoConfig(_Strict):
    label: str = "adapt-model"
    #: Minimum permission to start, rerun or cancel a job: by `/adapt`, check-run button or label.
    permission: Permission = "write"
    #: Minimum permission to name a contributor branch (`/adapt run --candidate`): its code runs on
    #: a runner and its diff lands in the bot's commit, so it ranks above `permission` by default.
    candidate_permission: Permission = "maintain"
    pools: dict[str, str] = Field(default_factory=lambda: {"a2": "a2-8", "a3": "a3-16"})
    profiles: dict[str, str] = Field(default_factory=lambda: {"a2": "ascend-a2", "a3": "ascend-a3"})
    defaults: Defaults = Field(default_factory=Defaults)
    artifacts: ArtifactOptions = Field(default_factory=ArtifactOptions)
    delivery: Delivery = Field(default_factory=Delivery)
    remote_code: RemoteCode = Field(default_factory=RemoteCode)
    quotas: Quotas = Field(default_factory=Quotas)
    budget: Budget = Field(default_factory=Budget)
    #: The adapter step (runners.adapter): a command the runner runs when a gate fails, whose patch
    #: is re-gated and, when it passes, delivered. None = off (the default). An argv list, no shell.
    adapter: AdapterSpec | None = None

    def pool_for(self, hardware: str) -> str:
        return self.pools.get(hardware) or next(iter(self.pools.values()), "cpu")

    def profile_for(self, hardware: str) -> str:
        return self.profiles.get(hardware) or next(iter(self.profiles.values()), "cpu")


class LoadedConfig(BaseModel):
    config: RepoConfig
    #: Problem with the repository's file (shown to users), None when it was fine or absent.
    error: str | None = None
    found: bool = False


def service_defaults(settings: Settings) -> dict[str, Any]:
    base: dict[str, Any] = RepoConfig(label=settings.label).model_dump()
    if settings.default_profile:
        base["profiles"] = {"a2": settings.default_profile, "a3": settings.default_profile}
    if settings.default_pool:
        base["pools"] = {"a2": settings.default_pool, "a3": settings.default_pool}
    return base


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict) and k not in ("pools", "profiles"):
            out[k] = _merge(out[k], v)
        else:
            out[k] = v
    return out


def parse(text: str | None, settings: Settings) -> LoadedConfig:
    """YAML text (or None when the file does not exist) -> validated config over the defaults."""
    defaults = service_defaults(settings)
    if text is None:
        return LoadedConfig(config=RepoConfig.model_validate(defaults))
    try:
        data = yaml.safe_load(text) or {}
        if not isinstance(data, dict):
            raise ValueError("the file must be a mapping of settings")
        return LoadedConfig(config=RepoConfig.model_validate(_merge(defaults, data)), found=True)
    except (yaml.YAMLError, ValueError, ValidationError) as exc:
        msg = _short_error(exc)
        return LoadedConfig(config=RepoConfig.model_validate(defaults), error=f"{PATH}: {msg}", found=True)


def _short_error(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        parts = [f"{'.'.join(str(x) for x in e['loc'])}: {e['msg']}" for e in exc.errors()[:5]]
        return "; ".join(parts)
    if isinstance(exc, yaml.YAMLError):
        return "not valid YAML"
    return str(exc)[:200]


def cache_key(repo: str) -> str:
    return f"adapt:repo-config:{repo}"


def labels_key(repo: str) -> str:
    """Trigger label(s) of a repo, kept without expiry for the webhook's in-request label filter."""
    return f"adapt:repo-labels:{repo}"


def load(gh: ContentsReader, repo: str, settings: Settings, client: redis.Redis) -> LoadedConfig:
    """Cached read of the repo's config through `gh.get_file` (an InstallationClient)."""
    raw = client.get(cache_key(repo))
    if raw:
        return LoadedConfig.model_validate_json(raw)
    loaded = parse(gh.get_file(repo, PATH), settings)
    pipe = client.pipeline()
    pipe.set(cache_key(repo), loaded.model_dump_json(), ex=settings.repo_config_cache_s)
    pipe.delete(labels_key(repo))
    pipe.sadd(labels_key(repo), loaded.config.label)
    pipe.execute()
    if loaded.error:
        log.warning("repository config of %s is invalid: %s", repo, loaded.error)
    return loaded
