"""Core REST routes the intake uses: App auth, installations, issues, comments, reactions,
collaborator permission, contents. Shapes follow GitHub's (see shapes.py)."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query
from fastapi.responses import JSONResponse

from tests.standin import shapes
from tests.standin.app import Installation, JsonBody, State, app_auth, repo_of

router = APIRouter()
ROLE_TO_PERMISSION = {
    "admin": "admin",
    "maintain": "write",
    "write": "write",
    "triage": "read",
    "read": "read",
}
REACTIONS = {"+1", "-1", "laugh", "confused", "heart", "hooray", "rocket", "eyes"}


def _public(comment: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in comment.items() if not k.startswith("_")}


@router.get("/app", dependencies=[Depends(app_auth)])
def get_app(state: State) -> dict[str, Any]:
    return state.app_json()


@router.get("/users/{username}")
def get_user(username: str, state: State) -> dict[str, Any]:
    if username.endswith("[bot]") and username != state.bot_user["login"] and username not in state.users:
        raise HTTPException(404, "Not Found")
    return shapes.public_user(state.user(username))


@router.post("/app/installations/{installation_id}/access_tokens", dependencies=[Depends(app_auth)])
def create_token(installation_id: int, state: State) -> JSONResponse:
    if installation_id not in state.installations:
        raise HTTPException(404, "Not Found")
    token, expires = state.issue_token(installation_id)
    expires_at = (
        dt.datetime.fromtimestamp(expires, dt.UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")
    )
    body = {
        "token": token,
        "expires_at": expires_at,
        "permissions": state.installations[installation_id]["permissions"],
        "repository_selection": "selected",
    }
    return JSONResponse(body, status_code=201)


@router.get("/repos/{owner}/{repo}/installation", dependencies=[Depends(app_auth)])
def repo_installation(owner: str, repo: str, state: State) -> dict[str, Any]:
    r = repo_of(state, owner, repo)
    return state.installations[r.installation_id]


@router.get("/repos/{owner}/{repo}/issues/{number}")
def get_issue(
    owner: str,
    repo: str,
    number: int,
    state: State,
    inst: Installation,
) -> dict[str, Any]:
    r = repo_of(state, owner, repo, inst)
    issue = r.issues.get(number)
    if issue is None:
        raise HTTPException(404, "Not Found")
    return issue


@router.patch("/repos/{owner}/{repo}/issues/{number}")
def update_issue(
    owner: str,
    repo: str,
    number: int,
    body: JsonBody,
    state: State,
    inst: Installation,
) -> dict[str, Any]:
    """Title, body, state (open/closed) and state_reason, validated as GitHub does."""
    r = repo_of(state, owner, repo, inst)
    issue = r.issues.get(number)
    if issue is None:
        raise HTTPException(404, "Not Found")
    if body.get("state") not in (None, "open", "closed"):
        raise HTTPException(422, "Validation Failed: state must be open or closed")
    if body.get("state_reason") not in (None, "completed", "not_planned", "duplicate", "reopened"):
        raise HTTPException(422, "Validation Failed: state_reason is not valid")
    with state.lock:
        for key in ("title", "body"):
            if key in body:
                issue[key] = body[key]
        new_state = body.get("state")
        if new_state is not None and new_state != issue["state"]:
            issue["state"] = new_state
            issue["closed_at"] = shapes.now_iso() if new_state == "closed" else None
        if new_state == "closed":
            issue["state_reason"] = body.get("state_reason") or "completed"
        elif new_state == "open":
            issue["state_reason"] = "reopened"
        issue["updated_at"] = shapes.now_iso()
    return issue


@router.get("/repos/{owner}/{repo}/issues/{number}/comments")
def list_comments(
    owner: str,
    repo: str,
    number: int,
    state: State,
    inst: Installation,
    per_page: Annotated[int, Query(le=100)] = 30,
    page: Annotated[int, Query(ge=1)] = 1,
) -> list[dict[str, Any]]:
    r = repo_of(state, owner, repo, inst)
    if number not in r.issues:
        raise HTTPException(404, "Not Found")
    items = sorted(state.comments_on(r.full_name, number), key=lambda c: c["id"])
    start = (page - 1) * per_page
    return [_public(c) for c in items[start : start + per_page]]


@router.post("/repos/{owner}/{repo}/issues/{number}/comments")
def create_comment(
    owner: str,
    repo: str,
    number: int,
    payload: JsonBody,
    state: State,
    inst: Installation,
) -> JSONResponse:
    r = repo_of(state, owner, repo, inst)
    if number not in r.issues:
        raise HTTPException(404, "Not Found")
    body = payload.get("body")
    if not isinstance(body, str):
        raise HTTPException(422, "Invalid request: body is required")
    if len(body) > 65536:
        raise HTTPException(422, "Validation Failed: Body is too long (maximum is 65536 characters)")
    comment = state.add_comment(r.full_name, number, body, state.bot_user["login"], as_app=True)
    return JSONResponse(_public(comment), status_code=201)


@router.patch("/repos/{owner}/{repo}/issues/comments/{comment_id}")
def update_comment(
    owner: str,
    repo: str,
    comment_id: int,
    payload: JsonBody,
    state: State,
    inst: Installation,
) -> dict[str, Any]:
    r = repo_of(state, owner, repo, inst)
    with state.lock:
        comment = state.comments.get(comment_id)
        if comment is None or comment["_repo"] != r.full_name:
            raise HTTPException(404, "Not Found")
        if comment.get("performed_via_github_app") is None:
            raise HTTPException(403, "Resource not accessible by integration")
        body = payload.get("body")
        if not isinstance(body, str):
            raise HTTPException(422, "Invalid request: body is required")
        if len(body) > 65536:
            raise HTTPException(422, "Validation Failed: Body is too long (maximum is 65536 characters)")
        comment["body"] = body
        comment["updated_at"] = shapes.now_iso()
        return _public(comment)


@router.post("/repos/{owner}/{repo}/issues/comments/{comment_id}/reactions")
def add_reaction(
    owner: str,
    repo: str,
    comment_id: int,
    payload: JsonBody,
    state: State,
    inst: Installation,
) -> JSONResponse:
    r = repo_of(state, owner, repo, inst)
    content = payload.get("content")
    if content not in REACTIONS:
        raise HTTPException(422, "Validation Failed: content")
    with state.lock:
        comment = state.comments.get(comment_id)
        if comment is None or comment["_repo"] != r.full_name:
            raise HTTPException(404, "Not Found")
        existing = [x for x in state.reactions.get(comment_id, []) if x["content"] == content]
        if existing:  # GitHub answers 200 with the existing reaction
            return JSONResponse(existing[0], status_code=200)
        reaction = {
            "id": state.next_id(),
            "node_id": f"R_{comment_id}_{content}",
            "user": state.bot_user,
            "content": content,
            "created_at": shapes.now_iso(),
        }
        state.reactions.setdefault(comment_id, []).append(reaction)
        return JSONResponse(reaction, status_code=201)


@router.get("/repos/{owner}/{repo}/collaborators/{username}/permission")
def permission(
    owner: str,
    repo: str,
    username: str,
    state: State,
    inst: Installation,
) -> dict[str, Any]:
    r = repo_of(state, owner, repo, inst)
    role = r.collaborators.get(username)
    if role is None:
        raise HTTPException(404, f"{username} is not a user")  # GitHub: 404 for non-collaborators
    user = {
        **state.user(username),
        "role_name": role,
        "permissions": {
            "pull": True,
            "push": role in ("write", "maintain", "admin"),
            "admin": role == "admin",
        },
    }
    return {"permission": ROLE_TO_PERMISSION[role], "role_name": role, "user": user}


def _contents_at_ref(state: Any, full_name: str, ref: str | None) -> dict[str, str] | None:
    """path -> text of the commit `ref` names (a branch of the git world or a commit SHA), or None."""
    if ref is None:
        return None
    from tests.standin.git_api import git_world, tree_files

    world = git_world(state)
    sha = world["refs"].get(full_name, {}).get(f"refs/heads/{ref}") or ref
    obj = world["objects"].get(sha)
    if obj is None or obj.get("type") != "commit":
        return None
    return tree_files(state, sha)


def _contents_from_tree(state: Any, full_name: str, files: dict[str, str], path: str) -> Any:
    """GitHub's contents shapes: a file object, or a list for a directory."""
    path = path.strip("/")
    if path in files:
        raw = files[path].encode()
        sha = hashlib.sha1(b"blob %d\0" % len(raw) + raw).hexdigest()  # git's object id
        url = f"{state.api}/repos/{full_name}/contents/{path}"
        return {
            "type": "file",
            "encoding": "base64",
            "size": len(raw),
            "name": path.rsplit("/", 1)[-1],
            "path": path,
            "content": base64.encodebytes(raw).decode(),
            "sha": sha,
            "url": url,
            "git_url": f"{state.api}/repos/{full_name}/git/blobs/{sha}",
            "html_url": f"https://github.com/{full_name}/blob/HEAD/{path}",
            "download_url": None,
            "_links": {"git": None, "html": None, "self": url},
        }
    prefix = path + "/" if path else ""
    children: dict[str, str] = {}
    for p in files:
        if p.startswith(prefix):
            rest = p[len(prefix) :]
            children[rest.split("/", 1)[0]] = "dir" if "/" in rest else "file"
    if not children:
        raise HTTPException(404, "Not Found")
    return [
        {
            "type": kind,
            "name": name,
            "path": prefix + name,
            "sha": "0" * 40,
            "size": len(files.get(prefix + name, "").encode()),
            "url": f"{state.api}/repos/{full_name}/contents/{prefix}{name}",
            "git_url": None,
            "html_url": None,
            "download_url": None,
            "_links": {"git": None, "html": None, "self": ""},
        }
        for name, kind in sorted(children.items())
    ]


@router.get("/repos/{owner}/{repo}/contents/{path:path}")
def contents(
    owner: str,
    repo: str,
    path: str,
    state: State,
    inst: Installation,
    ref: str | None = None,
) -> Any:
    r = repo_of(state, owner, repo, inst)
    # the default branch by name keeps serving `files` (repo config tests); a commit SHA or another
    # branch is read from the git world's trees
    at_ref = _contents_at_ref(state, r.full_name, ref) if ref != r.default_branch else None
    if at_ref is not None:  # a branch or commit of the git world (delivery reads the PR base there)
        return _contents_from_tree(state, r.full_name, at_ref, path)
    if ref not in (None, r.default_branch):
        raise HTTPException(404, "No commit found for the ref")
    text = r.files.get(path)
    if text is None:
        raise HTTPException(404, "Not Found")
    raw = text.encode()
    sha = hashlib.sha1(b"blob %d\0" % len(raw) + raw).hexdigest()  # git's object id
    url = f"{state.api}/repos/{r.full_name}/contents/{path}?ref={r.default_branch}"
    html = f"https://github.com/{r.full_name}/blob/{r.default_branch}/{path}"
    git = f"{state.api}/repos/{r.full_name}/git/blobs/{sha}"
    return {
        "type": "file",
        "encoding": "base64",
        "size": len(raw),
        "name": path.rsplit("/", 1)[-1],
        "path": path,
        "content": base64.encodebytes(raw).decode(),
        "sha": sha,
        "url": url,
        "git_url": git,
        "html_url": html,
        "download_url": f"https://raw.githubusercontent.com/{r.full_name}/{r.default_branch}/{path}",
        "_links": {"git": git, "html": html, "self": url},
    }
