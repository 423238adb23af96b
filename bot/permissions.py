"""Who may steer: repository permission levels, cached briefly in Redis.

Everything that spends hardware or pushes code — `/adapt run|rerun|cancel`, the check-run
buttons, AND the trigger label — needs the repo's configured level (`permission` in
`.github/adapt-bot.yml`, default `write`; `maintain` and `admin` rank above it). A label is not
trusted for being a label: GitHub lets `triage` users add labels, so the labeller is checked like
a commenter. An edited comment acts as its author, and an editor who is not the author must hold
the level too (`Intent.editor`).
"""

from __future__ import annotations

from dataclasses import dataclass

import redis

from bot.github_ports import PermissionReader

RANK = {"none": 0, "read": 1, "triage": 2, "write": 3, "maintain": 4, "admin": 5}


def allows(level: str, needed: str) -> bool:
    return RANK.get(level, 0) >= RANK.get(needed, RANK["write"])


def permission_of(gh: PermissionReader, repo: str, user: str, client: redis.Redis, ttl_s: int) -> str:
    key = f"adapt:perm:{repo}:{user}"
    cached = client.get(key)
    if cached:
        return str(cached)
    level = str(gh.permission(repo, user))
    client.set(key, level, ex=max(1, ttl_s))
    return level


@dataclass(frozen=True)
class Refusal:
    """The first actor that lacks the level, and the level they hold."""

    user: str
    level: str
    needed: str

    def __str__(self) -> str:
        return f"{self.user} has {self.level}, needs {self.needed}"


def refusal(
    gh: PermissionReader, repo: str, actors: list[str | None], needed: str, client: redis.Redis, ttl_s: int
) -> Refusal | None:
    """None when every actor (author, and the editor if someone else edited) holds `needed`."""
    for user in dict.fromkeys(a for a in actors if a):
        level = permission_of(gh, repo, user, client, ttl_s)
        if not allows(level, needed):
            return Refusal(user, level, needed)
    return None
