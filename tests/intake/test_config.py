"""Service settings from the environment (names other tools rely on) and per-repo config parsing."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from bot import repo_config
from bot.config import Settings
from bot.redis_conn import redis_url


def test_environment_names(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("ADAPT_BOT_WEBHOOK_SECRET", "s3cret-value-xyz")
    monkeypatch.setenv("ADAPT_BOT_APP_ID", "123")
    monkeypatch.setenv("ADAPT_BOT_PRIVATE_KEY", str(tmp_path / "k.pem"))
    monkeypatch.setenv("ADAPT_BOT_GITHUB_API_URL", "https://ghe.example/api/v3/")
    monkeypatch.setenv("ADAPT_BOT_REDIS_URL", "redis://127.0.0.1:1/0")
    monkeypatch.setenv("ADAPT_BOT_LABEL", "please-adapt")
    monkeypatch.setenv("ADAPT_BOT_STAGE_TIMEOUTS", '{"real-gate": 60}')
    s = Settings()
    assert s.app_id == 123 and s.private_key == tmp_path / "k.pem" and s.label == "please-adapt"
    assert s.github_api_url == "https://ghe.example/api/v3" and s.redis_url == "redis://127.0.0.1:1/0"
    assert s.stage_timeout("real-gate") == 60 and s.stage_timeout("analyze") == 900
    assert "s3cret" not in repr(s) and "s3cret" not in str(s.model_dump())
    assert s.visibility_timeout_s > max(s.stage_timeouts.values())
    with pytest.raises(RuntimeError, match="cannot read ADAPT_BOT_PRIVATE_KEY"):
        s.private_key_pem()


@pytest.mark.parametrize("secret", ["changeme", "secret", "short", "  xxx  "])
def test_placeholder_secrets_are_refused(secret: str) -> None:
    with pytest.raises(ValidationError, match="placeholder"):
        Settings(webhook_secret=secret)


def test_only_serve_starts_an_embedded_redis() -> None:
    with pytest.raises(RuntimeError, match="ADAPT_BOT_REDIS_URL is not set"):
        redis_url(Settings(redis_url=None))


def test_repo_config_defaults_merge_and_errors() -> None:
    base = Settings()
    cpu = Settings(default_profile="cpu", default_pool="cpu")
    absent = repo_config.parse(None, base)
    assert (
        not absent.found
        and absent.config.pool_for("a3") == "a3-16"
        and absent.config.profile_for("a2") == "ascend-a2"
    )
    assert repo_config.parse(None, cpu).config.pool_for("a3") == "cpu"
    merged = repo_config.parse("delivery: {signoff: 'A <a@x>'}\ndefaults: {hardware: a3}\n", cpu)
    assert merged.error is None and merged.config.delivery.signoff == "A <a@x>"
    assert merged.config.delivery.mode == "app-commit"  # nested defaults kept
    assert merged.config.defaults.hardware == "a3" and merged.config.profile_for("a3") == "cpu"
    own = repo_config.parse("pools: {a2: big-pool}\n", cpu)
    assert own.config.pools == {"a2": "big-pool"}  # a repo's own pools replace the defaults whole
    for text, fragment in [
        ("[1, 2]", "mapping"),
        ("label: [", "not valid YAML"),
        ("permission: root", "permission"),
    ]:
        bad = repo_config.parse(text, base)
        assert bad.error and fragment in bad.error and bad.config.permission == "write"
