"""Every text derives from the verdict: status comment, final comment, PR title/body/draft, report,
runbook, tutorial, e2e YAML hardware, failure report, and the closing lines of `adapt-bot run`.
"可以合入评审" and "validated" only for `validated`; a cpu run never claims Ascend hardware."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from bot.comments import (
    failure_results,
    headline,
    post_failure_report,
    publish_failure_report,
    publish_report,
    render_status,
    report_marker,
    verdict_for,
)
from bot.delivery import pr_draft
from bot.jobs.model import Job, StageSummary
from bot.local_run import LocalRunOutcome, print_outcome
from bot.repo_config import RepoConfig
from runners.artifacts import (
    Delivery,
    collect,
    commit_message,
    pr_body,
    pr_title,
    render_failure_report,
    render_final_comment,
    render_report,
    render_runbook,
    title_ok,
)
from runners.artifacts.docs import render_tutorial
from runners.artifacts.e2e_config import render_e2e_config
from runners.artifacts.target import detect
from runners.artifacts.wording import verdict_block, verdict_headline
from runners.contracts import Evidence, JobOptions, StageResult
from runners.verdict import judge
from tests.artifacts import builders as b

M = "Qwen/Qwen3-8B"
REAL_RUN = Path(__file__).resolve().parent / "data" / "real-run"
DELIVERY = Delivery(commit_sha="c" * 40, branch="adapt/qwen3-8b-42", pr_url="https://github.com/o/r/pull/9")
ASCEND_NAMES = re.compile(r"Atlas A[23]")


def real_run() -> tuple[JobOptions, dict[str, StageResult]]:
    """The recorded tiny-model run on the cpu profile (0.0 accuracy, no parity/quality record)."""
    results = {p.stem: StageResult.model_validate_json(p.read_text()) for p in REAL_RUN.glob("*.json")}
    return JobOptions(model="org/Tiny-Llama-1B", issue=12), results


def levels() -> dict[str, tuple[JobOptions, dict[str, StageResult]]]:
    """One job per wording case: validated on Ascend, validated on cpu, serves-not-validated, failed."""
    failed = b.full_results(M)
    for stage in ("features", "capacity", "accuracy"):
        del failed[stage]
    failed["real-gate"] = b.gate("real-gate", M, status="failed", first_error="KeyError: 'lm_head.weight'")
    failed["real-gate"].reason = "crashed"
    failed["real-gate"].diagnosis = "the engine died loading the weights"
    failed["real-gate"].next_step = "check the weight mapping of lm_head"
    return {
        "validated-ascend": (b.options(M, profile="ascend-a2"), b.full_results(M)),
        "validated-cpu": (b.options(M), b.full_results(M)),
        "serves": real_run(),
        "failed": (b.options(M, profile="ascend-a2"), failed),
    }


CASES = list(levels())


def job_for(options: JobOptions, results: dict[str, StageResult], state: str) -> Job:
    stages = {
        s: StageSummary(status=r.status, reason=r.reason, diagnosis=r.diagnosis, next_step=r.next_step)
        for s, r in results.items()
    }
    return Job(
        repo="octo-org/vllm-ascend", issue=options.issue or 1, options=options, state=state, stages=stages
    )


# ------------------------------------------------------------------------------------ status comment


def test_status_headline_follows_the_verdict() -> None:
    cases = levels()
    expected = {
        "validated-ascend": "✅ validated on Atlas A2 Series",
        "validated-cpu": "✅ validated on the cpu profile only, not verified on Ascend",
        "serves": "⚠️ serves, not validated",
    }
    for name, text in expected.items():
        options, results = cases[name]
        job = job_for(options, results, "succeeded")
        v = verdict_for(job, results)
        assert v is not None and headline(job, v) == text
        body = render_status(job, verdict=v)
        assert f"### adapt-bot · {text}" in body
        if name == "serves":
            assert "Not validated because:" in body and "accuracy implausible" in body
            assert "reference parity" in body and "output quality not checked" in body
        else:
            assert "Not validated because:" not in body
        assert ("Ran on the cpu runner profile" in body) is (name != "validated-ascend")
        assert "\n\n| stage | status | time | notes |" in body  # a table needs its blank line on GitHub
    # without a verdict a finished job claims only that it was delivered
    options, results = cases["validated-ascend"]
    job = job_for(options, results, "succeeded")
    assert headline(job) == "📦 Delivered — the verdict is in the final report"
    assert "validated" not in render_status(job)


def test_status_of_a_failed_job_names_stage_and_reason() -> None:
    options, results = levels()["failed"]
    job = job_for(options, results, "failed:real-gate")
    assert headline(job) == "❌ Failed at **real-gate**: `crashed`"
    v = verdict_for(job, results)
    assert v is not None and v.failed and headline(job, v) == headline(job)
    assert "Not validated because" not in render_status(job, verdict=v)
    running = job.model_copy(update={"state": "running:features"})
    assert verdict_for(running, results) is None


# ------------------------------------------------------------------------------------- final comment


@pytest.mark.parametrize("case", CASES)
def test_final_comment_merge_review_only_when_validated(case: str) -> None:
    options, results = levels()[case]
    v = collect(options, results).verdict
    comment = render_final_comment(options, results, DELIVERY, job_id="j1")
    head = next(line for line in comment.splitlines() if line.startswith("### "))
    assert ("可以合入评审" in comment) is v.validated, case
    if case == "validated-ascend":
        assert head.startswith("### ✅") and "validated on Atlas A2 Series" in head
        assert "未在昇腾硬件上验证" not in comment.split("<details>")[0]
    elif case == "validated-cpu":
        assert "validated on the cpu profile only, not verified on Ascend" in head
        assert "可以合入评审（仅在 cpu 运行配置上验证，未在昇腾硬件上验证）" in comment
    elif case == "serves":
        assert head.startswith("### ⚠️") and "serves, not validated" in head
        assert "Not validated because:" in comment and "at chance level" in comment
    else:
        assert head.startswith("### ❌") and "failed: real-gate: crashed" in head
        assert "the engine died loading the weights" in comment
    if not v.on_ascend:
        assert "nothing here was verified on Atlas A2 Series" in comment


def test_final_comment_flags_zero_accuracy_in_its_table() -> None:
    options, results = real_run()
    comment = render_final_comment(options, results, DELIVERY, job_id="j1")
    rows = [
        line for line in comment.split("<details>")[0].splitlines() if line.startswith("| adapt_gsm8k_local")
    ]
    assert len(rows) == 2 and all("⚠️ implausible: 0.0000 is at chance level" in row for row in rows)


# ------------------------------------------------------------------------------------ PR title/draft


@pytest.mark.parametrize("case", CASES)
def test_pr_is_a_draft_unless_validated_and_the_title_says_so(case: str) -> None:
    options, results = levels()[case]
    v = collect(options, results).verdict
    assert pr_draft(v, RepoConfig().delivery) is (not v.validated)
    assert (
        pr_draft(v, RepoConfig.model_validate({"delivery": {"draft_until_real_gate": False}}).delivery)
        is False
    )
    title = pr_title(options, results)
    code_title = pr_title(options, results, code_changes=["vllm_ascend/models/qwen3.py"])
    for t in (title, code_title):
        assert title_ok(t) and "\n" not in t and len(t) < 140
        if not v.on_ascend:
            assert not ASCEND_NAMES.search(t) and "on Ascend" not in t.replace("not on Ascend", "")
    expected_suffix = {
        "validated-ascend": "e2e accuracy config",
        "validated-cpu": "(verified on the cpu profile only, not on Ascend)",
        "serves": "(not validated; cpu profile only)",
        "failed": "(failed: real-gate)",
    }[case]
    assert title.endswith(expected_suffix), title
    assert (code_title == "[Feature] Support Qwen3-8B on Atlas A2 Series") is (case == "validated-ascend")


def test_pr_body_never_writes_an_implausible_baseline_without_its_flag() -> None:
    options, results = real_run()
    body = pr_body(options, results, job_id="j1", files=["tests/e2e/models/configs/Tiny-Llama-1B.yaml"])
    tested = body.split("### How was this patch tested?", 1)[1]
    assert "**Verdict: ⚠️ serves, not validated.**" in tested
    assert "stays a draft" in tested and "[!CAUTION]" in tested
    for line in tested.splitlines():
        if line.startswith("| Accuracy:"):
            assert "⚠️ implausible: 0.0000 is at chance level" in line and "not a baseline" in line, line
    assert "Nothing in this PR was run on Ascend hardware" in tested
    assert not ASCEND_NAMES.search(body.replace("Re-run on Atlas A2 Series before merging", ""))


def test_pr_body_of_a_validated_ascend_run_has_no_warnings() -> None:
    options, results = levels()["validated-ascend"]
    body = pr_body(options, results, job_id="j1", files=[])
    assert "**Verdict: ✅ validated on Atlas A2 Series.**" in body
    assert "[!WARNING]" not in body and "[!CAUTION]" not in body and "[!NOTE]" not in body
    assert "| Reference parity (Hugging Face `transformers`, same weights) | passed |" in body
    assert "| Output quality (degenerate-output check) | ok |" in body


def test_real_gate_check_run_shows_parity_and_quality() -> None:
    from runners.artifacts import check_run_output

    results = b.full_results(M)
    results["real-gate"].data["parity"] = {"status": "skipped", "reason": "needs 32 GB, budget 8 GB"}
    facts = collect(b.options(M), results)
    assert facts.real_gate is not None
    summary = check_run_output(facts.real_gate)["summary"]
    assert "Reference parity (Hugging Face `transformers`, same weights): skipped — needs 32 GB" in summary
    assert "Output quality: ok." in summary and "not a validated adaptation" in summary
    assert "Reference parity" not in check_run_output(facts.gates[0])["summary"]


def test_commit_message_carries_the_verdict_and_where_it_ran() -> None:
    options, results = real_run()
    msg = commit_message(options, results)
    assert "\nVerdict: serves, not validated: " in msg and "at chance level" in msg
    assert "Ran on: the cpu runner profile (vLLM CPU build), not Ascend hardware" in msg
    assert "Validate" not in msg.splitlines()[2]


# --------------------------------------------------------------------------------- report / runbook


@pytest.mark.parametrize(
    ("case", "conclusion"),
    [
        ("validated-ascend", "- 结论：已在 Atlas A2 Series 上验证通过，可以合入评审。"),
        (
            "validated-cpu",
            "- 结论：仅在 cpu 运行配置上验证通过（未在昇腾硬件上验证），可以合入评审，但需在昇腾上复测。",
        ),
        ("serves", "- 结论：**能服务，但未通过验证，不能签收；PR 保持草稿状态**。"),
        ("failed", "- 结论：**失败：real-gate：crashed，不能签收**。"),
    ],
)
def test_report_conclusion_per_level(case: str, conclusion: str) -> None:
    options, results = levels()[case]
    report = render_report(options, results, DELIVERY)
    assert conclusion in report.splitlines()
    ran_on = next(line for line in report.splitlines() if line.startswith("- 实际运行："))
    if case == "validated-ascend" or case == "failed":
        assert ran_on == "- 实际运行：Atlas A2 Series（运行配置 ascend-a2）"
    else:
        assert ran_on == "- 实际运行：cpu 运行配置（vLLM CPU 版），未在昇腾硬件上验证"
    assert report.count("可以合入评审") == (1 if case.startswith("validated") else 0)


def test_report_lists_the_reasons_and_flags_the_metric() -> None:
    options, results = real_run()
    report = render_report(options, results, DELIVERY)
    head = report.split("## 模型架构概述", 1)[0]
    assert "  - 原因：未与 Hugging Face 参考实现做一致性比对" in head
    assert "  - 原因：未检查输出质量" in head
    assert (
        "  - 原因：精度不可信：adapt_gsm8k_local exact_match,strict-match = 0.0000（0.0000 is at chance level"
        in head
    )
    assert "  - 原因：精度未经第二次测量确认" in head
    assert "  - 原因：精度来自离线本地测试任务 adapt_gsm8k_local" in head
    row = "| adapt_gsm8k_local | exact_match,strict-match | 0.0000 ± 0.0000 | ⚠️ 不可信（0.0000 is at chance"
    assert row in report
    matrix = report.split("## dummy 与真实权重验证矩阵", 1)[1]
    assert "| 与 HF 参考实现一致（同一权重，token + logprob） | 不适用 | 未检查 |" in matrix
    assert not ASCEND_NAMES.search(report.replace("- 目标硬件：Atlas A2 Series", ""))


def test_report_shows_parity_skip_and_degenerate_output() -> None:
    results = b.full_results(M)
    results["real-gate"].data["parity"] = {"status": "skipped", "reason": "needs 32 GB, budget 8 GB"}
    results["real-gate"].data["quality"] = {"degenerate": True, "reason": "one token repeated"}
    report = render_report(b.options(M, profile="ascend-a2"), results, DELIVERY)
    assert "  - 原因：参考实现比对已跳过：needs 32 GB, budget 8 GB" in report
    assert "  - 原因：输出退化：one token repeated" in report
    assert (
        "| 与 HF 参考实现一致（同一权重，token + logprob） | 不适用 | ⏭️ 跳过：needs 32 GB, budget 8 GB |"
        in report
    )
    assert "| 输出质量（非退化） | 不适用（随机权重） | ❌ 退化：one token repeated |" in report
    comment = render_final_comment(b.options(M, profile="ascend-a2"), results, DELIVERY, job_id="j")
    assert "- reference skipped: needs 32 GB, budget 8 GB" in comment
    assert "- degenerate output: one token repeated" in comment and "可以合入评审" not in comment


@pytest.mark.parametrize("case", CASES)
def test_runbook_states_the_verdict_and_where_the_commands_ran(case: str) -> None:
    options, results = levels()[case]
    runbook = render_runbook(options, results, DELIVERY)
    v = collect(options, results).verdict
    line = next(x for x in runbook.splitlines() if x.startswith("验证结论："))
    assert ("可以合入评审" in line) is v.validated
    assert ("只在 cpu 运行配置上执行过" in runbook) is (not v.on_ascend)


# ---------------------------------------------------------------------------------- e2e YAML + docs


def test_e2e_yaml_hardware_on_the_cpu_profile_names_the_cpu_and_flags_zero() -> None:
    options, results = real_run()
    text = render_e2e_config(collect(options, results))
    cfg = yaml.safe_load(text)
    assert cfg["hardware"] == "CPU (vLLM CPU build, adapt-bot cpu profile), not Ascend"
    comments = [line for line in text.splitlines() if line.startswith("#")]
    assert comments == [
        "# adapt-bot: these values were measured on the cpu runner profile, not on Ascend hardware.",
        "# This config is for Atlas A2 Series: re-measure there and set `hardware` before relying on it.",
    ]
    values = [line for line in text.splitlines() if line.strip().startswith("value:")]
    flag = "implausible: 0.0000 is at chance level (0.00: free-form numeric answer); not a baseline"
    assert values == [f"    value: 0.0  # {flag}"] * 2


def test_e2e_yaml_flag_comment_cannot_break_out_of_its_line() -> None:
    """The flag text comes from the runner (untrusted): YAML line breaks must not start a new key."""
    results = b.full_results(M)
    hostile = "x\u2028limit: 1\x85num_fewshot: 0\r\nbatch_size: 99 # done"
    results["accuracy"] = b.accuracy(M, tasks=[{"name": "gsm8k", "metrics": [metric_row(0.0, why=hostile)]}])
    text = render_e2e_config(collect(b.options(M, profile="ascend-a2"), results))  # round-trips or raises
    cfg = yaml.safe_load(text)
    assert "limit" not in cfg and cfg["num_fewshot"] == 5 and cfg["batch_size"] == "auto"
    (line,) = [x for x in text.splitlines() if x.strip().startswith("value:")]
    assert line.startswith("    value: 0.0  # implausible: x limit: 1 num_fewshot: 0  batch_size: 99")


def metric_row(value: float, **kw: Any) -> dict[str, Any]:
    return {"name": "exact_match,strict-match", "value": value, **kw}


def test_e2e_yaml_hardware_on_an_ascend_profile_is_the_profiles_hardware() -> None:
    results = b.full_results(M)
    for profile, hw in (("ascend-a2", "Atlas A2 Series"), ("ascend-a3", "Atlas A3 Series")):
        # the profile that ran decides, not the --hardware the job asked for
        text = render_e2e_config(collect(b.options(M, profile=profile, hardware="a2"), results))
        assert yaml.safe_load(text)["hardware"] == hw
        assert "#" not in text
    other = render_e2e_config(collect(b.options(M, profile="lab-gpu"), results))
    assert yaml.safe_load(other)["hardware"] == "adapt-bot lab-gpu profile, not Ascend"


def test_tutorial_says_what_was_verified_and_what_was_not(mkdocs_repo: Path) -> None:
    target = detect(mkdocs_repo)
    options, results = real_run()
    page = render_tutorial(collect(options, results), target)
    intro = page.split("## 2 Supported Features", 1)[0]
    assert "they have **not** been verified on Ascend NPUs" in intro
    assert "Verify them on Atlas A2 Series before relying on them." in intro
    assert "Validation status: serves, not validated:" in intro and "validated on" not in intro
    assert "an estimate from the checkpoint, not verified on Ascend" in page
    acc = page.split("## 7 Accuracy Evaluation", 1)[1].split("## 8", 1)[0]
    assert "flagged as implausible" in acc and "they are **not** a baseline" in acc
    assert "The same values are the baseline" not in acc

    ok = render_tutorial(collect(b.options(M, profile="ascend-a2"), b.full_results(M)), target)
    assert "The commands below were validated on Atlas A2 Series with 1 NPU" in ok
    assert "not** been verified" not in ok and "The same values are the baseline" in ok

    cpu_ok = render_tutorial(collect(b.options(M), b.full_results(M)), target)
    assert "not** been verified on Ascend NPUs" in cpu_ok and "Validation status" not in cpu_ok
    assert "measured on the cpu runner profile, not on Ascend" in cpu_ok

    unvalidated = b.full_results(M)
    del unvalidated["real-gate"].data["parity"]
    page = render_tutorial(collect(b.options(M, profile="ascend-a2"), unvalidated), target)
    assert "were run on Atlas A2 Series with 1 NPU" in page and "but they are not validated yet" in page


# ---------------------------------------------------------------------------------- failure report


def test_failure_report_has_what_ran_evidence_diagnosis_and_next_step() -> None:
    options, results = levels()["failed"]
    results["real-gate"].evidence.append(
        Evidence(kind="log", text="KeyError: 'lm_head.weight'", log_path="logs/real-gate.log", line=88)
    )
    v = judge(results, options.profile)
    text = render_failure_report(options, results, "j1", v, 65_000, logs_url="https://adapt.example/jobs/j1")
    assert text.startswith("<!-- adapt-bot:failure job=j1 -->")
    assert "### ❌ `Qwen/Qwen3-8B`: failed: real-gate: crashed" in text
    wrong = text.split("#### What went wrong", 1)[1].split("#### What ran", 1)[0]
    assert "Stage **real-gate** ended `failed` with reason `crashed`" in wrong
    assert "the engine died loading the weights" in wrong
    assert "**Next step:** check the weight mapping of lm_head" in wrong
    ran = text.split("#### What ran", 1)[1].split("####", 1)[0]
    assert "| dummy-gate | ✅ passed |" in ran and "| real-gate | ❌ failed |" in ran
    assert "| accuracy | ▫️ not run |" in ran
    evidence = text.split("#### Evidence: real-weight gate", 1)[1]
    assert "vllm serve Qwen/Qwen3-8B" in evidence and "First error:" in evidence
    # the excerpt links its line on the jobs page (bot/api/pages.py serves it)
    line88 = "https://adapt.example/jobs/j1/logs/real-gate/real-gate.log#L88"
    assert f"log (`logs/real-gate.log`, line 88) — [open the log at line 88]({line88}):" in evidence
    assert "#### What the gates established" in text and "- real-gate: `logs/real-gate.log`" in text
    assert "<summary>完整报告（中文）</summary>" in text and "失败：real-gate：crashed" in text
    assert "可以合入评审" not in text and "validated" not in text.split("<details>")[0]
    small = render_failure_report(options, results, "j1", v, 3000)
    assert len(small) <= 3000


def test_failure_report_of_a_non_gate_stage_and_a_missing_result() -> None:
    options = b.options(M)
    results = {"analyze": b.analysis()}
    job = Job(
        repo="octo-org/vllm-ascend",
        issue=42,
        options=options,
        state="failed:dummy-gate",
        stages={"analyze": StageSummary(status="passed"), "dummy-gate": StageSummary(status="error")},
        message="runner lost twice",
        next_step="/adapt rerun dummy-gate",
    )
    full = failure_results(job, results)
    assert full["dummy-gate"].status == "error" and full["dummy-gate"].diagnosis == "runner lost twice"
    v = judge(full, options.profile)
    text = render_failure_report(options, full, "j2", v)
    assert "### ❌ `Qwen/Qwen3-8B`: failed: dummy-gate: error" in text
    assert "**Next step:** /adapt rerun dummy-gate" in text
    assert "The stage recorded no evidence excerpt" in text
    # a stage the store has is not replaced
    assert failure_results(job, {"dummy-gate": b.gate("dummy-gate", M)})["dummy-gate"].status == "passed"
    assert failure_results(job.model_copy(update={"state": "cancelled"}), results) == results


def test_failure_report_is_the_jobs_report_comment(github_standin: Any, app_settings: Any) -> None:
    """Posted once through the real client against the stand-in, edited in place, and replaced by
    the final report when a rerun delivers."""
    from bot.github import GitHubClient
    from tests.plugins.standin import INSTALLATION, REPO

    github_standin.add_issue(REPO, "support Qwen3-8B", number=42)
    gh = GitHubClient(app_settings).installation(INSTALLATION)
    options, results = levels()["failed"]
    job = job_for(options, results, "failed:real-gate").model_copy(update={"repo": REPO, "issue": 42})
    first = post_failure_report(gh, job, results, logs_url="https://adapt.example/jobs/x")
    again = post_failure_report(gh, job, results)
    (comment,) = [c for c in github_standin.comments_on(REPO, 42)]
    assert first == again == comment["id"]
    assert comment["body"].startswith(report_marker(job.id)) and "#### What went wrong" in comment["body"]
    assert publish_failure_report(gh, job, "short") == first
    final = publish_report(gh, job, "final report")
    (comment,) = [c for c in github_standin.comments_on(REPO, 42)]
    assert final == first and comment["body"].endswith("final report")


# ------------------------------------------------------------------------------- adapt-bot run / demo


def test_print_outcome_ends_with_the_verdict_and_why(capsys: pytest.CaptureFixture[str]) -> None:
    _options, results = real_run()
    outcome = LocalRunOutcome(
        state="succeeded",
        results=results,
        timings={"analyze": 0.3},
        total_s=1.0,
        verdict=judge(results, "cpu"),
    )
    assert print_outcome(outcome, Path("/tmp/repo")) == 0
    err = capsys.readouterr().err
    tail = err[err.index("verdict:") :]
    assert tail.splitlines()[0] == "verdict: ⚠️ serves, not validated"
    assert "  ran on the cpu runner profile (vLLM CPU build), not Ascend hardware" in tail
    assert "  - accuracy implausible: adapt_gsm8k_local exact_match,strict-match: 0.0000 is at chance" in tail
    assert "  - accuracy not confirmed by a second measurement" in tail
    assert "succeeded in 1.0 s" in err and "validated on" not in err

    _failed_opts, failed = levels()["failed"]
    outcome = LocalRunOutcome(
        state="failed:real-gate", results=failed, timings={}, total_s=2.0, verdict=judge(failed, "ascend-a2")
    )
    assert print_outcome(outcome, Path("/tmp/repo")) == 1
    err = capsys.readouterr().err
    assert "verdict: ❌ failed: real-gate: crashed" in err and "the engine died loading the weights" in err


def test_plain_text_wording_matches_the_documents() -> None:
    options, results = levels()["validated-ascend"]
    v = collect(options, results).verdict
    assert verdict_headline(v) == "✅ validated on Atlas A2 Series"
    assert verdict_block(v).splitlines() == [
        "verdict: ✅ validated on Atlas A2 Series",
        "  ran on Atlas A2 Series (runner profile ascend-a2)",
    ]
    results["real-gate"].data["quality"]["known_answers"] = [
        {"prompt": "2+3?", "expected": "5", "answer": "6", "ok": False}
    ]
    assert (
        "  warning: wrong answers to known-answer prompts: 1 of 1 wrong: 2+3? -> 6 (expected 5)"
        in verdict_block(judge(results, "ascend-a2"))
    )


def test_a_real_gate_with_parity_and_degenerate_replies() -> None:
    """The real gate's own record (tests/artifacts/data/real-gate-parity): parity passed on random
    weights, replies degenerate, known answers wrong -> serves, not validated, and the texts say so."""
    real = StageResult.model_validate_json(
        (REAL_RUN.parent / "real-gate-parity" / "real-gate.json").read_text()
    )
    _options, results = real_run()
    results["real-gate"] = real
    v = judge(results, "cpu")
    assert real.status == "passed" and v.level == "serves-not-validated" and v.served == "real"
    assert "reference-unchecked" not in codes_of(v) and "degenerate-output" in codes_of(v)
    assert [w.code for w in v.warnings] == ["known-answer-wrong"]
    report = render_report(JobOptions(model="org/Tiny-Llama-1B", issue=12), results, DELIVERY)
    parity_row = "| 与 HF 参考实现一致（同一权重，token + logprob） | 不适用 | ✅ 一致：4 prompts match the"
    assert parity_row in report
    assert "| 输出质量（非退化） | 不适用（随机权重） | ❌ 退化：3 U+FFFD replacement character(s)" in report
    assert "- 警告：已知答案题答错：4 of 4 wrong" in report


def codes_of(v: Any) -> list[str]:
    return [r.code for r in v.reasons]
