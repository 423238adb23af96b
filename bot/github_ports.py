"""The GitHub calls each control-plane behaviour needs, as narrow protocols (Prow's habit: a plugin
sees only the client methods it calls). `bot.github.InstallationClient` implements all of them
against the REST API; `tests/fakes.py` holds a small in-memory one for fast unit tests of the logic
(comments, permissions, repo config), while the stand-in server tests the real client.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol


class CommentWriter(Protocol):
    """Status, report, pre-flight and reply comments (bot.comments)."""

    @property
    def app_id(self) -> int | None: ...

    def list_comments(self, repo: str, number: int, max_pages: int = 30) -> list[dict[str, Any]]: ...

    def create_comment(
        self,
        repo: str,
        number: int,
        body: str,
        *,
        find_existing: Callable[[], dict[str, Any] | None] | None = None,
    ) -> dict[str, Any]: ...

    def update_comment(self, repo: str, comment_id: int, body: str) -> dict[str, Any]: ...


class Reactions(Protocol):
    def add_reaction(self, repo: str, comment_id: int, content: str) -> None: ...


class PermissionReader(Protocol):
    """bot.permissions: the collaborator level of a user."""

    def permission(self, repo: str, username: str) -> str: ...


class ContentsReader(Protocol):
    """bot.repo_config: one text file of the repository (default branch unless `ref`)."""

    def get_file(self, repo: str, path: str, ref: str | None = None) -> str | None: ...


class IssueClient(CommentWriter, Reactions, PermissionReader, ContentsReader, Protocol):
    """Everything applying an intent touches (bot.intents)."""

    @property
    def installation_id(self) -> int | None: ...
