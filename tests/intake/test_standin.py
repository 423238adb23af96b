"""The GitHub stand-in itself: its responses parse with githubkit's models (GitHub's shapes), it
checks App JWTs and installation tokens like GitHub, and its faults and recordings work."""

from __future__ import annotations

import time
from typing import Any

import httpx
import jwt
import pytest
from githubkit import AppAuthStrategy, GitHub
from githubkit.cache import MemCacheStrategy
from githubkit.exception import RequestFailed

from tests.plugins.standin import APP_ID, INSTALLATION, REPO, WEBHOOK_SECRET
from tests.standin.server import send_webhook, sign
from tests.standin.state import bad_gateway


@pytest.fixture
def app_gh(github_standin: Any, rsa_key: Any) -> GitHub[Any]:
    return GitHub(
        AppAuthStrategy(APP_ID, rsa_key.private_pem),
        base_url=github_standin.api + "/",
        auto_retry=False,
        http_cache=False,
        cache_strategy=MemCacheStrategy(),  # tokens of an earlier test's stand-in state are gone
    )


def test_every_route_answers_in_githubs_shapes(app_gh: GitHub[Any], github_standin: Any) -> None:
    gh = github_standin
    gh.repos[REPO].files[".github/adapt-bot.yml"] = "label: adapt-model\n"
    n = gh.add_issue(REPO, "Support X", "model: a/b")["number"]
    o, r = REPO.split("/")
    assert app_gh.rest.apps.get_authenticated().parsed_data.id == APP_ID
    inst = app_gh.rest.apps.get_repo_installation(o, r).parsed_data
    assert inst.id == INSTALLATION
    tok = app_gh.rest.apps.create_installation_access_token(INSTALLATION).parsed_data
    assert tok.token.startswith("ghs_")
    ig = app_gh.with_auth(app_gh.auth.as_installation(INSTALLATION))
    assert ig.rest.issues.get(o, r, n).parsed_data.title == "Support X"
    c = ig.rest.issues.create_comment(o, r, n, data={"body": "hi"}).parsed_data
    assert c.performed_via_github_app and c.performed_via_github_app.id == APP_ID
    assert c.user and c.user.type == "Bot"
    assert ig.rest.issues.update_comment(o, r, c.id, data={"body": "edited"}).parsed_data.body == "edited"
    assert [x.body for x in ig.rest.issues.list_comments(o, r, n).parsed_data] == ["edited"]
    reaction = ig.rest.reactions.create_for_issue_comment(o, r, c.id, data={"content": "eyes"})
    assert reaction.status_code == 201 and reaction.parsed_data.content == "eyes"
    assert ig.rest.reactions.create_for_issue_comment(o, r, c.id, data={"content": "eyes"}).status_code == 200
    perm = ig.rest.repos.get_collaborator_permission_level(o, r, "maintainer").parsed_data
    assert (perm.permission, perm.role_name) == ("write", "write")
    content = ig.rest.repos.get_content(o, r, ".github/adapt-bot.yml").parsed_data
    assert content.type == "file" and content.encoding == "base64"
    assert ig.rest.users.get_by_username("maintainer").parsed_data.login == "maintainer"
    with pytest.raises(RequestFailed) as info:
        ig.rest.repos.get_content(o, r, "missing.yml")
    assert info.value.response.status_code == 404
    with pytest.raises(RequestFailed) as info:
        ig.rest.repos.get_collaborator_permission_level(o, r, "stranger")
    assert info.value.response.status_code == 404


def _jwt(key: str, iss: Any, exp_in: int = 540, iat_ago: int = 60) -> str:
    now = int(time.time())
    return jwt.encode({"iat": now - iat_ago, "exp": now + exp_in, "iss": str(iss)}, key, algorithm="RS256")


def test_app_jwt_is_checked(github_standin: Any, rsa_key: Any) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    url = f"{github_standin.api}/app/installations/{INSTALLATION}/access_tokens"
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    cases = {
        "good": (_jwt(rsa_key.private_pem, APP_ID), 201),
        "wrong key": (_jwt(other.decode(), APP_ID), 401),
        "wrong issuer": (_jwt(rsa_key.private_pem, 999), 401),
        "expired": (_jwt(rsa_key.private_pem, APP_ID, exp_in=-120, iat_ago=700), 401),
        "too long": (_jwt(rsa_key.private_pem, APP_ID, exp_in=3600), 401),
    }
    for name, (token, status) in cases.items():
        r = httpx.post(url, headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == status, name
    assert httpx.post(url).status_code == 401
    hs = jwt.encode(
        {"iss": str(APP_ID), "iat": int(time.time()), "exp": int(time.time()) + 60},
        "x" * 32,
        algorithm="HS256",
    )
    assert httpx.post(url, headers={"Authorization": f"Bearer {hs}"}).status_code == 401


def test_installation_tokens_are_scoped(github_standin: Any, app_gh: GitHub[Any]) -> None:
    github_standin.add_repo("other-org/other", installation_id=88)
    github_standin.add_issue("other-org/other", "x")
    ig = app_gh.with_auth(app_gh.auth.as_installation(INSTALLATION))
    with pytest.raises(RequestFailed) as info:
        ig.rest.issues.get("other-org", "other", 1)
    assert info.value.response.status_code == 404
    r = httpx.get(
        f"{github_standin.api}/repos/{REPO}/issues/1", headers={"Authorization": "token ghs_forged"}
    )
    assert r.status_code == 401


def test_faults_are_served_in_order_and_everything_is_recorded(
    github_standin: Any, app_gh: GitHub[Any]
) -> None:
    gh = github_standin
    n = gh.add_issue(REPO, "x")["number"]
    gh.inject("GET", f"/repos/{REPO}/issues/*", bad_gateway(), bad_gateway())
    ig = app_gh.with_auth(app_gh.auth.as_installation(INSTALLATION))
    o, r = REPO.split("/")
    statuses = []
    for _ in range(3):
        try:
            statuses.append(ig.rest.issues.get(o, r, n).status_code)
        except RequestFailed as exc:
            statuses.append(exc.response.status_code)
    assert statuses == [502, 502, 200]
    assert [x.status for x in gh.requests_to("GET", f"/repos/{REPO}/issues/{n}")] == [502, 502, 200]
    assert gh.requests_to("POST", "/app/installations/*/access_tokens")[0].auth == "jwt"


def test_signed_webhooks_verify_like_githubs(github_standin: Any) -> None:
    from githubkit.webhooks import verify

    from bot.api.intake import verify_signature

    body = b'{"zen": "Design for failure."}'
    signature = sign(WEBHOOK_SECRET, body)
    assert verify(WEBHOOK_SECRET, body, signature)
    assert verify_signature(WEBHOOK_SECRET.encode(), body, signature)
    assert not verify_signature(WEBHOOK_SECRET.encode(), body + b" ", signature)
    assert not verify_signature(WEBHOOK_SECRET.encode(), body, "sha1=" + signature[7:])
    assert not verify_signature(WEBHOOK_SECRET.encode(), body, None)
    # send_webhook reaches any URL (here the stand-in, which has no /webhook: 404 proves the request went out)
    assert (
        send_webhook(github_standin.api + "/webhook", "ping", {"zen": "x"}, WEBHOOK_SECRET).status_code == 404
    )
