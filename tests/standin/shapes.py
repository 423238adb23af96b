"""GitHub REST response shapes (the fields githubkit's models require, plus the useful ones)."""

from __future__ import annotations

import datetime as dt
from typing import Any


def now_iso() -> str:
    return dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def user(api: str, login: str, uid: int, type_: str = "User") -> dict[str, Any]:
    u = f"{api}/users/{login}"
    return {
        "login": login,
        "id": uid,
        "node_id": f"U_{uid}",
        "avatar_url": f"https://avatars.example/u/{uid}",
        "gravatar_id": "",
        "url": u,
        "html_url": f"https://github.com/{login}",
        "followers_url": f"{u}/followers",
        "following_url": f"{u}/following{{/other_user}}",
        "gists_url": f"{u}/gists{{/gist_id}}",
        "starred_url": f"{u}/starred{{/owner}}{{/repo}}",
        "subscriptions_url": f"{u}/subscriptions",
        "organizations_url": f"{u}/orgs",
        "repos_url": f"{u}/repos",
        "events_url": f"{u}/events{{/privacy}}",
        "received_events_url": f"{u}/received_events",
        "type": type_,
        "site_admin": False,
    }


def integration(api: str, app_id: int, slug: str, owner: dict[str, Any]) -> dict[str, Any]:
    ts = "2026-01-01T00:00:00Z"
    return {
        "id": app_id,
        "slug": slug,
        "node_id": f"A_{app_id}",
        "client_id": f"Iv1.{app_id:016x}",
        "owner": owner,
        "name": slug,
        "description": "adapt-bot test App",
        "external_url": "https://example.invalid/adapt-bot",
        "html_url": f"https://github.com/apps/{slug}",
        "created_at": ts,
        "updated_at": ts,
        "permissions": {
            "issues": "write",
            "pull_requests": "write",
            "contents": "write",
            "checks": "write",
            "metadata": "read",
        },
        "events": ["issues", "issue_comment", "pull_request", "check_run"],
    }


def reactions_rollup(url: str, counts: dict[str, int]) -> dict[str, Any]:
    keys = {
        "+1": "+1",
        "-1": "-1",
        "laugh": "laugh",
        "confused": "confused",
        "heart": "heart",
        "hooray": "hooray",
        "eyes": "eyes",
        "rocket": "rocket",
    }
    out: dict[str, Any] = {"url": url, "total_count": sum(counts.values())}
    for k in keys:
        out[k] = counts.get(k, 0)
    return out


def installation(api: str, inst_id: int, account: dict[str, Any], app_id: int, slug: str) -> dict[str, Any]:
    ts = "2026-01-01T00:00:00Z"
    return {
        "id": inst_id,
        "account": account,
        "repository_selection": "selected",
        "access_tokens_url": f"{api}/app/installations/{inst_id}/access_tokens",
        "repositories_url": f"{api}/installation/repositories",
        "html_url": f"https://github.com/settings/installations/{inst_id}",
        "app_id": app_id,
        "target_id": account["id"],
        "target_type": account["type"],
        "permissions": {
            "issues": "write",
            "pull_requests": "write",
            "contents": "write",
            "checks": "write",
            "metadata": "read",
        },
        "events": ["issues", "issue_comment", "pull_request", "check_run"],
        "created_at": ts,
        "updated_at": ts,
        "single_file_name": None,
        "app_slug": slug,
        "suspended_by": None,
        "suspended_at": None,
    }


def public_user(simple: dict[str, Any]) -> dict[str, Any]:
    """`GET /users/{username}`: the simple user plus the public profile fields."""
    ts = "2026-01-01T00:00:00Z"
    return {
        **simple,
        "name": None,
        "company": None,
        "blog": None,
        "location": None,
        "email": None,
        "hireable": None,
        "bio": None,
        "public_repos": 0,
        "public_gists": 0,
        "followers": 0,
        "following": 0,
        "created_at": ts,
        "updated_at": ts,
    }
