"""Who may see which jobs: the jobs pages and API follow the repository's visibility.

A public repository's jobs are public (like its CI logs). A private repository's jobs are shown
only to a GitHub user who signed in (the App's user authorization: `/login` -> GitHub's authorize
page -> `/callback`, which exchanges the code for a user token) and who can read that repository
(`GET /repos/{owner}/{repo}` with the user's token answers 200), or to a request carrying the
operator token (`Authorization: Bearer $ADAPT_BOT_OPERATOR_TOKEN`). A job whose visibility was
never recorded counts as private.

The session cookie is Fernet (AES + HMAC) of {login, user token, expiry}: signed, encrypted, and
kept by the browser only; nothing about users is stored in Redis (runner hosts can reach Redis).
Access answers are cached per web process for `access_cache_s`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import secrets
import time
import urllib.parse
from dataclasses import dataclass
from typing import Any

import httpx
import orjson
from cryptography.fernet import Fernet, InvalidToken
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response

from bot.config import Settings

log = logging.getLogger(__name__)
router = APIRouter()

SESSION_COOKIE = "adapt_session"
STATE_COOKIE = "adapt_oauth_state"


@dataclass(frozen=True)
class Viewer:
    operator: bool = False
    login: str | None = None
    token: str | None = None

    @property
    def anonymous(self) -> bool:
        return not self.operator and self.login is None


def _fernet(settings: Settings) -> Fernet | None:
    secret = settings.session_secret or settings.oauth_client_secret
    if secret is None:
        return None
    digest = hashlib.sha256(b"adapt-bot session v1\x00" + secret.get_secret_value().encode()).digest()
    return Fernet(base64.urlsafe_b64encode(digest))


class Access:
    """Per web process: the session codec, the read-access cache, an HTTP client for GitHub."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.fernet = _fernet(settings)
        self._cache: dict[tuple[str, str], tuple[float, bool]] = {}
        self._http: httpx.AsyncClient | None = None

    @property
    def oauth_enabled(self) -> bool:
        return bool(self.settings.oauth_client_id) and self.fernet is not None

    def http(self) -> httpx.AsyncClient:
        if self._http is None:
            self._http = httpx.AsyncClient(timeout=httpx.Timeout(10.0, connect=5.0))
        return self._http

    # -- who is asking ----------------------------------------------------------------------------
    def viewer(self, request: Request) -> Viewer:
        op = self.settings.operator_token
        scheme, _, cred = request.headers.get("authorization", "").partition(" ")
        if (
            op is not None
            and scheme.lower() == "bearer"
            and cred
            and hmac.compare_digest(cred.strip().encode(), op.get_secret_value().encode())
        ):
            return Viewer(operator=True)
        raw = request.cookies.get(SESSION_COOKIE)
        if raw and self.fernet is not None:
            try:
                data = orjson.loads(self.fernet.decrypt(raw.encode(), ttl=self.settings.session_ttl_s))
                return Viewer(login=str(data["login"]), token=str(data["token"]))
            except (InvalidToken, orjson.JSONDecodeError, KeyError, TypeError):
                pass  # expired or forged: anonymous
        return Viewer()

    def session_cookie(self, login: str, token: str) -> str:
        assert self.fernet is not None
        return self.fernet.encrypt(orjson.dumps({"login": login, "token": token})).decode()

    # -- what they may see ------------------------------------------------------------------------
    async def can_read(self, viewer: Viewer, repo: str, private: bool | None) -> bool:
        if private is False or viewer.operator:
            return True
        if viewer.token is None or viewer.login is None:
            return False
        key = (viewer.login, repo)
        now = time.monotonic()
        hit = self._cache.get(key)
        if hit is not None and hit[0] > now:
            return hit[1]
        try:
            resp = await self.http().get(
                f"{self.settings.github_api_url}/repos/{repo}",
                headers={"Authorization": f"Bearer {viewer.token}", "Accept": "application/vnd.github+json"},
            )
        except httpx.HTTPError as exc:
            log.warning("read-access check of %s on %s failed: %s", viewer.login, repo, type(exc).__name__)
            return False  # not cached: ask again next time
        allowed = resp.status_code == 200
        self._cache[key] = (now + self.settings.access_cache_s, allowed)
        return allowed

    async def visible(self, viewer: Viewer, items: list[tuple[str, bool | None]]) -> list[bool]:
        """For each (repo, private): may the viewer see it? One check per distinct private repo."""
        answers: dict[tuple[str, bool | None], bool] = {}
        for item in items:
            if item not in answers:
                answers[item] = await self.can_read(viewer, *item)
        return [answers[i] for i in items]


def access(request: Request) -> Access:
    a: Access = request.app.state.access
    return a


def _callback_url(request: Request, settings: Settings) -> str:
    base = settings.public_url.rstrip("/") if settings.public_url else str(request.base_url).rstrip("/")
    return f"{base}/callback"


def _secure(request: Request, settings: Settings) -> bool:
    return (settings.public_url or str(request.base_url)).startswith("https://")


@router.get("/login", include_in_schema=False)
async def login(request: Request) -> Response:
    a = access(request)
    s = a.settings
    if not a.oauth_enabled or a.fernet is None:
        return JSONResponse(
            {"error": "sign-in is not configured (ADAPT_BOT_OAUTH_CLIENT_ID / _CLIENT_SECRET)"},
            status_code=503,
        )
    state = secrets.token_urlsafe(24)
    query = urllib.parse.urlencode(
        {"client_id": s.oauth_client_id, "redirect_uri": _callback_url(request, s), "state": state}
    )
    resp = RedirectResponse(f"{s.github_web_url}/login/oauth/authorize?{query}", status_code=302)
    resp.set_cookie(
        STATE_COOKIE,
        a.fernet.encrypt(state.encode()).decode(),
        max_age=600,
        httponly=True,
        samesite="lax",
        secure=_secure(request, s),
    )
    return resp


@router.get("/callback", include_in_schema=False)
async def callback(request: Request, code: str = "", state: str = "") -> Response:
    a = access(request)
    s = a.settings
    if not a.oauth_enabled or a.fernet is None or s.oauth_client_secret is None:
        return JSONResponse({"error": "sign-in is not configured"}, status_code=503)
    try:
        expected = a.fernet.decrypt(request.cookies.get(STATE_COOKIE, "").encode(), ttl=600).decode()
    except InvalidToken:
        expected = ""
    if not code or not state or not expected or not hmac.compare_digest(state.encode(), expected.encode()):
        return JSONResponse({"error": "sign-in expired or was not started here; open /login again"}, 400)
    try:
        token_resp = await a.http().post(
            f"{s.github_web_url}/login/oauth/access_token",
            data={
                "client_id": s.oauth_client_id,
                "client_secret": s.oauth_client_secret.get_secret_value(),
                "code": code,
                "redirect_uri": _callback_url(request, s),
            },
            headers={"Accept": "application/json"},
        )
        token = token_resp.json().get("access_token") if token_resp.status_code == 200 else None
        if not token:
            return JSONResponse({"error": "GitHub refused the sign-in code; open /login again"}, 400)
        user = await a.http().get(
            f"{s.github_api_url}/user",
            headers={"Authorization": f"Bearer {token}", "Accept": "application/vnd.github+json"},
        )
        login_name = user.json().get("login") if user.status_code == 200 else None
    except (httpx.HTTPError, ValueError) as exc:
        log.warning("sign-in: GitHub did not answer (%s)", type(exc).__name__)
        return JSONResponse({"error": "GitHub did not answer the sign-in; try again"}, 502)
    if not isinstance(login_name, str):
        return JSONResponse({"error": "GitHub did not say who signed in; try again"}, 502)
    resp = RedirectResponse("/jobs", status_code=302)
    resp.set_cookie(
        SESSION_COOKIE,
        a.session_cookie(login_name, str(token)),
        max_age=s.session_ttl_s,
        httponly=True,
        samesite="lax",
        secure=_secure(request, s),
    )
    resp.delete_cookie(STATE_COOKIE)
    log.info("signed in: %s", login_name)
    return resp


@router.get("/logout", include_in_schema=False)
async def logout() -> Response:
    resp = RedirectResponse("/jobs", status_code=302)
    resp.delete_cookie(SESSION_COOKIE)
    return resp


def job_visibility(job: Any) -> tuple[str, bool | None]:
    return str(job.repo), getattr(job, "repo_private", None)
