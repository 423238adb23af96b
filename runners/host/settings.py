"""Runner-host settings from the environment (the same `ADAPT_BOT_` names the deploy files set).

Deliberately apart from the control plane's settings: a runner host has no App key, no webhook
secret and no GitHub URL to read, and its Redis URL names its pool's ACL user.
"""

from __future__ import annotations

import functools
from pathlib import Path

from pydantic_settings import BaseSettings, SettingsConfigDict


class RunnerSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ADAPT_BOT_", extra="ignore")

    #: `redis://runner-<pool>:<password>@host:6379/0`; the password may also come from a file.
    redis_url: str | None = None
    #: A file holding the runner user's password (k8s secret mount); kept out of the environment.
    redis_password_file: Path | None = None
    work_root: Path | None = None
    target_repo: Path | None = None
    vllm_root: Path | None = None
    vllm_ascend_root: Path | None = None
    #: The stage claim's TTL; the heartbeat thread refreshes it four times per TTL.
    heartbeat_ttl_s: int = 30
    #: A stage message received more often than this (its runner keeps dying) ends as worker-lost.
    max_stage_attempts: int = 3


@functools.cache
def get_runner_settings() -> RunnerSettings:
    return RunnerSettings()


def url_with_password(url: str, password: str | None) -> str:
    """`url` with `password` as its userinfo password (kombu and redis-py both read it there).

    Used when the password comes from a file (a mounted secret) rather than the environment.
    """
    if not password:
        return url
    from urllib.parse import quote, urlsplit, urlunsplit

    parts = urlsplit(url)
    user = parts.username or "default"
    host = parts.hostname or ""
    netloc = f"{quote(user, safe='')}:{quote(password, safe='')}@{host}" + (
        f":{parts.port}" if parts.port else ""
    )
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def effective_redis_url(settings: RunnerSettings) -> str:
    if not settings.redis_url:
        raise RuntimeError("ADAPT_BOT_REDIS_URL is not set: give the runner its pool's Redis URL")
    password = None
    if settings.redis_password_file is not None:
        password = settings.redis_password_file.read_text(encoding="utf-8").strip()
    return url_with_password(settings.redis_url, password)
