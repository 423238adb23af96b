"""The jobs pages and API follow the repository's visibility (issue 12): a public repository's jobs
are public; a private one's only for a signed-in GitHub user who can read it (the real OAuth web
flow against the stand-in: /login -> authorize -> /callback -> session cookie) or the operator
token; `/metrics` is not on the public port (a real `adapt-bot serve` process)."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.plugins.standin import REPO
from tests.standin import payloads
from tests.standin.server import free_port

CLIENT_ID = "Iv1.testclient0001"
CLIENT_SECRET = "test-oauth-client-secret-0123"  # a test value
OPERATOR = "test-operator-token-0123456789"  # a test value
PRIVATE = "octo-org/secret-models"
REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def app_settings(app_settings: Any, github_standin: Any) -> Any:
    from pydantic import SecretStr

    return app_settings.model_copy(
        update={
            "oauth_client_id": CLIENT_ID,
            "oauth_client_secret": SecretStr(CLIENT_SECRET),
            "operator_token": SecretStr(OPERATOR),
            "github_web_url": github_standin.api,  # the stand-in serves github.com's OAuth pages too
        }
    )


@pytest.fixture
def two_jobs(
    post: Callable[..., Any], github_standin: Any, deps: Any, drain: Callable[[], list[Any]]
) -> tuple[Any, Any]:
    """One job on the public repository, one on a private repository (visibility from the payload)."""
    gh = github_standin
    gh.oauth_clients[CLIENT_ID] = CLIENT_SECRET
    gh.add_repo(PRIVATE, 77, collaborators={"maintainer": "write", "insider": "read"}).private = True
    jobs = []
    for repo in (REPO, PRIVATE):
        n = gh.add_issue(repo, "[New model] Qwen3-8B", "model: Qwen/Qwen3-8B")["number"]
        assert post("issues", payloads.issues_labeled(gh, repo, n)).status_code == 202
        drain()
        jobs.append(deps.store.active_for(repo, n))
    public, private = jobs
    assert public.repo_private is False and private.repo_private is True
    return public, private


def sign_in(base: str, login: str) -> httpx.Client:
    """The browser's part of GitHub's web flow; the stand-in's authorize page signs `login` in."""
    c = httpx.Client(base_url=base, timeout=10)
    r = c.get("/login")
    assert r.status_code == 302, r.text
    authorize = httpx.URL(r.headers["location"])
    assert authorize.path == "/login/oauth/authorize" and authorize.params["client_id"] == CLIENT_ID
    back = httpx.get(str(authorize.copy_add_param("login", login)))
    assert back.status_code == 302
    done = c.get(back.headers["location"])
    assert done.status_code == 302 and done.headers["location"] == "/jobs", done.text
    return c


def ids(resp: httpx.Response) -> set[str]:
    return {j["id"] for j in resp.json()["jobs"]}


def test_private_jobs_are_hidden_from_strangers_and_shown_to_readers(
    bot_server: Any, github_standin: Any, two_jobs: tuple[Any, Any]
) -> None:
    public, private = two_jobs
    base = bot_server.url
    # anonymous: the public repository's job only; the private one does not exist for them
    assert ids(httpx.get(base + "/api/jobs")) == {public.id}
    assert httpx.get(f"{base}/api/jobs/{public.id}").status_code == 200
    assert httpx.get(f"{base}/api/jobs/{private.id}").status_code == 404
    page = httpx.get(base + "/jobs").text
    assert public.id in page and private.id not in page and PRIVATE not in page
    assert 'href="/login"' in page
    # a signed-in user who can read the private repository sees its job
    insider = sign_in(base, "insider")
    assert ids(insider.get("/api/jobs")) == {public.id, private.id}
    detail = insider.get(f"/api/jobs/{private.id}")
    assert detail.status_code == 200 and detail.json()["repo"] == PRIVATE
    assert PRIVATE in insider.get("/jobs").text and "insider" in insider.get("/jobs").text
    # a signed-in user without access: listed jobs exclude it, the job itself is 403
    stranger = sign_in(base, "stranger")
    assert ids(stranger.get("/api/jobs")) == {public.id}
    assert stranger.get(f"/api/jobs/{private.id}").status_code == 403
    # the read check used the user's own token against GitHub
    checks = github_standin.requests_to("GET", f"/repos/{PRIVATE}")
    assert {r.status for r in checks} == {200, 404}
    # the operator token (API)
    op = {"Authorization": f"Bearer {OPERATOR}"}
    assert httpx.get(f"{base}/api/jobs/{private.id}", headers=op).status_code == 200
    wrong = {"Authorization": "Bearer not-the-operator-token"}
    assert httpx.get(f"{base}/api/jobs/{private.id}", headers=wrong).status_code == 404
    # a forged or tampered session cookie is anonymous
    forged = httpx.get(f"{base}/api/jobs/{private.id}", cookies={"adapt_session": "gAAAAA-forged"})
    assert forged.status_code == 404


def test_sign_in_refuses_a_callback_it_did_not_start(bot_server: Any, github_standin: Any) -> None:
    github_standin.oauth_clients[CLIENT_ID] = CLIENT_SECRET
    r = httpx.get(bot_server.url + "/callback", params={"code": "abc", "state": "forged"})
    assert r.status_code == 400 and "/login" in r.json()["error"]


def test_metrics_are_served_on_their_own_port_only(app_env: dict[str, str], tmp_path: Path) -> None:
    port, mport = free_port(), free_port()
    log = tmp_path / "serve.log"
    with log.open("wb") as fh:
        proc = subprocess.Popen(
            [sys.executable, "-m", "bot.cli", "serve", "--no-worker", "--port", str(port)],
            env={**app_env, "ADAPT_BOT_METRICS_BIND": f"127.0.0.1:{mport}"},
            cwd=REPO_ROOT,
            stdout=fh,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline and proc.poll() is None, log.read_text()[-3000:]
            time.sleep(0.2)
        assert httpx.get(f"http://127.0.0.1:{port}/metrics").status_code == 404
        text = httpx.get(f"http://127.0.0.1:{mport}/metrics").text
        assert "adapt_bot_intents_pending" in text and "adapt_bot_outbox_depth" in text
        assert httpx.get(f"http://127.0.0.1:{mport}/webhook").status_code == 404  # pages stay public
    finally:
        proc.terminate()
        proc.wait(30)
