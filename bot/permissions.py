"""Who may steer: repository permission levels, cached briefly in Redis.

Commands that spend hardware or push code need the repo's configured level (default `write`;
`maintain` and `admin` rank above it). Labels are trusted: GitHub already restricts labelling.
"""

from __future__ import annotations

from typing import Any

import redis

RANK = {"none": 0, "read": 1, "triage": 2, "write": 3, "maintain": 4, "admin": 5}


def allows(level: str, needed: str) -> bool:
    return RANK.get(level, 0) >= RANK.get(needed, RANK["write"])


def permission_of(gh: Any, repo: str, user: str, client: redis.Redis, ttl_s: int) -> str:
    key = f"adapt:perm:{repo}:{user}"
    cached = client.get(key)
    if cached:
        return str(cached)
    level = str(gh.permission(repo, user))
    client.set(key, level, ex=max(1, ttl_s))
    return level
