"""GitHub adapter (githubkit, App authentication): the only code that talks to GitHub.

- App JWT -> installation token; githubkit caches tokens in process memory (never in Redis, which
  runner hosts can reach: runners must not be able to read credentials).
- Explicit timeouts. githubkit's own retry is off so that ONE policy applies to every call:
  reads retry 5xx; writes go through `_write`, which spaces mutating requests across processes
  with a Redis throttle (one per installation: one busy installation cannot slow the others) and
  honours `retry-after` / `x-ratelimit-reset` on 403/429 and retries
  every 5xx. Short waits happen inline; a long one raises `RetryLater` so a task can retry
  with a countdown instead of sleeping. A `GitHubError` says whether it is `transient` (5xx,
  timeouts, connection errors, rate limits: the task retries for hours) or permanent (404, 403
  without a rate limit, 422: retrying cannot help).
- Callers get plain dicts / ints / strings: the rest of the bot does not depend on githubkit.
"""

from __future__ import annotations

import base64
import datetime as dt
import functools
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import quote

import httpx
import redis
from githubkit import AppAuthStrategy, GitHub
from githubkit.cache import MemCacheStrategy
from githubkit.exception import RateLimitExceeded, RequestError, RequestFailed, RequestTimeout

from bot.config import Settings
from runners.contracts import Candidate

log = logging.getLogger(__name__)
T = TypeVar("T")

RETRY_STATUSES = frozenset(range(500, 600))
THROTTLE_KEY = "adapt:gh:next-write"


def throttle_key(installation_id: int | None) -> str:
    """One write throttle per installation (GitHub's secondary limits are per token)."""
    return f"{THROTTLE_KEY}:{installation_id}" if installation_id is not None else f"{THROTTLE_KEY}:app"


# Reserve the next write slot: returns how long (s) the caller waits before its write. Uses the
# Redis server's clock so several hosts agree.
_THROTTLE_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local spacing = tonumber(ARGV[1])
local nxt = tonumber(redis.call('GET', KEYS[1]) or '0')
local slot = math.max(now, nxt)
redis.call('SET', KEYS[1], tostring(slot + spacing), 'PX', math.ceil((slot + spacing - now) * 1000) + 1000)
return tostring(slot - now)
"""


class GitHubError(Exception):
    """A GitHub call failed for good; the message is safe to log (no tokens, no bodies)."""

    def __init__(self, message: str, status: int | None = None, *, transient: bool | None = None) -> None:
        super().__init__(message)
        self.status = status
        #: True when a later attempt may succeed (5xx, timeout, connection error, rate limit).
        if transient is None:
            transient = status is None or status >= 500 or status == 429
        self.transient = transient


class RetryLater(Exception):
    """GitHub asked us to wait longer than we wait inline; retry the task after `wait_s`."""

    def __init__(self, wait_s: float, what: str) -> None:
        super().__init__(f"{what}: retry in {wait_s:.0f}s")
        self.wait_s = wait_s


class WriteThrottle:
    """Spacing of mutating requests shared by every process on the same Redis."""

    def __init__(self, client: redis.Redis | None, spacing_s: float) -> None:
        self.spacing_s = spacing_s
        self._script = client.register_script(_THROTTLE_LUA) if client is not None and spacing_s > 0 else None

    def reserve(self, installation_id: int | None = None) -> float:
        if self._script is None:
            return 0.0
        return float(self._script(keys=[throttle_key(installation_id)], args=[self.spacing_s]))

    def wait(self, installation_id: int | None = None) -> None:
        delay = self.reserve(installation_id)
        if delay > 0:
            time.sleep(delay)


def _status(exc: RequestFailed) -> int:
    return int(exc.response.status_code)


def _wait_for(exc: RequestFailed) -> float | None:
    """Seconds to wait before retrying a rate-limited response, or None if it is not one."""
    if isinstance(exc, RateLimitExceeded):
        return max(0.0, exc.retry_after.total_seconds())
    if _status(exc) == 429:
        headers = exc.response.headers
        if "retry-after" in headers:
            try:
                return max(0.0, float(headers["retry-after"]))
            except ValueError:
                return 60.0
        if "x-ratelimit-reset" in headers:
            try:
                return max(0.0, float(headers["x-ratelimit-reset"]) - time.time())
            except ValueError:
                return 60.0
        return 60.0
    return None


class TokenCache(MemCacheStrategy):
    """githubkit's in-memory token cache, one per client, that can forget a revoked token."""

    def clear(self) -> None:
        self._cache = None


class GitHubClient:
    """App-level client; `installation(id)` gives the per-installation API the bot uses."""

    def __init__(self, settings: Settings, redis_client: redis.Redis | None = None) -> None:
        if settings.app_id is None:
            raise RuntimeError("ADAPT_BOT_APP_ID is not set")
        self.settings = settings
        self._tokens = TokenCache()
        self._gh = GitHub(
            AppAuthStrategy(settings.app_id, settings.private_key_pem()),
            base_url=settings.github_api_url + "/",
            timeout=httpx.Timeout(settings.github_timeout_s, connect=5.0),
            auto_retry=False,
            http_cache=False,
            cache_strategy=self._tokens,
            user_agent="adapt-bot",
        )
        self.throttle = WriteThrottle(redis_client, settings.write_spacing_s)
        self.redis = redis_client
        self._installations: dict[int, InstallationClient] = {}

    def call(
        self,
        what: str,
        fn: Callable[[], T],
        *,
        mutating: bool = False,
        marker_check: Callable[[], T | None] | None = None,
        installation_id: int | None = None,
    ) -> T:
        """The one request path. `marker_check` (for creates) finds an object a failed attempt
        may have created anyway, so a retry after a 5xx or a timeout never duplicates it.
        `installation_id` picks the write throttle (per installation)."""
        s = self.settings
        attempt = 0
        renewed = False
        while True:
            attempt += 1
            if mutating:
                self.throttle.wait(installation_id)
            try:
                return fn()
            except RequestFailed as exc:
                status = _status(exc)
                wait = _wait_for(exc)
                if status == 401 and not renewed:  # token revoked or expired early: get a new one
                    renewed = True
                    self._tokens.clear()
                    continue
                if wait is None and status not in RETRY_STATUSES:
                    raise GitHubError(f"{what}: HTTP {status}", status) from None
                if attempt > s.write_retries:
                    # rate limited or 5xx: a later attempt (the task's countdown retry) may succeed
                    raise GitHubError(
                        f"{what}: HTTP {status} after {attempt} attempts", status, transient=True
                    ) from None
                if wait is None:
                    wait = min(30.0, 0.5 * 2 ** (attempt - 1)) * (0.5 + random.random())  # noqa: S311
                if wait > s.max_inline_wait_s:
                    raise RetryLater(wait, what) from None
                log.warning("%s: HTTP %d, retrying in %.1fs (attempt %d)", what, status, wait, attempt)
                time.sleep(wait)
                if marker_check is not None and status in RETRY_STATUSES:
                    found = self._look_again(marker_check)
                    if found is not None:
                        return found
            except (RequestTimeout, RequestError) as exc:
                # A timeout or a dropped connection: the request may have been applied anyway.
                kind = "timed out" if isinstance(exc, RequestTimeout) else type(exc.exc).__name__
                if attempt > s.write_retries:
                    raise GitHubError(f"{what}: {kind} after {attempt} attempts", transient=True) from None
                log.warning("%s: %s, retrying (attempt %d)", what, kind, attempt)
                time.sleep(min(10.0, 0.5 * 2 ** (attempt - 1)))
                if marker_check is not None:
                    found = self._look_again(marker_check)
                    if found is not None:
                        return found

    @staticmethod
    def _look_again(marker_check: Callable[[], T | None]) -> T | None:
        """Look for what a failed create may have made; a failing look means "not found yet"."""
        try:
            return marker_check()
        except GitHubError as exc:
            if not exc.transient:
                raise
            return None

    # -- app-level -------------------------------------------------------------------------------
    def installation_id(self, repo: str) -> int:
        owner, name = repo.split("/", 1)
        resp = self.call(
            f"GET installation of {repo}", lambda: self._gh.rest.apps.get_repo_installation(owner, name)
        )
        return int(resp.json()["id"])

    def installation(self, installation_id: int) -> InstallationClient:
        client = self._installations.get(installation_id)
        if client is None:
            gh = self._gh.with_auth(self._gh.auth.as_installation(installation_id))
            client = InstallationClient(self, gh, installation_id)
            self._installations[installation_id] = client
        return client


class InstallationClient:
    """What the control plane does on one installation's repositories."""

    def __init__(self, parent: GitHubClient, gh: GitHub[Any], installation_id: int) -> None:
        self.parent = parent
        self.gh = gh
        self.installation_id = installation_id

    @property
    def app_id(self) -> int | None:
        return self.parent.settings.app_id

    @property
    def redis(self) -> redis.Redis | None:
        """The shared Redis (create records of `bot.comments`), None without one."""
        return self.parent.redis

    def call(
        self,
        what: str,
        fn: Callable[[], T],
        *,
        mutating: bool = False,
        marker_check: Callable[[], T | None] | None = None,
    ) -> T:
        """`GitHubClient.call` with this installation's write throttle."""
        return self.parent.call(
            what, fn, mutating=mutating, marker_check=marker_check, installation_id=self.installation_id
        )

    def get_issue(self, repo: str, number: int) -> dict[str, Any]:
        o, r = repo.split("/", 1)
        resp = self.call(f"GET issue {repo}#{number}", lambda: self.gh.rest.issues.get(o, r, number))
        data: dict[str, Any] = dict(resp.json())
        return data

    def get_pull(self, repo: str, number: int) -> dict[str, Any]:
        o, r = repo.split("/", 1)
        resp = self.call(f"GET pull {repo}#{number}", lambda: self.gh.rest.pulls.get(o, r, number))
        data: dict[str, Any] = dict(resp.json())
        return data

    def list_comments(self, repo: str, number: int, max_pages: int = 30) -> list[dict[str, Any]]:
        o, r = repo.split("/", 1)
        out: list[dict[str, Any]] = []
        for page in range(1, max_pages + 1):
            resp = self.call(
                f"GET comments {repo}#{number}",
                functools.partial(self.gh.rest.issues.list_comments, o, r, number, per_page=100, page=page),
            )
            batch = resp.json()
            out.extend(batch)
            if len(batch) < 100:
                break
        return out

    def create_comment(
        self,
        repo: str,
        number: int,
        body: str,
        *,
        find_existing: Callable[[], dict[str, Any] | None] | None = None,
    ) -> dict[str, Any]:
        o, r = repo.split("/", 1)
        resp = self.call(
            f"POST comment on {repo}#{number}",
            lambda: self.gh.rest.issues.create_comment(o, r, number, data={"body": body}).json(),
            mutating=True,
            marker_check=find_existing,
        )
        return dict(resp)

    def update_comment(self, repo: str, comment_id: int, body: str) -> dict[str, Any]:
        o, r = repo.split("/", 1)
        resp = self.call(
            f"PATCH comment {comment_id} on {repo}",
            lambda: self.gh.rest.issues.update_comment(o, r, comment_id, data={"body": body}).json(),
            mutating=True,
        )
        return dict(resp)

    def add_reaction(self, repo: str, comment_id: int, content: str) -> None:
        o, r = repo.split("/", 1)
        self.call(
            f"POST reaction {content} on comment {comment_id}",
            lambda: self.gh.rest.reactions.create_for_issue_comment(
                o, r, comment_id, data={"content": content}
            ),  # type: ignore[call-overload]
            mutating=True,
        )

    def permission(self, repo: str, username: str) -> str:
        """The user's permission on the repo: admin, maintain, write, triage, read or none."""
        o, r = repo.split("/", 1)
        try:
            resp = self.call(
                f"GET permission of {username} on {repo}",
                lambda: self.gh.rest.repos.get_collaborator_permission_level(o, r, username),
            )
        except GitHubError as exc:
            if exc.status == 404:  # not a collaborator
                return "none"
            raise
        data = resp.json()
        # `role_name` distinguishes maintain/triage; `permission` folds them into write/read.
        role = data.get("role_name") or data.get("permission") or "none"
        return str(role)

    def resolve_commit(self, repo: str, ref: str) -> str | None:
        """The commit SHA `ref` (branch, tag or SHA) names in `repo`, None when GitHub knows none.

        `GET /repos/{o}/{r}/commits/{ref}`; `repo` and `ref` are validated by bot.options (no `..`,
        no leading `-`), and the ref is percent-encoded so a `/` in a branch name stays one segment."""
        o, r = repo.split("/", 1)
        url = f"/repos/{quote(o, safe='')}/{quote(r, safe='')}/commits/{quote(ref, safe='')}"
        try:
            resp = self.call(f"GET commit {ref} of {repo}", lambda: self.gh.request("GET", url))
        except GitHubError as exc:
            if exc.status in (404, 409, 422):  # unknown repo or ref, empty repository
                return None
            raise
        sha = resp.json().get("sha")
        return str(sha) if isinstance(sha, str) and len(sha) == 40 else None

    def compare(self, repo: str, base: str, head: str) -> dict[str, Any]:
        """`GET /repos/{o}/{r}/compare/{base}...{head}` as GitHub answers it: `status`, `ahead_by`,
        `behind_by`, `files[]` (`filename`, `status`; GitHub lists at most 300). GitHubError on
        failure (404: unknown commit or no common history, e.g. after a force-push)."""
        o, r = repo.split("/", 1)
        spec = f"{quote(base, safe='')}...{quote(head, safe='')}"
        url = f"/repos/{quote(o, safe='')}/{quote(r, safe='')}/compare/{spec}"
        resp = self.call(
            f"GET compare {base[:12]}...{head[:12]} of {repo}", lambda: self.gh.request("GET", url)
        )
        data: dict[str, Any] = dict(resp.json())
        return data

    def get_file(self, repo: str, path: str, ref: str | None = None) -> str | None:
        """A text file from the repo (default branch unless `ref`), None if it does not exist."""
        o, r = repo.split("/", 1)
        kwargs: dict[str, Any] = {"ref": ref} if ref else {}
        try:
            resp = self.call(
                f"GET contents {path} of {repo}", lambda: self.gh.rest.repos.get_content(o, r, path, **kwargs)
            )
        except GitHubError as exc:
            if exc.status == 404:
                return None
            raise
        data = resp.json()
        if not isinstance(data, dict) or data.get("type") != "file":
            return None
        if data.get("encoding") == "base64":
            return base64.b64decode(str(data.get("content") or "")).decode("utf-8", "replace")
        return str(data.get("content") or "")

    def close_issue(self, repo: str, number: int) -> dict[str, Any]:
        """PATCH the issue closed as completed (idempotent: closing a closed issue changes nothing)."""
        o, r = repo.split("/", 1)
        resp = self.call(
            f"PATCH issue {repo}#{number} closed",
            lambda: self.gh.rest.issues.update(o, r, number, state="closed", state_reason="completed"),
            mutating=True,
        )
        return dict(resp.json())

    def delete_ref(self, repo: str, ref: str) -> bool:
        """DELETE refs/<ref> (e.g. `heads/adapt/x-1`); False when it was already gone (GitHub: 422)."""
        o, r = repo.split("/", 1)
        try:
            self.call(
                f"DELETE ref {ref} of {repo}", lambda: self.gh.rest.git.delete_ref(o, r, ref), mutating=True
            )
        except GitHubError as exc:
            if exc.status in (404, 422):
                return False
            raise
        return True


def parse_time(value: Any) -> dt.datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


class CandidateError(ValueError):
    """A `--candidate` that cannot be pinned; the message is safe to show the user."""


def pin_candidate(gh: InstallationClient, spec: dict[str, Any], url_template: str) -> Candidate:
    """A checked `--candidate` value (bot.options) pinned to the commit GitHub resolves its ref to,
    with the clone URL built from the control plane's settings (`candidate_git_url`)."""
    if spec.get("local"):
        raise CandidateError("a local path works only with `adapt-bot run --candidate`, not on GitHub")
    repo, ref = str(spec["repo"]), str(spec["ref"])
    sha = gh.resolve_commit(repo, ref)
    if sha is None:
        raise CandidateError(f"GitHub knows no commit `{ref}` in `{repo}` (a branch, tag or commit SHA)")
    return Candidate(repo=repo, ref=ref, sha=sha.lower(), url=url_template.format(repo=repo))


@dataclass(frozen=True)
class PullCandidate:
    """`--candidate this` on a pull request: its head pinned, and the issue it links."""

    candidate: Candidate
    issue: int
    pr: int


def pin_pull_candidate(gh: InstallationClient, repo: str, pr: int, url_template: str) -> PullCandidate:
    """The PR's head commit (as GitHub reports it now) as the candidate, and the issue the PR links
    with a closing keyword or `#N` in its title or body (bot.pr_links); refused when it links none."""
    from bot.pr_links import linked_issue

    data = gh.get_pull(repo, pr)
    head: dict[str, Any] = data["head"] if isinstance(data.get("head"), dict) else {}
    head_repo: dict[str, Any] = head["repo"] if isinstance(head.get("repo"), dict) else {}
    full_name, ref, sha = head_repo.get("full_name"), head.get("ref"), head.get("sha")
    if not (isinstance(full_name, str) and isinstance(ref, str) and isinstance(sha, str)):
        raise CandidateError(f"pull request #{pr} has no readable head (its fork may have been deleted)")
    issue = linked_issue(f"{data.get('title') or ''}\n{data.get('body') or ''}", not_=pr)
    if issue is None:
        raise CandidateError(
            f"pull request #{pr} links no issue: say which one in its description (e.g. `Fixes #12`), "
            "then comment `/adapt run --candidate this` again"
        )
    try:
        cand = Candidate(repo=full_name, ref=ref, sha=sha.lower(), url=url_template.format(repo=full_name))
    except ValueError as exc:
        raise CandidateError(f"pull request #{pr}: its head cannot be a candidate ({exc})") from None
    return PullCandidate(candidate=cand, issue=issue, pr=pr)
