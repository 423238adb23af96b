"""Real webhook payloads (GitHub's example set in tests/fixtures/github-webhooks) re-aimed at the
stand-in's repositories, issues and users, so the bot acts on them end to end."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from tests.standin.state import StandinState

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "github-webhooks"


def fixture(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / f"{name}.json").read_text(encoding="utf-8"))
    return data


def all_fixtures() -> list[tuple[str, str, dict[str, Any]]]:
    """(file stem, event name, payload) for every fixture."""
    out = []
    for path in sorted(FIXTURES.glob("*.json")):
        out.append((path.stem, path.stem.split(".", 1)[0], json.loads(path.read_text(encoding="utf-8"))))
    return out


def _aim(
    p: dict[str, Any], state: StandinState, repo: str, sender: str, sender_type: str = "User"
) -> dict[str, Any]:
    r = state.repos[repo]
    p["repository"] = {
        **p.get("repository", {}),
        "id": r.id,
        "name": r.name,
        "full_name": repo,
        "owner": state.user(r.owner, "Organization"),
        "private": r.private,
    }
    p["installation"] = {"id": r.installation_id, "node_id": f"MDIz{r.installation_id}"}
    p["sender"] = state.user(sender, sender_type)
    return p


def issues_labeled(
    state: StandinState,
    repo: str,
    issue: int,
    label: str = "adapt-model",
    sender: str = "maintainer",
    sender_type: str = "User",
) -> dict[str, Any]:
    p = copy.deepcopy(fixture("issues.labeled.1"))
    p = _aim(p, state, repo, sender, sender_type)
    p["issue"] = copy.deepcopy(state.repos[repo].issues[issue])
    p["label"] = {**p["label"], "name": label}
    p["issue"]["labels"] = [p["label"]]
    return p


def issue_comment(
    state: StandinState,
    repo: str,
    issue: int,
    comment: dict[str, Any],
    action: str = "created",
    sender_type: str = "User",
) -> dict[str, Any]:
    p = copy.deepcopy(fixture(f"issue_comment.{action}.1"))
    p = _aim(p, state, repo, comment["user"]["login"], sender_type)
    p["issue"] = copy.deepcopy(state.repos[repo].issues[issue])
    p["comment"] = {k: v for k, v in comment.items() if not k.startswith("_")}
    return p


def check_run_action(
    state: StandinState, repo: str, pr: int, identifier: str, job_id: str | None, sender: str = "maintainer"
) -> dict[str, Any]:
    p = copy.deepcopy(fixture("check_run.requested_action.1"))
    p = _aim(p, state, repo, sender)
    p["requested_action"] = {"identifier": identifier}
    p["check_run"]["external_id"] = job_id or ""
    p["check_run"]["id"] = state.next_id()
    p["check_run"]["pull_requests"] = [{**p["check_run"]["pull_requests"][0], "number": pr}]
    return p


def pull_request_event(
    state: StandinState,
    repo: str,
    number: int,
    action: str,
    sender: str = "maintainer",
    sender_type: str = "User",
    before: str | None = None,
) -> dict[str, Any]:
    """`pull_request.<action>` (synchronize, closed) on a stand-in PR: the example's envelope, the PR
    object as the stand-in's API shows it now (validated against githubkit's PullRequest)."""
    from tests.standin.git_api import pull_json

    p = copy.deepcopy(fixture(f"pull_request.{action}.1"))
    p = _aim(p, state, repo, sender, sender_type)
    p["number"] = number
    p["pull_request"] = pull_json(state, repo, number)
    if action == "synchronize":
        p["before"] = before or p["before"]
        p["after"] = p["pull_request"]["head"]["sha"]
    return p
