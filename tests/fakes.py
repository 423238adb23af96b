"""A small in-memory GitHub for fast unit tests of control-plane logic (bot/github_ports.py).

It implements only the narrow protocols; the GitHub stand-in server (tests/standin/) remains the
test of the real client, its HTTP shapes and its faults."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass
class MemoryGitHub:
    app_id: int | None = 4242
    installation_id: int | None = 77
    comments: dict[int, dict[str, Any]] = field(default_factory=dict)
    levels: dict[str, str] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)
    reactions: list[tuple[int, str]] = field(default_factory=list)
    calls: list[str] = field(default_factory=list)

    def list_comments(self, repo: str, number: int, max_pages: int = 30) -> list[dict[str, Any]]:
        self.calls.append("list")
        return [dict(c) for c in self.comments.values() if c["issue"] == (repo, number)]

    def create_comment(
        self,
        repo: str,
        number: int,
        body: str,
        *,
        find_existing: Callable[[], dict[str, Any] | None] | None = None,
    ) -> dict[str, Any]:
        self.calls.append("create")
        cid = 1000 + len(self.comments)
        self.comments[cid] = {
            "id": cid,
            "issue": (repo, number),
            "body": body,
            "performed_via_github_app": {"id": self.app_id},
        }
        return dict(self.comments[cid])

    def human_comment(self, repo: str, number: int, body: str) -> int:
        cid = 1000 + len(self.comments)
        self.comments[cid] = {
            "id": cid,
            "issue": (repo, number),
            "body": body,
            "performed_via_github_app": None,
        }
        return cid

    def update_comment(self, repo: str, comment_id: int, body: str) -> dict[str, Any]:
        self.calls.append("update")
        self.comments[comment_id]["body"] = body
        return dict(self.comments[comment_id])

    def add_reaction(self, repo: str, comment_id: int, content: str) -> None:
        self.reactions.append((comment_id, content))

    def permission(self, repo: str, username: str) -> str:
        self.calls.append(f"permission {username}")
        return self.levels.get(username, "none")

    def get_file(self, repo: str, path: str, ref: str | None = None) -> str | None:
        return self.files.get(path)
