"""The stand-in's FastAPI app: recording, fault injection, auth helpers, route modules.

Extension point: every module named in `ROUTE_MODULES` exposes `router: fastapi.APIRouter`.
Its handlers get the world with `state: State`, check auth with `inst: Installation` (a valid
installation token -> its id) or `dependencies=[Depends(app_auth)]` (App JWT), and read a JSON
object with `payload: JsonBody`. To add routes (git database, pulls, check runs), write
`tests/standin/<name>.py` and add one line to ROUTE_MODULES below.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import time
from typing import Annotated, Any

import jwt
from fastapi import Body, Depends, FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse
from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint
from starlette.responses import Response

from tests.standin.state import Recorded, StandinState

ROUTE_MODULES: tuple[str, ...] = (
    "tests.standin.core_api",
    "tests.standin.git_api",  # artifacts: git blobs/trees/commits/refs, pulls, check runs
    "tests.standin.oauth_api",  # user authorization (OAuth), /user, repository read access
    "tests.standin.hooks_api",  # the App's webhook deliveries log and redelivery
)


def get_state(request: Request) -> StandinState:
    state: StandinState = request.app.state.standin
    return state


def _auth_kind(request: Request, state: StandinState) -> str:
    header = request.headers.get("authorization", "")
    scheme, _, cred = header.partition(" ")
    if not cred:
        return "none"
    if scheme.lower() == "bearer" and cred.count(".") == 2:
        return "jwt" if _check_jwt(cred, state) is None else "invalid"
    inst = state.token_installation(cred)
    return f"token:{inst}" if inst is not None else "invalid"


def _check_jwt(token: str, state: StandinState) -> str | None:
    """None when the App JWT is valid (RS256, iss = App id, iat/exp sane), else the reason."""
    if state.public_key_pem is None:
        return "stand-in has no App public key"
    try:
        claims = jwt.decode(
            token,
            state.public_key_pem,
            algorithms=["RS256"],
            options={"require": ["iat", "exp", "iss"]},
            leeway=5,
        )
    except jwt.PyJWTError as exc:
        return f"invalid JWT: {type(exc).__name__}"
    if str(claims["iss"]) != str(state.app_id):
        return "JWT iss is not the App id"
    if int(claims["exp"]) - int(claims["iat"]) > 660 or int(claims["exp"]) > time.time() + 660:
        return "JWT expiry too far in the future (max 10 minutes)"
    return None


State = Annotated[StandinState, Depends(get_state)]


def app_auth(request: Request, state: State) -> None:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise HTTPException(401, "A JSON web token could not be decoded")
    reason = _check_jwt(token, state)
    if reason:
        raise HTTPException(401, reason)


def installation_auth(request: Request, state: State) -> int:
    header = request.headers.get("authorization", "")
    _, _, token = header.partition(" ")
    inst = state.token_installation(token) if token else None
    if inst is None:
        raise HTTPException(401, "Bad credentials")
    return inst


#: Route parameter types: the installation id a valid token belongs to; a JSON object body.
Installation = Annotated[int, Depends(installation_auth)]
JsonBody = Annotated[dict[str, Any], Body()]


def repo_of(state: StandinState, owner: str, repo: str, installation: int | None = None) -> Any:
    r = state.repos.get(f"{owner}/{repo}")
    if r is None or (installation is not None and r.installation_id != installation):
        raise HTTPException(404, "Not Found")
    return r


class Recorder(BaseHTTPMiddleware):
    """Record every request; answer from the fault queue when a fault matches."""

    async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        state: StandinState = request.app.state.standin
        arrived = time.time()
        raw = await request.body()
        try:
            body: Any = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode("utf-8", "replace")
        auth = _auth_kind(request, state)
        with state.lock:
            state.arrivals.append((request.method, request.url.path, arrived))
        fault = state.take_fault(request.method, request.url.path)
        if fault is not None and fault.apply:
            response: Response = await call_next(request)
            await asyncio.sleep(fault.delay_s)  # applied; the answer comes too late
        elif fault is not None:
            await asyncio.sleep(fault.delay_s)
            response = JSONResponse(fault.body, status_code=fault.status, headers=fault.headers)
        else:
            response = await call_next(request)
        with state.lock:
            state.requests.append(
                Recorded(
                    request.method,
                    request.url.path,
                    request.url.query,
                    body,
                    response.status_code,
                    auth,
                    arrived,
                )
            )
        return response


def create_standin_app(state: StandinState) -> FastAPI:
    app = FastAPI(title="GitHub stand-in", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.standin = state

    @app.exception_handler(HTTPException)
    async def github_error(_request: Request, exc: HTTPException) -> JSONResponse:
        return JSONResponse(
            {"message": exc.detail, "documentation_url": "https://docs.github.com/rest"},
            status_code=exc.status_code,
        )

    app.add_middleware(Recorder)
    for name in ROUTE_MODULES:
        app.include_router(importlib.import_module(name).router)
    return app
