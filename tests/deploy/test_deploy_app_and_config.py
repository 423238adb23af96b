"""deploy/github-app-manifest.json against GitHub's vocabulary (githubkit's generated models) and the
bot's own router; deploy/adapt-bot.example.yml through the bot's real parser (bot.repo_config)."""

from __future__ import annotations

import json
import typing
from typing import Any
from urllib.parse import urlparse

import pytest
import yaml
from githubkit_schemas.latest.models import AppPermissions
from githubkit_schemas.latest.webhooks import EventNameType

from tests.deploy import manifests as m

#: Parameters of an App manifest (GitHub docs, "Registering a GitHub App from a manifest").
MANIFEST_KEYS = {
    "name",
    "url",
    "hook_attributes",
    "redirect_url",
    "callback_urls",
    "setup_url",
    "description",
    "public",
    "default_events",
    "default_permissions",
    "request_oauth_on_install",
    "setup_on_update",
}
#: Delivered to every App without (and impossible to request by) subscription.
AUTOMATIC_EVENTS = {"installation", "installation_repositories", "ping"}
#: What the bot does with the App: comments/labels/reactions, PRs, branches+commits, check runs.
REQUIRED_PERMISSIONS = {
    "issues": "write",
    "pull_requests": "write",
    "contents": "write",
    "checks": "write",
    "metadata": "read",
}
#: The permission without which GitHub does not deliver an event to an App.
EVENT_PERMISSION = {
    "issues": "issues",
    "issue_comment": "issues",
    "pull_request": "pull_requests",
    "check_run": "checks",
}


def _manifest() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(m.APP_MANIFEST.read_text(encoding="utf-8"))
    return data


def _routed_events() -> set[str]:
    from bot.behaviours import ROUTER

    return {event for event, _action, _handler in ROUTER.routes()}


def test_manifest_uses_only_manifest_parameters() -> None:
    data = _manifest()
    assert set(data) <= MANIFEST_KEYS, set(data) - MANIFEST_KEYS
    assert 0 < len(data["name"]) <= 34  # GitHub's limit for App names
    assert data["public"] is False
    for key in ("url", "redirect_url"):
        assert urlparse(data[key]).scheme == "https", key
    hook = urlparse(data["hook_attributes"]["url"])
    assert hook.scheme == "https" and hook.path == "/webhook"
    assert data["hook_attributes"].get("active", True) is True


def test_manifest_permissions_are_githubs_names_and_exactly_what_the_bot_needs() -> None:
    perms = _manifest()["default_permissions"]
    unknown = set(perms) - set(AppPermissions.model_fields)
    assert not unknown, f"not GitHub App permission names: {unknown}"
    AppPermissions.model_validate(perms)  # values are GitHub's access levels
    assert perms == REQUIRED_PERMISSIONS


def test_manifest_events_are_githubs_names() -> None:
    valid = set(typing.get_args(EventNameType))
    events = _manifest()["default_events"]
    assert len(events) == len(set(events))
    assert set(events) <= valid, set(events) - valid
    assert not set(events) & AUTOMATIC_EVENTS, "installation/ping are delivered without subscribing"


def test_manifest_subscribes_to_everything_the_bot_routes() -> None:
    routed = _routed_events()
    subscribed = set(_manifest()["default_events"])
    assert routed - AUTOMATIC_EVENTS == subscribed, (
        f"routed but not subscribed: {routed - AUTOMATIC_EVENTS - subscribed}; "
        f"subscribed but never routed: {subscribed - routed}"
    )


def test_each_subscribed_event_has_the_permission_it_needs() -> None:
    perms = _manifest()["default_permissions"]
    for event in _manifest()["default_events"]:
        assert EVENT_PERMISSION[event] in perms, event


# --------------------------------------------------------------------------- example repo config

BRIEF_SCHEMA: dict[str, Any] = {
    "label": "adapt-model",
    "permission": "write",
    "candidate_permission": "maintain",
    "pools": {"a2": "a2-8", "a3": "a3-16"},
    "profiles": {"a2": "ascend-a2", "a3": "ascend-a3"},
    "defaults": {"hardware": "a2", "tp": None, "max_model_len": None},
    "artifacts": {"e2e_config": True, "tutorial": True, "nightly": False, "model_list": False},
    "delivery": {
        "mode": "app-commit",
        "fork": None,
        "base_branch": None,
        "signoff": None,
        "draft_until_real_gate": True,
        "close_issue_on_merge": True,
    },
    "remote_code": {"allow": False},
    "quotas": {
        "user": None,
        "repo": None,
        "user_device_hours_per_day": None,
        "repo_device_hours_per_day": None,
    },
    "budget": {"device_hours_per_job": None},
    "adapter": None,
}


def test_example_config_is_the_documented_schema() -> None:
    assert yaml.safe_load(m.EXAMPLE_CONFIG.read_text(encoding="utf-8")) == BRIEF_SCHEMA


def test_example_config_passes_the_bots_own_parser() -> None:
    from bot.config import Settings
    from bot.repo_config import RepoConfig, parse

    loaded = parse(m.EXAMPLE_CONFIG.read_text(encoding="utf-8"), Settings(_env_file=None))  # type: ignore[call-arg]
    assert loaded.found and loaded.error is None, loaded.error
    assert loaded.config.model_dump() == BRIEF_SCHEMA
    # The example says "these are the defaults": keep it true.
    assert RepoConfig().model_dump() == BRIEF_SCHEMA


def test_the_parser_refuses_a_broken_copy_of_the_example() -> None:
    from bot.config import Settings
    from bot.repo_config import parse

    text = m.EXAMPLE_CONFIG.read_text(encoding="utf-8").replace("permission: write", "permission: triage")
    loaded = parse(text, Settings(_env_file=None))  # type: ignore[call-arg]
    assert loaded.error and "permission" in loaded.error


def test_example_profiles_exist_and_match_their_hardware() -> None:
    from runners.profile import available_profiles, load_profile

    example = yaml.safe_load(m.EXAMPLE_CONFIG.read_text(encoding="utf-8"))
    assert set(example["pools"]) == set(example["profiles"])
    for hardware, name in example["profiles"].items():
        assert name in available_profiles(), name
        profile = load_profile(name)
        assert profile.platform == "ascend"
        npus = int(example["pools"][hardware].rsplit("-", 1)[1])
        assert len(profile.devices.pool) == npus, (hardware, name)


@pytest.mark.parametrize("pool", ["control", "cpu", "a2-8", "a3-16"])
def test_the_deployed_queues_are_the_ones_workers_consume(pool: str) -> None:
    """Every queue of the brief has a consumer somewhere in deploy/ (compose or k8s)."""
    from bot.celery_app import CONTROL_QUEUE

    services = m.compose()["services"].values()
    consumers: list[list[str]] = [svc["command"] for svc in services if "command" in svc]
    for w in m.workloads():
        for c in m.pod_spec(w)["containers"]:
            consumers.append(c.get("args", []))
    queues = m.consumed_queues(consumers)
    assert CONTROL_QUEUE == "control"
    assert pool in queues, f"nothing consumes queue {pool}: {sorted(queues)}"
