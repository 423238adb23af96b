"""Shared fixtures for the GitHub stand-in (owned by intake).

- `rsa_key`        : an RSA key pair generated for the session (the App's private key + the public
                     key the stand-in checks JWTs with); `rsa_key.path` is the PEM file.
- `standin_server` : the stand-in HTTP server (session); `github_standin` : its state, reset per test,
                     with one repo `octo-org/vllm-ascend` (installation 77) and collaborators
                     maintainer (write), admin-user (admin), reader (read).
- `app_settings`   : bot Settings aimed at the stand-in and the test Redis (cpu profile/pool).
- `app_env`        : the same as environment variables, for subprocesses (Celery workers, serve).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

WEBHOOK_SECRET = "test-webhook-secret-0123456789"  # a test value
APP_ID = 4242
REPO = "octo-org/vllm-ascend"
INSTALLATION = 77
COLLABORATORS = {"maintainer": "write", "admin-user": "admin", "reader": "read", "triager": "triage"}


@dataclass(frozen=True)
class RsaKey:
    private_pem: str
    public_pem: str
    path: Path


@pytest.fixture(scope="session")
def rsa_key(tmp_path_factory: pytest.TempPathFactory) -> RsaKey:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    public = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    path = tmp_path_factory.mktemp("app-key") / "app.pem"
    path.write_text(private)
    os.chmod(path, 0o600)
    return RsaKey(private, public, path)


@pytest.fixture(scope="session")
def standin_server(rsa_key: RsaKey) -> Iterator[object]:
    from tests.standin.server import StandinServer
    from tests.standin.state import StandinState

    server = StandinServer(StandinState(app_id=APP_ID, public_key_pem=rsa_key.public_pem)).start()
    yield server
    server.stop()


@pytest.fixture
def github_standin(standin_server: object) -> object:
    """The stand-in's state, fresh for each test, with one installed repository."""
    state = standin_server.state  # type: ignore[attr-defined]
    state.reset()
    state.add_repo(REPO, INSTALLATION, collaborators=COLLABORATORS)
    return state


@pytest.fixture
def app_settings(redis_url: str, github_standin: object, rsa_key: RsaKey, tmp_path: Path) -> object:
    from bot.config import Settings

    return Settings(
        webhook_secret=WEBHOOK_SECRET,
        app_id=APP_ID,
        private_key=rsa_key.path,
        github_api_url=github_standin.api,  # type: ignore[attr-defined]
        redis_url=redis_url,
        default_profile="cpu",
        default_pool="cpu",
        # issues name hub ids this closed network cannot reach; tests/intake/test_preflight.py
        # turns it on against the hub stand-in
        hub_preflight=False,
        write_spacing_s=0.05,
        max_inline_wait_s=5,
        permission_cache_s=1,
        repo_config_cache_s=1,
        data_dir=tmp_path / "service",
    )


@pytest.fixture
def app_env(app_settings: object, tmp_path: Path) -> dict[str, str]:
    """Environment for bot subprocesses; work and models roots are per-test directories."""
    s = app_settings
    env = {k: v for k, v in os.environ.items() if not k.startswith("ADAPT_BOT_")}
    keep = ("ADAPT_BOT_CPU_VLLM", "ADAPT_BOT_CACHE")
    env.update({k: os.environ[k] for k in keep if k in os.environ})
    env.update(
        {
            "ADAPT_BOT_WEBHOOK_SECRET": WEBHOOK_SECRET,
            "ADAPT_BOT_APP_ID": str(APP_ID),
            "ADAPT_BOT_PRIVATE_KEY": str(s.private_key),  # type: ignore[attr-defined]
            "ADAPT_BOT_GITHUB_API_URL": s.github_api_url,  # type: ignore[attr-defined]
            "ADAPT_BOT_REDIS_URL": s.redis_url,  # type: ignore[attr-defined]
            "ADAPT_BOT_DEFAULT_PROFILE": "cpu",
            "ADAPT_BOT_DEFAULT_POOL": "cpu",
            "ADAPT_BOT_HUB_PREFLIGHT": "false",
            "ADAPT_BOT_WRITE_SPACING_S": "0.05",
            "ADAPT_BOT_MAX_INLINE_WAIT_S": "5",
            "ADAPT_BOT_PERMISSION_CACHE_S": "1",
            "ADAPT_BOT_REPO_CONFIG_CACHE_S": "1",
            "ADAPT_BOT_DATA_DIR": str(s.data_dir),  # type: ignore[attr-defined]
            "ADAPT_BOT_WORK_ROOT": str(tmp_path / "work"),
            "ADAPT_BOT_MODELS_ROOT": str(tmp_path / "models"),
        }
    )
    return env
