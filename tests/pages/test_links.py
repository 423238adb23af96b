"""Every link the bot posts about a job resolves on the real web app: the status comment, the PR
body, the check runs, the final comment and the failure report are rendered by the code that posts
them, for jobs with stored results and logs; each URL under the public URL is fetched (uvicorn, real
Redis) and must answer 200 with what it promised: the job, the anchored section, the log line."""

from __future__ import annotations

import html
import re
from collections.abc import Callable
from typing import Any

import httpx

from tests.pages.conftest import StoredJob


def posted_texts(stored: StoredJob, public: str) -> dict[str, str]:
    """What the bot posts for this job, by where it goes (rendered as bot/ renders it)."""
    from bot.comments import failure_results, render_status, verdict_for
    from bot.delivery import gate_check_runs
    from runners.artifacts import Delivery, collect, pr_body, render_failure_report, render_final_comment
    from runners.links import job_url
    from runners.verdict import judge

    job, results = stored.job, stored.results
    options = job.options.model_copy(update={"issue": job.issue})
    logs_url = job_url(public, job.id)
    out = {"status comment": render_status(job, jobs_url=public, verdict=verdict_for(job, results))}
    if job.phase == "failed":
        full = failure_results(job, results)
        out["failure report"] = render_failure_report(
            options, full, job_id=job.id, verdict=judge(full, job.options.profile), logs_url=logs_url
        )
    else:
        delivery = Delivery(commit_sha="0" * 40, branch="adapt/tiny-llama-1b", pr_url=None, logs_url=logs_url)
        out["final comment"] = render_final_comment(options, results, delivery, job_id=job.id)
        out["pr body"] = pr_body(options, results, job_id=job.id, files=["docs/x.md"], report_url=logs_url)
    for spec in gate_check_runs(collect(options, results), logs_url=logs_url):
        out[f"check run {spec.name}"] = f"{spec.summary}\n{spec.details_url or ''}"
    return out


def links(text: str, public: str) -> set[str]:
    return set(re.findall(re.escape(public) + r"/[^\s)<>\]`'\"|]*", text))


def check_link(url: str, public: str, stored: StoredJob, deps: Any) -> None:
    job = stored.job
    target, _, fragment = url.partition("#")
    r = httpx.get(target)
    assert r.status_code == 200, (url, r.status_code, r.text[:300])
    path = target[len(public) :]
    if path.startswith("/api/"):
        assert r.json()["id"] == job.id, url
        return
    assert job.id in r.text, url
    log = re.fullmatch(rf"/jobs/{job.id}/logs/([a-z0-9-]+/[A-Za-z0-9._-]+)", path)
    if fragment.startswith("L"):
        assert log is not None, url
        n = int(fragment[1:])
        lines = (deps.store.log_text(job.id, log.group(1)) or "").splitlines()
        m = re.search(rf'<div class="ln" id="L{n}"><a href="#L{n}">{n}</a><span>(.*?)</span></div>', r.text)
        assert m is not None and html.unescape(m.group(1)) == lines[n - 1], url
        # the line is the one the evidence excerpt quotes
        assert any(name == log.group(1) and line == n for name, line, _ in stored.cited), url
    elif fragment:
        assert f'id="{fragment}"' in r.text, url


def test_every_link_the_bot_posts_answers_200_with_what_it_promised(
    bot_server: Any, make_job: Callable[..., StoredJob], deps: Any
) -> None:
    public = bot_server.url
    seen: dict[str, set[str]] = {}
    for kind in ("failed", "succeeded"):
        stored = make_job(kind, public_url=public)
        for where, text in posted_texts(stored, public).items():
            found = links(text, public)
            assert found, f"{kind} {where} links nothing"
            seen[f"{kind} {where}"] = found
            for url in found:
                check_link(url, public, stored, deps)
        # the stored report links the job page too
        report = deps.store.reports(stored.job.id)["report.zh.md"]
        for url in links(report, public):
            check_link(url, public, stored, deps)
    everything = set().union(*seen.values())
    # the failure report links each evidence excerpt to its line; the final comment its report, runbook, logs
    assert any("/logs/real-gate/real-gate.log#L" in u for u in seen["failed failure report"]), seen
    assert {u.rpartition("#")[2] for u in seen["succeeded final comment"]} >= {"report", "runbook", "logs"}
    assert any(u.endswith("#logs") for u in seen["failed failure report"])
    from runners.links import SKILL_URL

    # the skill asks for its link on the issue once: the first job's status comment carries it
    # (bot.comments.carries_skill_link, tests/intake/test_skill_link.py), not every final comment
    assert SKILL_URL not in posted_texts(stored, public)["final comment"]
    assert all(u.startswith(public + "/") for u in everything)


def test_pr_body_shows_the_maintainers_command_not_the_runners_argv(
    make_job: Callable[..., StoredJob],
) -> None:
    from runners.artifacts import pr_body

    stored = make_job("succeeded")
    job = stored.job
    runner_argv = stored.results["real-gate"].data["argv"]
    assert runner_argv[0].endswith("/bin/vllm") and "127.0.0.1" in runner_argv  # what the runner ran
    body = pr_body(
        job.options.model_copy(update={"issue": job.issue}), stored.results, job_id=job.id, files=[]
    )
    block = body.split("```bash\n", 1)[1].split("\n```", 1)[0]
    assert block.startswith("vllm serve org/Tiny-Llama-1B \\\n  --served-model-name Tiny-Llama-1B")
    assert block.rstrip().endswith("--port 8000") and "/workspace" in body
    for runner_only in (runner_argv[0], "127.0.0.1", runner_argv[-1], "/tmp/e2e", ".cache"):
        assert runner_only not in body, runner_only
