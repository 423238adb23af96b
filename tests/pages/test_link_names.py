"""Pure parts of the links: the runner path -> stored log name mapping and the URL builders agree
with what the runner ships (runners.host.logs) and with the routes (bot/api/pages.py)."""

from __future__ import annotations

from bot.api.pages import log_href, stored_log_name
from runners import links
from runners.host import logs


def test_links_accept_exactly_the_log_names_the_runner_ships() -> None:
    assert links.LOG_NAME.pattern == logs.LOG_NAME.pattern


def test_stored_log_name_prefers_the_evidence_stage_and_refuses_non_logs() -> None:
    names = ["dummy-gate/serve.log", "real-gate/serve.log", "accuracy/lm-eval.log"]
    assert stored_log_name("/w/out/logs/serve.log", "real-gate", names) == "real-gate/serve.log"
    assert stored_log_name("/w/out/logs/serve.log", "capacity", names) == "dummy-gate/serve.log"
    assert stored_log_name("/w/out/logs/lm-eval.log", None, names) == "accuracy/lm-eval.log"
    assert stored_log_name("/w/out/accuracy/results.json", "accuracy", names) is None
    assert stored_log_name("/w/out/logs/missing.log", "real-gate", names) is None
    assert stored_log_name(None, "real-gate", names) is None


def test_url_builders_match_the_page_routes() -> None:
    page = links.job_url("https://adapt.example/", "20261201-abc")
    assert page == "https://adapt.example/jobs/20261201-abc"
    assert links.job_url(None, "x") is None
    url = links.log_url(page, "real-gate", "/w/logs/real-gate.log", 12)
    assert url == "https://adapt.example" + log_href("20261201-abc", "real-gate/real-gate.log", 12)
    assert links.log_url(page, "accuracy", "/w/out/results.json", 3) is None
    assert links.log_url(None, "real-gate", "/w/logs/real-gate.log") is None


def test_a_job_that_is_still_running_renders_without_results() -> None:
    from bot.api.pages import job_view
    from bot.jobs.model import Job, StageSummary
    from runners.contracts import JobOptions, utcnow
    from runners.render import render

    job = Job(
        repo="octo-org/vllm-ascend",
        issue=3,
        options=JobOptions(model="org/Tiny-Llama-1B"),
        state="running:analyze",
        stages={"analyze": StageSummary(status="running", started_at=utcnow())},
    )
    page = render("pages/job.html", login=None, **job_view(job, {}, [], {}, []))
    assert 'id="stage-analyze"' in page and "running for" in page
    assert "No verdict yet" in page and "No logs shipped yet" in page
