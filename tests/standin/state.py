"""The stand-in's in-memory world, recorded requests and injected faults. Thread-safe."""

from __future__ import annotations

import fnmatch
import itertools
import secrets
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from tests.standin import shapes


@dataclass
class Fault:
    """A forced response for the next matching request (the request is NOT applied)."""

    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: dict[str, Any] = field(default_factory=lambda: {"message": "fault injected"})
    #: Seconds to hold the response back. With `apply=True` the request IS applied and its real
    #: response comes late (GitHub created the comment, the client timed out first).
    delay_s: float = 0.0
    apply: bool = False


def late_answer(delay_s: float) -> Fault:
    """The request is applied, but the answer arrives after `delay_s` (past the client timeout)."""
    return Fault(0, delay_s=delay_s, apply=True)


def unavailable() -> Fault:
    return Fault(503, body={"message": "Service Unavailable"})


def bad_gateway() -> Fault:
    return Fault(502, body={"message": "Server Error"})


def secondary_rate_limit(retry_after: int = 1) -> Fault:
    return Fault(
        403,
        {"retry-after": str(retry_after), "x-ratelimit-remaining": "4999"},
        {
            "message": "You have exceeded a secondary rate limit. "
            "Please wait a few minutes before you try again.",
            "documentation_url": "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api#about-secondary-rate-limits",
        },
    )


def too_many_requests(reset_in: int = 1) -> Fault:
    return Fault(
        429,
        {"x-ratelimit-remaining": "0", "x-ratelimit-reset": str(int(time.time()) + reset_in)},
        {"message": "API rate limit exceeded"},
    )


@dataclass
class Recorded:
    method: str
    path: str
    query: str
    body: Any
    status: int
    auth: str  # "jwt", "token:<installation>", "none", "invalid"
    at: float  # arrival time


@dataclass
class Repo:
    owner: str
    name: str
    id: int
    installation_id: int
    default_branch: str = "main"
    #: login -> role (admin, maintain, write, triage, read)
    collaborators: dict[str, str] = field(default_factory=dict)
    #: path -> text on the default branch (contents API)
    files: dict[str, str] = field(default_factory=dict)
    issues: dict[int, dict[str, Any]] = field(default_factory=dict)
    labels: dict[str, dict[str, Any]] = field(default_factory=dict)
    private: bool = False

    @property
    def full_name(self) -> str:
        return f"{self.owner}/{self.name}"


class StandinState:
    def __init__(
        self, app_id: int = 4242, slug: str = "adapt-bot-test", public_key_pem: str | None = None
    ) -> None:
        self.lock = threading.RLock()
        self.api = "http://127.0.0.1"  # set by the server once it has a port
        self.app_id = app_id
        self.slug = slug
        self.public_key_pem = public_key_pem
        self.reset()

    # -- world -------------------------------------------------------------------------------------
    def reset(self) -> None:
        with self.lock:
            self._ids = itertools.count(1000)
            self.repos: dict[str, Repo] = {}
            self.users: dict[str, dict[str, Any]] = {}
            self.installations: dict[int, dict[str, Any]] = {}
            self.tokens: dict[str, tuple[int, float]] = {}
            self.comments: dict[int, dict[str, Any]] = {}
            self.reactions: dict[int, list[dict[str, Any]]] = {}
            self.requests: list[Recorded] = []
            #: (method, path, time) as each request ARRIVES (`requests` records it once answered)
            self.arrivals: list[tuple[str, str, float]] = []
            self.faults: deque[tuple[str, str, Fault]] = deque()
            #: (method, path pattern, until (time.time()), fault): every match answers the fault
            self.outages: list[tuple[str, str, float, Fault]] = []
            #: OAuth (the App's user authorization): client id -> secret; code -> login; token -> login
            self.oauth_clients: dict[str, str] = {}
            self.oauth_codes: dict[str, str] = {}
            self.user_tokens: dict[str, str] = {}
            #: Webhooks "GitHub" sent (tests/standin/hooks_api.py): the App's hook URL and secret,
            #: and the delivery log the App's webhook deliveries API lists.
            self.hook_url: str | None = None
            self.hook_secret: str | None = None
            self.hook_deliveries: list[dict[str, Any]] = []
            #: Free space for route modules added through app.ROUTE_MODULES (e.g. git_api).
            self.extra: dict[str, Any] = {}

    def next_id(self) -> int:
        with self.lock:
            return next(self._ids)

    def user(self, login: str, type_: str = "User") -> dict[str, Any]:
        with self.lock:
            if login not in self.users:
                self.users[login] = shapes.user(self.api, login, self.next_id(), type_)
            return self.users[login]

    @property
    def bot_user(self) -> dict[str, Any]:
        return self.user(f"{self.slug}[bot]", "Bot")

    def app_json(self) -> dict[str, Any]:
        return shapes.integration(self.api, self.app_id, self.slug, self.user("adapt-org", "Organization"))

    def add_repo(
        self,
        full_name: str = "octo-org/vllm-ascend",
        installation_id: int = 77,
        collaborators: dict[str, str] | None = None,
        files: dict[str, str] | None = None,
    ) -> Repo:
        owner, name = full_name.split("/", 1)
        with self.lock:
            account = self.user(owner, "Organization")
            self.installations.setdefault(
                installation_id,
                shapes.installation(self.api, installation_id, account, self.app_id, self.slug),
            )
            repo = Repo(owner, name, self.next_id(), installation_id, collaborators=dict(collaborators or {}))
            repo.files.update(files or {})
            self.repos[full_name] = repo
            return repo

    def add_issue(
        self,
        full_name: str,
        title: str,
        body: str = "",
        author: str = "reporter",
        number: int | None = None,
        pull_request: bool = False,
    ) -> dict[str, Any]:
        with self.lock:
            repo = self.repos[full_name]
            n = number or (max(repo.issues, default=0) + 1)
            base = f"{self.api}/repos/{full_name}/issues/{n}"
            ts = shapes.now_iso()
            issue = {
                "id": self.next_id(),
                "node_id": f"I_{n}",
                "url": base,
                "repository_url": f"{self.api}/repos/{full_name}",
                "labels_url": f"{base}/labels{{/name}}",
                "comments_url": f"{base}/comments",
                "events_url": f"{base}/events",
                "html_url": f"https://github.com/{full_name}/issues/{n}",
                "number": n,
                "state": "open",
                "title": title,
                "body": body,
                "user": self.user(author),
                "labels": [],
                "assignee": None,
                "assignees": [],
                "milestone": None,
                "locked": False,
                "active_lock_reason": None,
                "comments": 0,
                "closed_at": None,
                "created_at": ts,
                "updated_at": ts,
                "author_association": "NONE",
            }
            if pull_request:
                issue["pull_request"] = {
                    "url": f"{self.api}/repos/{full_name}/pulls/{n}",
                    "html_url": f"https://github.com/{full_name}/pull/{n}",
                    "diff_url": None,
                    "patch_url": None,
                }
            repo.issues[n] = issue
            return issue

    def add_comment(
        self, full_name: str, issue: int, body: str, login: str, *, as_app: bool = False
    ) -> dict[str, Any]:
        with self.lock:
            repo = self.repos[full_name]
            cid = self.next_id()
            ts = shapes.now_iso()
            url = f"{self.api}/repos/{full_name}/issues/comments/{cid}"
            author = self.bot_user if as_app else self.user(login)
            comment = {
                "id": cid,
                "node_id": f"IC_{cid}",
                "url": url,
                "html_url": f"https://github.com/{full_name}/issues/{issue}#issuecomment-{cid}",
                "body": body,
                "user": author,
                "created_at": ts,
                "updated_at": ts,
                "issue_url": f"{self.api}/repos/{full_name}/issues/{issue}",
                "author_association": "NONE" if as_app else "MEMBER",
                "performed_via_github_app": self.app_json() if as_app else None,
                "reactions": shapes.reactions_rollup(f"{url}/reactions", {}),
                "_repo": full_name,
                "_issue": issue,
            }
            self.comments[cid] = comment
            repo.issues[issue]["comments"] += 1
            return comment

    # -- queries for tests ---------------------------------------------------------------------------
    def comments_on(self, full_name: str, issue: int) -> list[dict[str, Any]]:
        with self.lock:
            return [c for c in self.comments.values() if c["_repo"] == full_name and c["_issue"] == issue]

    def reactions_on(self, comment_id: int) -> list[str]:
        with self.lock:
            return [r["content"] for r in self.reactions.get(comment_id, [])]

    def requests_to(self, method: str, pattern: str) -> list[Recorded]:
        with self.lock:
            return [r for r in self.requests if r.method == method and fnmatch.fnmatch(r.path, pattern)]

    # -- auth -----------------------------------------------------------------------------------------
    def issue_token(self, installation_id: int) -> tuple[str, float]:
        token = "ghs_" + secrets.token_urlsafe(30)
        expires = time.time() + 3600
        with self.lock:
            self.tokens[token] = (installation_id, expires)
        return token, expires

    def token_installation(self, token: str) -> int | None:
        with self.lock:
            entry = self.tokens.get(token)
        if entry is None or entry[1] < time.time():
            return None
        return entry[0]

    # -- faults ---------------------------------------------------------------------------------------
    def inject(self, method: str, path_pattern: str, *faults: Fault) -> None:
        """Queue forced responses for requests matching METHOD and a glob path pattern, in order."""
        with self.lock:
            for f in faults:
                self.faults.append((method.upper(), path_pattern, f))

    def outage(self, method: str, path_pattern: str, seconds: float, fault: Fault | None = None) -> None:
        """Every request matching METHOD and the glob answers `fault` (503) for `seconds`."""
        with self.lock:
            self.outages.append((method.upper(), path_pattern, time.time() + seconds, fault or unavailable()))

    def end_outages(self) -> None:
        with self.lock:
            self.outages.clear()

    def user_token(self, login: str) -> str:
        """A user access token (what the OAuth code exchange hands out) for `login`."""
        token = "gho_" + secrets.token_urlsafe(24)
        with self.lock:
            self.user(login)
            self.user_tokens[token] = login
        return token

    def can_read(self, login: str | None, full_name: str) -> bool:
        with self.lock:
            repo = self.repos.get(full_name)
            if repo is None:
                return False
            return not repo.private or (login is not None and login in repo.collaborators)

    def take_fault(self, method: str, path: str) -> Fault | None:
        with self.lock:
            now = time.time()
            for m, pattern, until, fault in self.outages:
                if until > now and (m == method or m == "*") and fnmatch.fnmatch(path, pattern):
                    return fault
            for i, (m, pattern, fault) in enumerate(self.faults):
                if m == method and fnmatch.fnmatch(path, pattern):
                    del self.faults[i]
                    return fault
        return None
