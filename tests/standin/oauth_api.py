"""Stand-in routes for the App's user authorization (OAuth web flow), `/user`, and
`GET /repos/{owner}/{repo}` (how a user's read access to a repository shows: 200 or 404).

GitHub's authorize page asks the user to sign in and approve; here the test names the user who
"signs in" with the `login` query parameter, and the page redirects straight back with a code.
Register the OAuth client first: `state.oauth_clients[client_id] = client_secret`.
"""

from __future__ import annotations

import json
import secrets
import urllib.parse
from typing import Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import JSONResponse, RedirectResponse

from tests.standin import shapes
from tests.standin.app import State

router = APIRouter()


@router.get("/login/oauth/authorize")
def authorize(request: Request, state: State) -> RedirectResponse:
    q = request.query_params
    client_id, redirect_uri, login = q.get("client_id"), q.get("redirect_uri"), q.get("login")
    if client_id not in state.oauth_clients:
        raise HTTPException(404, "Not Found")  # GitHub shows an error page for an unknown client
    if not redirect_uri or not login:
        raise HTTPException(422, "redirect_uri and login (the user who signs in) are required")
    code = secrets.token_hex(10)
    with state.lock:
        state.user(login)
        state.oauth_codes[code] = login
    params = urllib.parse.urlencode({"code": code, "state": q.get("state", "")})
    return RedirectResponse(f"{redirect_uri}?{params}", status_code=302)


@router.post("/login/oauth/access_token")
async def access_token(request: Request, state: State) -> JSONResponse:
    raw = (await request.body()).decode()
    if request.headers.get("content-type", "").startswith("application/json"):
        form = json.loads(raw)
    else:  # application/x-www-form-urlencoded, GitHub's documented form
        form = {k: v[0] for k, v in urllib.parse.parse_qs(raw).items()}
    client_id, secret, code = form.get("client_id"), form.get("client_secret"), form.get("code")
    with state.lock:
        ok_client = client_id in state.oauth_clients and state.oauth_clients[str(client_id)] == secret
        login = state.oauth_codes.pop(str(code), None) if ok_client else None
    if not ok_client:
        return JSONResponse({"error": "incorrect_client_credentials"})  # GitHub answers 200
    if login is None:
        return JSONResponse({"error": "bad_verification_code"})
    return JSONResponse({"access_token": state.user_token(login), "token_type": "bearer", "scope": ""})


def _user_login(request: Request, state: State) -> str | None:
    _, _, token = request.headers.get("authorization", "").partition(" ")
    with state.lock:
        return state.user_tokens.get(token.strip())


@router.get("/user")
def current_user(request: Request, state: State) -> dict[str, Any]:
    login = _user_login(request, state)
    if login is None:
        raise HTTPException(401, "Requires authentication")
    return shapes.public_user(state.user(login))


@router.get("/repos/{owner}/{repo}")
def get_repo(owner: str, repo: str, request: Request, state: State) -> dict[str, Any]:
    full = f"{owner}/{repo}"
    r = state.repos.get(full)
    _, _, token = request.headers.get("authorization", "").partition(" ")
    inst = state.token_installation(token.strip()) if token else None
    allowed = r is not None and (
        (inst is not None and inst == r.installation_id) or state.can_read(_user_login(request, state), full)
    )
    if r is None or not allowed:
        raise HTTPException(404, "Not Found")  # GitHub hides private repositories behind 404
    return {
        "id": r.id,
        "name": r.name,
        "full_name": full,
        "private": r.private,
        "owner": state.user(r.owner, "Organization"),
        "default_branch": r.default_branch,
        "html_url": f"https://github.com/{full}",
        "visibility": "private" if r.private else "public",
    }
