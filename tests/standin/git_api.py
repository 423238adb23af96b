"""Stand-in routes for delivery: git database (blobs, trees, commits, refs), pulls, check runs, and
the two GraphQL mutations that flip a PR's draft state.

Every response is validated against githubkit's models of GitHub's schema before it is sent, so the
shapes cannot drift from what the real API returns. Validation GitHub does on input (check-run
action limits, body sizes, existing refs/PRs) is reproduced, because delivery relies on it.
Git objects live in one store shared by all repos (like a fork network's object storage).
"""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, HTTPException, Query, Request
from fastapi.responses import JSONResponse

from tests.standin import shapes
from tests.standin.app import get_state, installation_auth, repo_of
from tests.standin.state import StandinState

router = APIRouter()

MAX_BODY = 65_536
MAX_OUTPUT = 65_535


def _models() -> Any:
    try:
        from githubkit_schemas.latest import models
    except ImportError:  # older githubkit layout
        from githubkit.versions.latest import models  # type: ignore[no-redef]
    return models


def validated(model: str, data: Any) -> Any:
    """Raise (500 in the stand-in) if `data` does not parse as githubkit's model of the response."""
    getattr(_models(), model).model_validate(data)
    return data


def git_world(state: StandinState) -> dict[str, Any]:
    with state.lock:
        return state.extra.setdefault(
            "git", {"objects": {}, "refs": {}, "pulls": {}, "check_runs": {}, "graphql_nodes": {}}
        )


def _sha(kind: str, payload: bytes) -> str:
    return hashlib.sha1(f"{kind} {len(payload)}\0".encode() + payload, usedforsecurity=False).hexdigest()


# ------------------------------------------------------------------------------------ helpers for tests


def seed_commit(state: StandinState, full_name: str, files: dict[str, str], branch: str = "main") -> str:
    """Put a commit with `files` on `branch` of `full_name` (the base the bot builds on)."""
    world = git_world(state)
    tree: dict[str, tuple[str, str, str]] = {}
    for path, text in files.items():
        content = text.encode()
        sha = _sha("blob", content)
        world["objects"][sha] = {"type": "blob", "content": content}
        tree[path] = ("100644", "blob", sha)
    tree_sha = _store_tree(world, tree)
    commit_sha = _store_commit(world, "Initial commit\n", tree_sha, [], author=None)
    world["refs"].setdefault(full_name, {})[f"refs/heads/{branch}"] = commit_sha
    return commit_sha


def tree_files(state: StandinState, commit_sha: str) -> dict[str, str]:
    """path -> text of a commit's tree (for assertions)."""
    world = git_world(state)
    tree = world["objects"][world["objects"][commit_sha]["tree"]]["entries"]
    return {p: world["objects"][sha]["content"].decode() for p, (_m, _t, sha) in tree.items()}


def push_commit(
    state: StandinState, full_name: str, branch: str, files: dict[str, str], author: str = "maintainer"
) -> str:
    """A person's `git push` of one commit on top of `branch` (files added or replaced): the ref
    moves and every open PR whose head is that branch follows, as on GitHub."""
    world = git_world(state)
    full = f"refs/heads/{branch}"
    with state.lock:
        parent = world["refs"][full_name][full]
        tree = dict(world["objects"][world["objects"][parent]["tree"]]["entries"])
        for path, text in files.items():
            content = text.encode()
            sha = _sha("blob", content)
            world["objects"][sha] = {"type": "blob", "content": content}
            tree[path] = ("100644", "blob", sha)
        who = {"name": author, "email": f"{author}@example.com", "date": shapes.now_iso()}
        commit = _store_commit(world, f"Fix from {author}\n", _store_tree(world, tree), [parent], who)
        world["refs"][full_name][full] = commit
        for prs in world["pulls"].values():
            for pr in prs.values():
                if pr["_head_repo"] == full_name and pr["head_ref"] == branch and pr["state"] == "open":
                    pr["head_sha"] = commit
    return commit


def open_fork_pull(
    state: StandinState,
    full_name: str,
    fork: str,
    branch: str,
    sha: str,
    *,
    title: str,
    body: str,
    author: str = "contributor",
) -> int:
    """A contributor's PR from `fork:branch` (head at `sha`) into `full_name`, as GitHub shows it.
    The fork is a repository of its own (no installation of the App: a contributor's account)."""
    world = git_world(state)
    if fork not in state.repos:
        state.add_repo(fork, installation_id=9999)
    with state.lock:
        world["refs"].setdefault(fork, {})[f"refs/heads/{branch}"] = sha
        issue = state.add_issue(full_name, title, body, author=author, pull_request=True)
        ts = shapes.now_iso()
        pr = {
            "_repo": full_name,
            "_head_repo": fork,
            "id": state.next_id(),
            "node_id": f"PR_{issue['number']}_{state.repos[full_name].id}",
            "number": issue["number"],
            "state": "open",
            "title": title,
            "body": body,
            "draft": False,
            "head_ref": branch,
            "head_sha": sha,
            "base_ref": "main",
            "maintainer_can_modify": True,
            "_draft_log": ["opened"],
            "created_at": ts,
            "updated_at": ts,
        }
        world["pulls"].setdefault(full_name, {})[pr["number"]] = pr
        world["graphql_nodes"][pr["node_id"]] = (full_name, pr["number"])
    return int(issue["number"])


def close_pull(state: StandinState, full_name: str, number: int, *, merged: bool, by: str) -> dict[str, Any]:
    """Close (or merge) a PR as a person would in the UI; returns the PR as the webhook carries it."""
    world = git_world(state)
    with state.lock:
        pr = world["pulls"][full_name][number]
        ts = shapes.now_iso()
        pr.update(state="closed", closed_at=ts, updated_at=ts)
        if merged:
            pr.update(merged=True, merged_at=ts, merged_by=by)
        issue = state.repos[full_name].issues.get(number)
        if issue is not None:
            issue.update(state="closed", closed_at=ts)
    return pull_json(state, full_name, number)


def pull_json(state: StandinState, full_name: str, number: int) -> dict[str, Any]:
    """The PR as GitHub's API (and a `pull_request` webhook) shows it now."""
    return dict(_pull_json(state, git_world(state)["pulls"][full_name][number]))


def pulls_of(state: StandinState, full_name: str) -> list[dict[str, Any]]:
    return list(git_world(state)["pulls"].get(full_name, {}).values())


def check_runs_of(state: StandinState, full_name: str) -> list[dict[str, Any]]:
    return [r for r in git_world(state)["check_runs"].values() if r["_repo"] == full_name]


def _store_tree(world: dict[str, Any], entries: dict[str, tuple[str, str, str]]) -> str:
    payload = json.dumps(sorted(entries.items())).encode()
    sha = _sha("tree", payload)
    world["objects"][sha] = {"type": "tree", "entries": dict(entries)}
    return sha


def _store_commit(
    world: dict[str, Any], message: str, tree: str, parents: list[str], author: dict[str, Any] | None
) -> str:
    payload = json.dumps([message, tree, parents, author, len(world["objects"])]).encode()
    sha = _sha("commit", payload)
    world["objects"][sha] = {
        "type": "commit",
        "message": message,
        "tree": tree,
        "parents": parents,
        "custom_author": author,
        "date": shapes.now_iso(),
    }
    return sha


def _obj(world: dict[str, Any], sha: str, kind: str) -> dict[str, Any]:
    obj = world["objects"].get(sha)
    if obj is None or obj["type"] != kind:
        raise HTTPException(422, f"{kind} {sha} not found" if obj is None else f"{sha} is not a {kind}")
    return obj


# ------------------------------------------------------------------------------------------ responses


def _commit_json(state: StandinState, full_name: str, sha: str) -> dict[str, Any]:
    world = git_world(state)
    c = world["objects"][sha]
    api = f"{state.api}/repos/{full_name}/git"
    bot = state.bot_user
    person = c["custom_author"] or {
        "name": bot["login"],
        "email": f"{bot['id']}+{bot['login']}@users.noreply.github.com",
    }
    verified = c["custom_author"] is None  # GitHub signs API commits without custom author/committer
    return validated(
        "GitCommit",
        {
            "sha": sha,
            "node_id": f"C_{sha[:12]}",
            "url": f"{api}/commits/{sha}",
            "html_url": f"https://github.com/{full_name}/commit/{sha}",
            "author": {**person, "date": c["date"]},
            "committer": {**person, "date": c["date"]},
            "message": c["message"],
            "tree": {"sha": c["tree"], "url": f"{api}/trees/{c['tree']}"},
            "parents": [
                {
                    "sha": p,
                    "url": f"{api}/commits/{p}",
                    "html_url": f"https://github.com/{full_name}/commit/{p}",
                }
                for p in c["parents"]
            ],
            "verification": {
                "verified": verified,
                "reason": "valid" if verified else "unsigned",
                "signature": "-----BEGIN PGP SIGNATURE-----\nstand-in\n-----END PGP SIGNATURE-----"
                if verified
                else None,
                "payload": f"tree {c['tree']}\n" if verified else None,
                "verified_at": c["date"] if verified else None,
            },
        },
    )


def _ref_json(state: StandinState, full_name: str, ref: str, sha: str) -> dict[str, Any]:
    api = f"{state.api}/repos/{full_name}/git"
    return validated(
        "GitRef",
        {
            "ref": ref,
            "node_id": f"REF_{hashlib.md5(ref.encode(), usedforsecurity=False).hexdigest()[:10]}",
            "url": f"{api}/{ref}",
            "object": {"type": "commit", "sha": sha, "url": f"{api}/commits/{sha}"},
        },
    )


def _repository_json(state: StandinState, full_name: str) -> dict[str, Any]:
    r = state.repos[full_name]
    owner = state.user(r.owner, "Organization")
    api = f"{state.api}/repos/{full_name}"
    ts = "2026-01-01T00:00:00Z"
    urls = {
        f"{k}_url": f"{api}/{v}"
        for k, v in {
            "archive": "{archive_format}{/ref}",
            "assignees": "assignees{/user}",
            "blobs": "git/blobs{/sha}",
            "branches": "branches{/branch}",
            "collaborators": "collaborators{/collaborator}",
            "comments": "comments{/number}",
            "commits": "commits{/sha}",
            "compare": "compare/{base}...{head}",
            "contents": "contents/{+path}",
            "contributors": "contributors",
            "deployments": "deployments",
            "downloads": "downloads",
            "events": "events",
            "forks": "forks",
            "git_commits": "git/commits{/sha}",
            "git_refs": "git/refs{/sha}",
            "git_tags": "git/tags{/sha}",
            "issue_comment": "issues/comments{/number}",
            "issue_events": "issues/events{/number}",
            "issues": "issues{/number}",
            "keys": "keys{/key_id}",
            "labels": "labels{/name}",
            "languages": "languages",
            "merges": "merges",
            "milestones": "milestones{/number}",
            "notifications": "notifications{?since,all,participating}",
            "pulls": "pulls{/number}",
            "releases": "releases{/id}",
            "stargazers": "stargazers",
            "statuses": "statuses/{sha}",
            "subscribers": "subscribers",
            "subscription": "subscription",
            "tags": "tags",
            "teams": "teams",
            "trees": "git/trees{/sha}",
            "hooks": "hooks",
        }.items()
    }
    return {
        "id": r.id,
        "node_id": f"R_{r.id}",
        "name": r.name,
        "full_name": full_name,
        "license": None,
        "forks": 0,
        "owner": owner,
        "private": False,
        "html_url": f"https://github.com/{full_name}",
        "description": None,
        "fork": False,
        "url": api,
        **urls,
        "git_url": f"git://github.com/{full_name}.git",
        "ssh_url": f"git@github.com:{full_name}.git",
        "clone_url": f"https://github.com/{full_name}.git",
        "svn_url": f"https://github.com/{full_name}",
        "mirror_url": None,
        "homepage": None,
        "language": "Python",
        "forks_count": 0,
        "stargazers_count": 0,
        "watchers_count": 0,
        "size": 1,
        "default_branch": r.default_branch,
        "open_issues_count": 0,
        "has_pages": False,
        "disabled": False,
        "pushed_at": ts,
        "created_at": ts,
        "updated_at": ts,
        "open_issues": 0,
        "watchers": 0,
    }


def _side(state: StandinState, full_name: str, branch: str) -> dict[str, Any]:
    sha = git_world(state)["refs"].get(full_name, {}).get(f"refs/heads/{branch}", "0" * 40)
    owner = full_name.split("/", 1)[0]
    return {
        "label": f"{owner}:{branch}",
        "ref": branch,
        "repo": _repository_json(state, full_name),
        "sha": sha,
        "user": state.user(owner, "Organization"),
    }


def _pull_json(state: StandinState, pr: dict[str, Any], full: bool = True) -> dict[str, Any]:
    full_name, n = pr["_repo"], pr["number"]
    api = f"{state.api}/repos/{full_name}"
    html = f"https://github.com/{full_name}/pull/{n}"
    data = {
        "url": f"{api}/pulls/{n}",
        "id": pr["id"],
        "node_id": pr["node_id"],
        "html_url": html,
        "diff_url": f"{html}.diff",
        "patch_url": f"{html}.patch",
        "issue_url": f"{api}/issues/{n}",
        "commits_url": f"{api}/pulls/{n}/commits",
        "review_comments_url": f"{api}/pulls/{n}/comments",
        "review_comment_url": f"{api}/pulls/comments{{/number}}",
        "comments_url": f"{api}/issues/{n}/comments",
        "statuses_url": f"{api}/statuses/{pr['head_sha']}",
        "number": n,
        "state": pr["state"],
        "locked": False,
        "title": pr["title"],
        "user": state.bot_user,
        "body": pr["body"],
        "labels": [],
        "milestone": None,
        "created_at": pr["created_at"],
        "updated_at": pr["updated_at"],
        "closed_at": pr.get("closed_at"),
        "merged_at": pr.get("merged_at"),
        "draft": pr["draft"],
        "head": {**_side(state, pr["_head_repo"], pr["head_ref"]), "sha": pr["head_sha"]},
        "base": _side(state, full_name, pr["base_ref"]),
        "_links": {
            k: {"href": v}
            for k, v in {
                "comments": f"{api}/issues/{n}/comments",
                "commits": f"{api}/pulls/{n}/commits",
                "statuses": f"{api}/statuses/{pr['head_sha']}",
                "html": html,
                "issue": f"{api}/issues/{n}",
                "review_comments": f"{api}/pulls/{n}/comments",
                "review_comment": f"{api}/pulls/comments{{/number}}",
                "self": f"{api}/pulls/{n}",
            }.items()
        },
        "author_association": "NONE",
        "auto_merge": None,
    }
    if not full:
        return validated("PullRequestSimple", data)
    data.update(
        {
            "merged": bool(pr.get("merged")),
            "mergeable": True,
            "mergeable_state": "clean",
            "merged_by": state.user(pr["merged_by"]) if pr.get("merged_by") else None,
            "comments": 0,
            "review_comments": 0,
            "maintainer_can_modify": pr["maintainer_can_modify"],
            "commits": 1,
            "additions": 1,
            "deletions": 0,
            "changed_files": 1,
        }
    )
    return validated("PullRequest", data)


# --------------------------------------------------------------------------------------- git database


@router.post("/repos/{owner}/{repo}/git/blobs")
def create_blob(
    owner: str,
    repo: str,
    body: Annotated[dict[str, Any], Body()],
    state: Annotated[StandinState, Depends(get_state)],
    inst: Annotated[int, Depends(installation_auth)],
) -> JSONResponse:
    r = repo_of(state, owner, repo, inst)
    encoding = body.get("encoding", "utf-8")
    if not isinstance(body.get("content"), str) or encoding not in ("utf-8", "base64"):
        raise HTTPException(422, "Invalid request: content and encoding (utf-8|base64) are required")
    content = base64.b64decode(body["content"]) if encoding == "base64" else body["content"].encode()
    sha = _sha("blob", content)
    git_world(state)["objects"][sha] = {"type": "blob", "content": content}
    data = {"url": f"{state.api}/repos/{r.full_name}/git/blobs/{sha}", "sha": sha}
    return JSONResponse(validated("ShortBlob", data), status_code=201)


@router.post("/repos/{owner}/{repo}/git/trees")
def create_tree(
    owner: str,
    repo: str,
    body: Annotated[dict[str, Any], Body()],
    state: Annotated[StandinState, Depends(get_state)],
    inst: Annotated[int, Depends(installation_auth)],
) -> JSONResponse:
    r = repo_of(state, owner, repo, inst)
    world = git_world(state)
    entries: dict[str, tuple[str, str, str]] = {}
    if body.get("base_tree"):
        entries.update(_obj(world, body["base_tree"], "tree")["entries"])
    for item in body.get("tree") or []:
        path = item.get("path")
        if not isinstance(path, str) or not path or path.startswith("/") or ".." in path.split("/"):
            raise HTTPException(422, f"tree.path {path!r} is invalid")
        if item.get("sha") is None and "content" not in item:
            entries.pop(path, None)  # deletion
            continue
        if "content" in item:
            content = str(item["content"]).encode()
            sha = _sha("blob", content)
            world["objects"][sha] = {"type": "blob", "content": content}
        else:
            sha = item["sha"]
            _obj(world, sha, "blob")
        entries[path] = (item.get("mode", "100644"), item.get("type", "blob"), sha)
    tree_sha = _store_tree(world, entries)
    api = f"{state.api}/repos/{r.full_name}/git"
    data = {
        "sha": tree_sha,
        "url": f"{api}/trees/{tree_sha}",
        "truncated": False,
        "tree": [
            {"path": p, "mode": m, "type": t, "sha": s, "size": len(world["objects"][s]["content"]),
             "url": f"{api}/blobs/{s}"}
            for p, (m, t, s) in sorted(entries.items())
        ],
    }  # fmt: skip
    return JSONResponse(validated("GitTree", data), status_code=201)


@router.post("/repos/{owner}/{repo}/git/commits")
def create_commit(
    owner: str,
    repo: str,
    body: Annotated[dict[str, Any], Body()],
    state: Annotated[StandinState, Depends(get_state)],
    inst: Annotated[int, Depends(installation_auth)],
) -> JSONResponse:
    r = repo_of(state, owner, repo, inst)
    world = git_world(state)
    if not isinstance(body.get("message"), str) or not body.get("tree"):
        raise HTTPException(422, "Invalid request: message and tree are required")
    _obj(world, body["tree"], "tree")
    parents = body.get("parents") or []
    for p in parents:
        _obj(world, p, "commit")
    custom = body.get("author") or body.get("committer")
    sha = _store_commit(world, body["message"], body["tree"], list(parents), custom)
    return JSONResponse(_commit_json(state, r.full_name, sha), status_code=201)


@router.get("/repos/{owner}/{repo}/git/commits/{sha}")
def get_commit(
    owner: str,
    repo: str,
    sha: str,
    state: Annotated[StandinState, Depends(get_state)],
    inst: Annotated[int, Depends(installation_auth)],
) -> dict[str, Any]:
    r = repo_of(state, owner, repo, inst)
    if git_world(state)["objects"].get(sha, {}).get("type") != "commit":
        raise HTTPException(404, "Not Found")
    return _commit_json(state, r.full_name, sha)


@router.get("/repos/{owner}/{repo}/git/ref/{ref:path}")
def get_ref(
    owner: str,
    repo: str,
    ref: str,
    state: Annotated[StandinState, Depends(get_state)],
    inst: Annotated[int, Depends(installation_auth)],
) -> dict[str, Any]:
    r = repo_of(state, owner, repo, inst)
    full = f"refs/{ref}"
    sha = git_world(state)["refs"].get(r.full_name, {}).get(full)
    if sha is None:
        raise HTTPException(404, "Not Found")
    return _ref_json(state, r.full_name, full, sha)


@router.post("/repos/{owner}/{repo}/git/refs")
def create_ref(
    owner: str,
    repo: str,
    body: Annotated[dict[str, Any], Body()],
    state: Annotated[StandinState, Depends(get_state)],
    inst: Annotated[int, Depends(installation_auth)],
) -> JSONResponse:
    r = repo_of(state, owner, repo, inst)
    ref, sha = body.get("ref"), body.get("sha")
    if not isinstance(ref, str) or not ref.startswith("refs/") or ref.count("/") < 2:
        raise HTTPException(422, "Reference name must start with 'refs/' and have at least two slashes")
    world = git_world(state)
    _obj(world, sha or "", "commit")
    refs = world["refs"].setdefault(r.full_name, {})
    with state.lock:
        if ref in refs:
            raise HTTPException(422, "Reference already exists")
        refs[ref] = sha
    return JSONResponse(_ref_json(state, r.full_name, ref, sha or ""), status_code=201)


def _is_ancestor(world: dict[str, Any], old: str, new: str) -> bool:
    stack, seen = [new], set()
    while stack:
        c = stack.pop()
        if c == old:
            return True
        if c in seen:
            continue
        seen.add(c)
        stack.extend(world["objects"].get(c, {}).get("parents", []))
    return False


@router.patch("/repos/{owner}/{repo}/git/refs/{ref:path}")
def update_ref(
    owner: str,
    repo: str,
    ref: str,
    body: Annotated[dict[str, Any], Body()],
    state: Annotated[StandinState, Depends(get_state)],
    inst: Annotated[int, Depends(installation_auth)],
) -> dict[str, Any]:
    r = repo_of(state, owner, repo, inst)
    world = git_world(state)
    full = f"refs/{ref}"
    refs = world["refs"].setdefault(r.full_name, {})
    if full not in refs:
        raise HTTPException(422, "Reference does not exist")
    sha = body.get("sha") or ""
    _obj(world, sha, "commit")
    if not body.get("force") and not _is_ancestor(world, refs[full], sha):
        raise HTTPException(422, "Update is not a fast forward")
    refs[full] = sha
    for prs in world["pulls"].values():  # PRs (here or upstream of a fork) follow their head branch
        for pr in prs.values():
            if pr["_head_repo"] == r.full_name and f"refs/heads/{pr['head_ref']}" == full:
                pr["head_sha"] = sha
    return _ref_json(state, r.full_name, full, sha)


@router.delete("/repos/{owner}/{repo}/git/refs/{ref:path}", status_code=204)
def delete_ref(
    owner: str,
    repo: str,
    ref: str,
    state: Annotated[StandinState, Depends(get_state)],
    inst: Annotated[int, Depends(installation_auth)],
) -> None:
    """GitHub answers 204, or 422 "Reference does not exist" for a ref that is not there."""
    r = repo_of(state, owner, repo, inst)
    refs = git_world(state)["refs"].setdefault(r.full_name, {})
    with state.lock:
        if refs.pop(f"refs/{ref}", None) is None:
            raise HTTPException(422, "Reference does not exist")


# ---------------------------------------------------------------------------------------------- pulls


def _resolve_head(state: StandinState, full_name: str, head: str) -> tuple[str, str]:
    """`branch` or `owner:branch` -> (head repo full name, branch)."""
    if ":" in head:
        owner, branch = head.split(":", 1)
        name = full_name.split("/", 1)[1]
        for cand in state.repos:
            if cand.split("/", 1)[0] == owner and cand.split("/", 1)[1] == name:
                return cand, branch
        for cand in state.repos:
            if cand.split("/", 1)[0] == owner:
                return cand, branch
        return f"{owner}/{name}", branch
    return full_name, head


@router.post("/repos/{owner}/{repo}/pulls")
def create_pull(
    owner: str,
    repo: str,
    body: Annotated[dict[str, Any], Body()],
    state: Annotated[StandinState, Depends(get_state)],
    inst: Annotated[int, Depends(installation_auth)],
) -> JSONResponse:
    r = repo_of(state, owner, repo, inst)
    world = git_world(state)
    title, head, base = body.get("title"), body.get("head"), body.get("base")
    if not title or not head or not base:
        raise HTTPException(422, "Validation Failed: title, head and base are required")
    if len(body.get("body") or "") > MAX_BODY:
        raise HTTPException(422, "Validation Failed: body is too long (maximum is 65536 characters)")
    head_repo, head_ref = _resolve_head(state, r.full_name, head)
    head_sha = world["refs"].get(head_repo, {}).get(f"refs/heads/{head_ref}")
    if head_sha is None:
        raise HTTPException(422, "Validation Failed: head does not exist")
    if f"refs/heads/{base}" not in world["refs"].get(r.full_name, {}):
        raise HTTPException(422, "Validation Failed: base does not exist")
    pulls = world["pulls"].setdefault(r.full_name, {})
    with state.lock:
        for pr in pulls.values():
            if pr["state"] == "open" and pr["_head_repo"] == head_repo and pr["head_ref"] == head_ref:
                raise HTTPException(422, f"A pull request already exists for {head}.")
        issue = state.add_issue(r.full_name, title, body.get("body") or "", author=state.bot_user["login"],
                                pull_request=True)  # fmt: skip
        ts = shapes.now_iso()
        pr = {
            "_repo": r.full_name,
            "_head_repo": head_repo,
            "id": state.next_id(),
            "node_id": f"PR_{issue['number']}_{r.id}",
            "number": issue["number"],
            "state": "open",
            "title": title,
            "body": body.get("body"),
            "draft": bool(body.get("draft", False)),
            "head_ref": head_ref,
            "head_sha": head_sha,
            "base_ref": base,
            "maintainer_can_modify": bool(body.get("maintainer_can_modify", False)),
            # the PR's draft-state history, as GitHub's pull_request actions name the transitions
            "_draft_log": ["opened:draft" if body.get("draft") else "opened"],
            "created_at": ts,
            "updated_at": ts,
        }
        pulls[pr["number"]] = pr
        world["graphql_nodes"][pr["node_id"]] = (r.full_name, pr["number"])
    return JSONResponse(_pull_json(state, pr), status_code=201)


@router.get("/repos/{owner}/{repo}/pulls")
def list_pulls(
    owner: str,
    repo: str,
    state: Annotated[StandinState, Depends(get_state)],
    inst: Annotated[int, Depends(installation_auth)],
    state_: Annotated[str, Query(alias="state")] = "open",
    head: str | None = None,
    base: str | None = None,
    per_page: Annotated[int, Query(le=100)] = 30,
    page: Annotated[int, Query(ge=1)] = 1,
) -> list[dict[str, Any]]:
    r = repo_of(state, owner, repo, inst)
    items = sorted(git_world(state)["pulls"].get(r.full_name, {}).values(), key=lambda p: -p["number"])
    if state_ != "all":
        items = [p for p in items if p["state"] == state_]
    if head:
        head_repo, head_ref = _resolve_head(state, r.full_name, head)
        items = [p for p in items if p["_head_repo"] == head_repo and p["head_ref"] == head_ref]
    if base:
        items = [p for p in items if p["base_ref"] == base]
    start = (page - 1) * per_page
    return [_pull_json(state, p, full=False) for p in items[start : start + per_page]]


def _pull(state: StandinState, full_name: str, number: int) -> dict[str, Any]:
    pr = git_world(state)["pulls"].get(full_name, {}).get(number)
    if pr is None:
        raise HTTPException(404, "Not Found")
    return pr


@router.get("/repos/{owner}/{repo}/pulls/{number}")
def get_pull(
    owner: str,
    repo: str,
    number: int,
    state: Annotated[StandinState, Depends(get_state)],
    inst: Annotated[int, Depends(installation_auth)],
) -> dict[str, Any]:
    r = repo_of(state, owner, repo, inst)
    return _pull_json(state, _pull(state, r.full_name, number))


@router.patch("/repos/{owner}/{repo}/pulls/{number}")
def update_pull(
    owner: str,
    repo: str,
    number: int,
    body: Annotated[dict[str, Any], Body()],
    state: Annotated[StandinState, Depends(get_state)],
    inst: Annotated[int, Depends(installation_auth)],
) -> dict[str, Any]:
    r = repo_of(state, owner, repo, inst)
    pr = _pull(state, r.full_name, number)
    if len(body.get("body") or "") > MAX_BODY:
        raise HTTPException(422, "Validation Failed: body is too long (maximum is 65536 characters)")
    with state.lock:
        for key in ("title", "body", "state", "maintainer_can_modify"):
            if key in body:
                pr[key] = body[key]
        if "base" in body:
            pr["base_ref"] = body["base"]
        pr["updated_at"] = shapes.now_iso()
        issue = state.repos[r.full_name].issues.get(number)
        if issue is not None:
            issue["title"], issue["body"] = pr["title"], pr["body"]
    return _pull_json(state, pr)


@router.post("/graphql")
async def graphql(request: Request, state: Annotated[StandinState, Depends(get_state)]) -> dict[str, Any]:
    """Only the two mutations delivery uses: REST cannot change a PR's draft state."""
    installation_auth(request, state)
    payload = await request.json()
    query, variables = payload.get("query", ""), payload.get("variables") or {}
    world = git_world(state)
    for mutation, draft in (("markPullRequestReadyForReview", False), ("convertPullRequestToDraft", True)):
        if mutation in query:
            node = world["graphql_nodes"].get(variables.get("id") or variables.get("pullRequestId"))
            if node is None:
                return {
                    "data": None,
                    "errors": [{"type": "NOT_FOUND", "message": "Could not resolve to a node"}],
                }
            pr = _pull(state, *node)
            if pr["draft"] != draft:
                pr.setdefault("_draft_log", []).append("converted_to_draft" if draft else "ready_for_review")
            pr["draft"] = draft
            return {"data": {mutation: {"pullRequest": {"id": pr["node_id"], "isDraft": draft}}}}
    return {"data": None, "errors": [{"message": "stand-in: unsupported query"}]}


# ----------------------------------------------------------------------------------------- check runs


def _check_actions(actions: Any) -> list[dict[str, str]]:
    if actions is None:
        return []
    if not isinstance(actions, list) or len(actions) > 3:
        raise HTTPException(422, "Invalid request: actions has more than 3 items")
    for a in actions:
        label, desc, ident = a.get("label", ""), a.get("description", ""), a.get("identifier", "")
        if not (0 < len(label) <= 20 and 0 < len(desc) <= 40 and 0 < len(ident) <= 20):
            raise HTTPException(
                422, "Invalid request: action label <= 20, description <= 40, identifier <= 20"
            )
    return [dict(a) for a in actions]


def _check_output(output: Any) -> dict[str, Any] | None:
    if output is None:
        return None
    if not output.get("title") or not isinstance(output.get("summary"), str):
        raise HTTPException(422, "Invalid request: output needs title and summary")
    for key in ("summary", "text"):
        if len(output.get(key) or "") > MAX_OUTPUT:
            raise HTTPException(
                422, f"Invalid request: output.{key} is too long (maximum is 65535 characters)"
            )
    return dict(output)


def _check_run_json(state: StandinState, run: dict[str, Any]) -> dict[str, Any]:
    api = f"{state.api}/repos/{run['_repo']}"
    out = run.get("output") or {}
    data = {
        "id": run["id"],
        "head_sha": run["head_sha"],
        "node_id": f"CR_{run['id']}",
        "external_id": run.get("external_id"),
        "url": f"{api}/check-runs/{run['id']}",
        "html_url": f"https://github.com/{run['_repo']}/runs/{run['id']}",
        "details_url": run.get("details_url"),
        "status": run["status"],
        "conclusion": run.get("conclusion"),
        "started_at": run["started_at"],
        "completed_at": run.get("completed_at"),
        "output": {
            "title": out.get("title"),
            "summary": out.get("summary"),
            "text": out.get("text"),
            "annotations_count": 0,
            "annotations_url": f"{api}/check-runs/{run['id']}/annotations",
        },
        "name": run["name"],
        "check_suite": {"id": run["check_suite"]},
        "app": state.app_json(),
        "pull_requests": [],
        "actions": run["actions"],
    }
    return validated("CheckRun", data)


def _apply_run(run: dict[str, Any], body: dict[str, Any]) -> None:
    for key in ("name", "details_url", "external_id", "status", "conclusion", "started_at", "completed_at"):
        if key in body:
            run[key] = body[key]
    if "output" in body:
        run["output"] = _check_output(body["output"])
    if "actions" in body:
        run["actions"] = _check_actions(body["actions"])
    if body.get("conclusion") and "status" not in body:
        run["status"] = "completed"
    if run["status"] == "completed" and not run.get("completed_at"):
        run["completed_at"] = shapes.now_iso()
    if run["status"] == "completed" and not run.get("conclusion"):
        raise HTTPException(422, "Invalid request: conclusion is required when status is completed")


@router.post("/repos/{owner}/{repo}/check-runs")
def create_check_run(
    owner: str,
    repo: str,
    body: Annotated[dict[str, Any], Body()],
    state: Annotated[StandinState, Depends(get_state)],
    inst: Annotated[int, Depends(installation_auth)],
) -> JSONResponse:
    r = repo_of(state, owner, repo, inst)
    if not body.get("name") or not body.get("head_sha"):
        raise HTTPException(422, "Invalid request: name and head_sha are required")
    if git_world(state)["objects"].get(body["head_sha"], {}).get("type") != "commit":
        raise HTTPException(422, "No commit found for SHA: " + str(body["head_sha"]))
    run: dict[str, Any] = {
        "_repo": r.full_name,
        "id": state.next_id(),
        "head_sha": body["head_sha"],
        "name": body["name"],
        "status": "queued",
        "conclusion": None,
        "started_at": shapes.now_iso(),
        "completed_at": None,
        "output": None,
        "actions": [],
        "check_suite": 9000 + r.id,
    }
    _apply_run(run, body)
    git_world(state)["check_runs"][run["id"]] = run
    return JSONResponse(_check_run_json(state, run), status_code=201)


@router.patch("/repos/{owner}/{repo}/check-runs/{run_id}")
def update_check_run(
    owner: str,
    repo: str,
    run_id: int,
    body: Annotated[dict[str, Any], Body()],
    state: Annotated[StandinState, Depends(get_state)],
    inst: Annotated[int, Depends(installation_auth)],
) -> dict[str, Any]:
    r = repo_of(state, owner, repo, inst)
    run = git_world(state)["check_runs"].get(run_id)
    if run is None or run["_repo"] != r.full_name:
        raise HTTPException(404, "Not Found")
    _apply_run(run, body)
    return _check_run_json(state, run)


@router.get("/repos/{owner}/{repo}/commits/{ref}/check-runs")
def list_check_runs(
    owner: str,
    repo: str,
    ref: str,
    state: Annotated[StandinState, Depends(get_state)],
    inst: Annotated[int, Depends(installation_auth)],
    check_name: str | None = None,
) -> dict[str, Any]:
    r = repo_of(state, owner, repo, inst)
    world = git_world(state)
    sha = world["refs"].get(r.full_name, {}).get(f"refs/heads/{ref}", ref)
    runs = [
        run
        for run in world["check_runs"].values()
        if run["_repo"] == r.full_name
        and run["head_sha"] == sha
        and (check_name is None or run["name"] == check_name)
    ]
    runs.sort(key=lambda x: -x["id"])
    data = {"total_count": len(runs), "check_runs": [_check_run_json(state, x) for x in runs]}
    return validated("ReposOwnerRepoCommitsRefCheckRunsGetResponse200", data)


# ------------------------------------------------------------------ candidate refs (--candidate, issue 14)
def add_candidate_ref(state: StandinState, full_name: str, ref: str, sha: str) -> None:
    """Make `GET /repos/{full_name}/commits/{ref}` answer `sha` (a contributor's fork or branch;
    GitHub lets any token read a public repository, so no installation is needed)."""
    with state.lock:
        state.extra.setdefault("candidate_refs", {}).setdefault(full_name, {})[ref] = sha


@router.get("/repos/{owner}/{repo}/commits/{ref:path}")
def get_commit_of_ref(
    owner: str,
    repo: str,
    ref: str,
    state: Annotated[StandinState, Depends(get_state)],
    inst: Annotated[int, Depends(installation_auth)],
) -> dict[str, Any]:
    full = f"{owner}/{repo}"
    with state.lock:
        refs = dict(state.extra.get("candidate_refs", {}).get(full, {}))
    sha = refs.get(ref) or (ref if ref in refs.values() else None)
    if sha is None:
        raise HTTPException(422, f"No commit found for SHA: {ref}")
    return {
        "sha": sha,
        "node_id": f"C_{sha[:12]}",
        "url": f"{state.api}/repos/{full}/commits/{sha}",
        "html_url": f"https://github.com/{full}/commit/{sha}",
        "commit": {"message": f"candidate {ref}"},
        "parents": [],
    }


# ------------------------------------------------------------------------- compare (pushes to a PR, issue 15)
def _ancestors(world: dict[str, Any], sha: str) -> list[str]:
    """`sha` and every commit behind it, nearest first (breadth-first over parents)."""
    order, seen, queue = [], set(), [sha]
    while queue:
        c = queue.pop(0)
        if c in seen or world["objects"].get(c, {}).get("type") != "commit":
            continue
        seen.add(c)
        order.append(c)
        queue.extend(world["objects"][c]["parents"])
    return order


def _rest_commit_json(state: StandinState, full_name: str, sha: str) -> dict[str, Any]:
    """A commit as the REST commits/compare APIs show it (githubkit's Commit)."""
    git = _commit_json(state, full_name, sha)
    html = f"https://github.com/{full_name}/commit/{sha}"
    return {
        "url": f"{state.api}/repos/{full_name}/commits/{sha}",
        "sha": sha,
        "node_id": git["node_id"],
        "html_url": html,
        "comments_url": f"{state.api}/repos/{full_name}/commits/{sha}/comments",
        "commit": {
            "url": git["url"],
            "author": git["author"],
            "committer": git["committer"],
            "message": git["message"],
            "comment_count": 0,
            "tree": git["tree"],
            "verification": git["verification"],
        },
        "author": None,
        "committer": None,
        "parents": [{"sha": p["sha"], "url": p["url"], "html_url": p["html_url"]} for p in git["parents"]],
    }


@router.get("/repos/{owner}/{repo}/compare/{basehead:path}")
def compare(
    owner: str,
    repo: str,
    basehead: str,
    state: Annotated[StandinState, Depends(get_state)],
    inst: Annotated[int, Depends(installation_auth)],
) -> dict[str, Any]:
    """`GET compare/{base}...{head}` (commit SHAs or this repo's branches): GitHub's three-dot
    comparison, files diffed from the merge base to the head; 404 for an unknown commit or two
    histories with no common ancestor (a force-push from an unrelated history)."""
    r = repo_of(state, owner, repo, inst)
    base, sep, head = basehead.partition("...")
    if not sep or not base or not head:
        raise HTTPException(404, "Not Found")
    world = git_world(state)
    refs = world["refs"].get(r.full_name, {})
    base, head = (refs.get(f"refs/heads/{x}", x) for x in (base, head))
    with state.lock:
        from_base, from_head = _ancestors(world, base), _ancestors(world, head)
        if not from_base or not from_head:
            raise HTTPException(404, "Not Found")
        behind_set = set(from_head)
        merge_base = next((c for c in from_base if c in behind_set), None)
        if merge_base is None:
            raise HTTPException(404, f"No common ancestor between {base} and {head}.")
        ahead = [c for c in from_head if c not in set(from_base)]
        behind = [c for c in from_base if c not in behind_set]
        old = world["objects"][world["objects"][merge_base]["tree"]]["entries"]
        new = world["objects"][world["objects"][head]["tree"]]["entries"]
    files = []
    for path in sorted(set(old) | set(new)):
        was, now = old.get(path), new.get(path)
        if was == now:
            continue
        status = "added" if was is None else "removed" if now is None else "modified"
        blob = (now or was)[2]
        lines = world["objects"][blob]["content"].decode("utf-8", "replace").count("\n")
        files.append(
            {
                "sha": blob,
                "filename": path,
                "status": status,
                "additions": 0 if status == "removed" else lines,
                "deletions": 0 if status == "added" else lines,
                "changes": lines,
                "blob_url": f"https://github.com/{r.full_name}/blob/{head}/{path}",
                "raw_url": f"https://github.com/{r.full_name}/raw/{head}/{path}",
                "contents_url": f"{state.api}/repos/{r.full_name}/contents/{path}?ref={head}",
            }
        )
    status = (
        "identical"
        if not ahead and not behind
        else "diverged"
        if ahead and behind
        else ("ahead" if ahead else "behind")
    )
    html = f"https://github.com/{r.full_name}/compare/{base}...{head}"
    data = {
        "url": f"{state.api}/repos/{r.full_name}/compare/{base}...{head}",
        "html_url": html,
        "permalink_url": html,
        "diff_url": f"{html}.diff",
        "patch_url": f"{html}.patch",
        "base_commit": _rest_commit_json(state, r.full_name, base),
        "merge_base_commit": _rest_commit_json(state, r.full_name, merge_base),
        "status": status,
        "ahead_by": len(ahead),
        "behind_by": len(behind),
        "total_commits": len(ahead),
        "commits": [_rest_commit_json(state, r.full_name, c) for c in reversed(ahead)][:250],
        "files": files[:300],
    }
    return validated("CommitComparison", data)
