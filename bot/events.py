"""Webhook payload -> `Intent`: the one shape every way of asking turns into.

Payloads are read as raw dicts with defensive accessors, not githubkit's strict typed parser:
GitHub's own older payload shapes lack fields newer schemas mark required, and every delivery
must still be answered 2xx. Pure: no I/O.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, Field

IntentKind = Literal[
    "start", "status", "rerun", "cancel", "help", "invalid", "too_many", "pr_closed", "installation"
]
Via = Literal["label", "comment", "check_run", "pull_request", "installation"]

#: Untrusted text kept on an intent is bounded (the model reference is searched in it).
MAX_TEXT = 65_536


class Intent(BaseModel):
    """A request to change (or report on) a job, independent of how it was asked."""

    kind: IntentKind
    via: Via
    event: str
    delivery: str
    repo: str | None = None
    installation_id: int | None = None
    issue: int | None = None
    is_pull_request: bool = False
    sender: str | None = None
    #: Who edited the comment when that is not its author (`sender` is then the author): both
    #: must hold the permission a command needs.
    editor: str | None = None
    #: Comment that carried the command (reactions and replies go there).
    comment_id: int | None = None
    command_line: str | None = None
    options: dict[str, Any] = Field(default_factory=dict)
    stage: str | None = None
    help_topic: str | None = None
    error: str | None = None
    error_command: str | None = None
    label: str | None = None
    issue_title: str = ""
    issue_body: str = ""
    #: The job a check-run button belongs to (its `external_id`), and the PR it sits on.
    job_id: str | None = None
    pr: int | None = None
    merged: bool | None = None
    #: Installation events: what happened (recorded only).
    detail: dict[str, Any] = Field(default_factory=dict)
    #: Semantic dedupe: the same key within the TTL creates nothing new, whatever the delivery GUID.
    dedupe_key: str
    dedupe_ttl_s: int | None = None
    #: `repository.private` of the delivery (None: unknown, treated as private by the jobs pages).
    repo_private: bool | None = None


@dataclass(frozen=True)
class EventContext:
    """One verified delivery, with the few fields every behaviour needs, read defensively."""

    event: str
    delivery: str
    payload: dict[str, Any]
    #: Labels that may start a job in this repository (None = unknown, let the control plane decide).
    trigger_labels: frozenset[str] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def action(self) -> str:
        a = self.payload.get("action")
        return a if isinstance(a, str) else ""

    @property
    def repo(self) -> str | None:
        r = _dict(self.payload.get("repository"))
        name = r.get("full_name")
        if isinstance(name, str) and "/" in name:
            return name
        owner = _dict(r.get("owner")).get("login")
        if isinstance(owner, str) and isinstance(r.get("name"), str):
            return f"{owner}/{r['name']}"
        return None

    @property
    def installation_id(self) -> int | None:
        return _int(_dict(self.payload.get("installation")).get("id"))

    @property
    def sender(self) -> dict[str, Any]:
        return _dict(self.payload.get("sender"))

    @property
    def sender_login(self) -> str | None:
        login = self.sender.get("login")
        return login if isinstance(login, str) else None

    @property
    def sender_is_bot(self) -> bool:
        """GitHub's `type` decides, never the login suffix (anyone can be called `x[bot]`-like)."""
        return self.sender.get("type") == "Bot"

    def base(self, kind: IntentKind, via: Via, dedupe_key: str, **kw: Any) -> Intent:
        """An intent from this delivery; `sender=` overrides the acting user (an edit acts as the
        comment's author, not as the editor)."""
        kw.setdefault("sender", self.sender_login)
        return Intent(
            kind=kind,
            via=via,
            event=self.event,
            delivery=self.delivery,
            repo=self.repo,
            installation_id=self.installation_id,
            dedupe_key=dedupe_key,
            **kw,
        )


def _dict(v: Any) -> dict[str, Any]:
    return v if isinstance(v, dict) else {}


def _int(v: Any) -> int | None:
    return v if isinstance(v, int) and not isinstance(v, bool) else None


def _str(v: Any) -> str:
    return v if isinstance(v, str) else ""


def issue_fields(payload: dict[str, Any]) -> dict[str, Any]:
    """Issue number, whether it is a PR, and the text the model reference is read from."""
    issue = _dict(payload.get("issue"))
    return {
        "issue": _int(issue.get("number")),
        "is_pull_request": bool(issue.get("pull_request")),
        "issue_title": _str(issue.get("title"))[:1000],
        "issue_body": _str(issue.get("body"))[:MAX_TEXT],
    }


def digest(*parts: object) -> str:
    """A short stable key for dedupe (comment lines can be long; keys stay small)."""
    h = hashlib.sha256("\x1f".join(str(p) for p in parts).encode("utf-8", "replace"))
    return h.hexdigest()[:24]


dict_of = _dict
int_of = _int
str_of = _str
