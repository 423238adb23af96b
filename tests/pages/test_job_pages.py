"""`/jobs/{id}` and `/jobs/{id}/logs/{stage}/{file}` on the real web app (uvicorn, real Redis): what a
maintainer sees, line anchors that evidence links land on, the raw variant, names that are not
stored logs, runner text shown as text, and private repositories' jobs hidden from strangers."""

from __future__ import annotations

import html
import re
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from tests.intake.test_access import CLIENT_ID, CLIENT_SECRET, OPERATOR, sign_in
from tests.pages.conftest import StoredJob

PRIVATE = "octo-org/secret-models"


@pytest.fixture
def app_settings(app_settings: Any, github_standin: Any) -> Any:
    from pydantic import SecretStr

    return app_settings.model_copy(
        update={
            "oauth_client_id": CLIENT_ID,
            "oauth_client_secret": SecretStr(CLIENT_SECRET),
            "operator_token": SecretStr(OPERATOR),
            "github_web_url": github_standin.api,
        }
    )


def test_job_page_shows_stages_verdict_matrices_evidence_logs_and_reports(
    bot_server: Any, make_job: Callable[..., StoredJob]
) -> None:
    failed = make_job("failed", public_url=bot_server.url)
    job = failed.job
    r = httpx.get(f"{bot_server.url}/jobs/{job.id}")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert "script-src" not in r.headers["content-security-policy"]  # default-src 'none': no scripts
    page = r.text
    real = failed.results["real-gate"]
    for text in (job.id, job.repo, f"#{job.issue}", "org/Tiny-Llama-1B", "failed:real-gate"):
        assert html.escape(text) in page, text
    # the verdict (runners.verdict.judge) and every stage with its status, attempt, diagnosis, next step
    assert "Verdict" in page and "real-gate" in page
    stage_row = re.search(r'<tr id="stage-real-gate">(.*?)</tr>', page, re.S)
    assert stage_row is not None
    row = stage_row.group(1)
    assert "failed" in row and f"<code>{real.reason}</code>" in row
    assert '<td data-label="attempt">2</td>' in row
    assert html.escape(real.diagnosis, quote=False) in row and html.escape(real.next_step, quote=False) in row
    assert 'id="stage-analyze"' in page and 'id="stage-dummy-gate"' in page
    # dummy-vs-real matrix, feature matrix sections
    assert 'id="gates"' in page and "dummy weights" in page and "real weights" in page
    assert 'id="features"' in page
    # each evidence excerpt links to its line in the stored log
    assert failed.cited
    for name, line, text in failed.cited:
        assert f'href="/jobs/{job.id}/logs/{name}#L{line}"' in page
        assert html.escape(text.strip(), quote=False)[:80] in page
    # every stored log is linked; the report and runbook are shown as text
    assert f'href="/jobs/{job.id}/logs/real-gate/real-gate.log"' in page
    assert 'id="report"' in page and 'id="runbook"' in page
    assert "report.zh.md" in page and "runbook.zh.md" in page
    # nothing is loaded from elsewhere and nothing runs
    assert "<script" not in page.lower()
    assert not re.search(r'<(link|img|iframe)[^>]+(src|href)="(https?:)?//', page)


def test_log_page_has_one_anchor_per_line_and_a_raw_variant(
    bot_server: Any, make_job: Callable[..., StoredJob], deps: Any
) -> None:
    failed = make_job("failed")
    job = failed.job
    name, line, text = failed.cited[0]
    stored = deps.store.log_text(job.id, name)
    r = httpx.get(f"{bot_server.url}/jobs/{job.id}/logs/{name}")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    ids = re.findall(r'<div class="ln" id="L(\d+)">', r.text)
    assert ids == [str(i) for i in range(1, len(stored.splitlines()) + 1)]
    m = re.search(
        rf'<div class="ln" id="L{line}"><a href="#L{line}">{line}</a><span>(.*?)</span></div>', r.text
    )
    assert m is not None and html.unescape(m.group(1)) == text
    raw = httpx.get(f"{bot_server.url}/jobs/{job.id}/logs/{name}", params={"raw": 1})
    assert raw.status_code == 200 and raw.headers["content-type"].startswith("text/plain")
    assert raw.text == stored and text in raw.text


BAD_LOG_PATHS = [
    "logs/real-gate/missing.log",  # not stored
    "logs/dummy-gate/real-gate.log",  # stored under another stage
    "logs/real-gate/..%2F..%2Fetc%2Fpasswd",  # traversal, encoded
    "logs/..%2Freal-gate/real-gate.log",
    "logs/real-gate/real-gate.txt",  # not a log name the runner ships
    "logs/Real-Gate/real-gate.log",
    "logs/real-gate",
]


def test_unknown_or_invalid_log_names_and_jobs_are_404(
    bot_server: Any, make_job: Callable[..., StoredJob]
) -> None:
    job = make_job("failed").job
    for path in BAD_LOG_PATHS:
        r = httpx.get(f"{bot_server.url}/jobs/{job.id}/{path}")
        assert r.status_code == 404, (path, r.status_code, r.text[:200])
        assert "head_dim" not in r.text, path
    assert httpx.get(f"{bot_server.url}/jobs/20260101-0000000000").status_code == 404
    assert httpx.get(f"{bot_server.url}/jobs/{'x' * 80}").status_code == 404
    assert httpx.get(f"{bot_server.url}/jobs/20260101-0000000000/logs/a/b.log").status_code == 404


def test_runner_text_is_shown_as_text_never_as_html(
    bot_server: Any, make_job: Callable[..., StoredJob], deps: Any
) -> None:
    from runners.contracts import Evidence
    from runners.host.logs import encode

    evil = '<script>alert("x")</script><img src=x onerror=alert(1)>'
    failed = make_job("failed")
    job = failed.job
    real = failed.results["real-gate"]
    deps.store.save_result(
        job.id,
        real.model_copy(
            update={
                "diagnosis": evil,
                "evidence": [Evidence(kind="log", text=evil, log_path="/x/logs/evil.log", line=1)],
            }
        ),
    )
    deps.store.save_logs(job.id, "real-gate", {"evil.log": encode(evil + "\nsecond line\n")})
    deps.store.save_reports(job.id, {"report.zh.md": f"# 报告\n\n{evil}\n", "runbook.zh.md": evil})
    page = httpx.get(f"{bot_server.url}/jobs/{job.id}").text
    log = httpx.get(f"{bot_server.url}/jobs/{job.id}/logs/real-gate/evil.log").text
    for body in (page, log):
        assert "<script>" not in body and "<img src=x" not in body
        assert "&lt;script&gt;alert(" in body
    assert f'href="/jobs/{job.id}/logs/real-gate/evil.log#L1"' in page


def test_private_repository_job_page_and_logs_follow_read_access(
    bot_server: Any, github_standin: Any, make_job: Callable[..., StoredJob]
) -> None:
    gh = github_standin
    gh.oauth_clients[CLIENT_ID] = CLIENT_SECRET
    gh.add_repo(PRIVATE, 77, collaborators={"maintainer": "write", "insider": "read"}).private = True
    failed = make_job("failed", repo=PRIVATE, private=True)
    job = failed.job
    name, line, _ = failed.cited[0]
    base = bot_server.url
    urls = [f"/jobs/{job.id}", f"/jobs/{job.id}/logs/{name}", f"/jobs/{job.id}/logs/{name}?raw=1"]
    for url in urls:
        anon = httpx.get(base + url)
        assert anon.status_code == 404 and PRIVATE not in anon.text, url  # not even confirmed to exist
        assert 'href="/login"' in anon.text, url  # a maintainer who clicked from GitHub can sign in
        wrong = httpx.get(base + url, headers={"Authorization": "Bearer not-the-operator-token"})
        assert wrong.status_code == 404, url
        op = httpx.get(base + url, headers={"Authorization": f"Bearer {OPERATOR}"})
        assert op.status_code == 200 and (job.id in op.text or "head_dim" in op.text), url
    assert PRIVATE not in httpx.get(base + "/jobs").text
    stranger = sign_in(base, "stranger")
    insider = sign_in(base, "insider")
    for url in urls:
        refused = stranger.get(url)
        assert refused.status_code == 403 and "stranger cannot read" in refused.text, url
        assert insider.get(url).status_code == 200, url
    assert f'id="L{line}"' in insider.get(urls[1]).text
