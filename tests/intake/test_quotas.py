"""bot/quotas.py on a real redis-server: limits from settings lowered (never raised) by the repo
config, slots freed by ended jobs without any release call, one admission per job id."""

from __future__ import annotations

import json
from typing import Any

import pytest
import redis

from bot import quotas
from bot.config import Settings
from bot.repo_config import Quotas

REPO = "octo/repo"


@pytest.fixture
def r(redis_url: str) -> Any:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    yield client
    client.close()


def admit(r: Any, job_id: str, user: str = "u", limit: int = 2) -> quotas.Exceeded | None:
    limits = quotas.Limits(user=limit, repo=100, installation=100)
    return quotas.admit(r, job_id=job_id, user=user, repo=REPO, installation_id=1, limits=limits)


@pytest.mark.parametrize(
    ("repo_quotas", "expected"),
    [(None, (2, 4, 8)), (Quotas(user=1), (1, 4, 8)), (Quotas(user=50, repo=2), (2, 2, 8))],
)
def test_repo_config_lowers_never_raises(repo_quotas: Any, expected: tuple[int, int, int]) -> None:
    got = quotas.limits_for(Settings(), repo_quotas)
    assert (got.user, got.repo, got.installation) == expected


def test_an_ended_job_frees_its_slot_by_itself(r: Any) -> None:
    for job_id, state in (("a", "running:analyze"), ("b", "running:real-gate")):
        r.set(f"adapt:job:{job_id}", json.dumps({"id": job_id, "state": state}))
        assert admit(r, job_id) is None
    over = admit(r, "c")
    assert over is not None and over.scope == "user" and over.active == 2 and sorted(over.jobs) == ["a", "b"]
    assert str(over) == "user quota of u is full (2 active jobs, limit 2)"
    c = type("J", (), {"id": "c", "repo": REPO, "installation_id": 1})()
    for state in ("failed:analyze", "cancelled", "succeeded"):
        r.set("adapt:job:a", json.dumps({"id": "a", "state": "running:features"}))
        assert admit(r, "a") is None and admit(r, "c") is not None  # a holds its slot again
        r.set("adapt:job:a", json.dumps({"id": "a", "state": state}))
        assert admit(r, "c") is None  # a's record is terminal: dropped inside the admission
        quotas.release(r, c, "u")
    r.set("adapt:job:a", json.dumps({"id": "a", "state": "waiting"}))  # waiting is still active
    assert admit(r, "a") is None and admit(r, "a") is None  # idempotent per job id (a rerun)
    assert admit(r, "c") is not None  # waiting is still active: a keeps its slot


def test_other_users_are_not_counted_and_a_broken_record_keeps_its_slot(r: Any) -> None:
    r.set("adapt:job:x", "not json")
    assert admit(r, "x", user="v", limit=1) is None
    assert admit(r, "y", user="v", limit=1) is not None  # x is not provably ended
    assert admit(r, "z", user="w", limit=1) is None
