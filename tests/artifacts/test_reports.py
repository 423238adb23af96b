"""Report, runbook, PR title/body, final comment, check-run text: structure, limits, hostile text."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

from runners.artifacts import (
    COMMENT_LIMIT,
    Delivery,
    check_run_output,
    collect,
    commit_message,
    delivery_from,
    fit,
    pr_body,
    pr_title,
    render_final_comment,
    render_report,
    render_runbook,
    title_ok,
)
from runners.artifacts.builders import CHECK_RUN_TEXT_LIMIT, close_fences
from runners.artifacts.docs import headings
from runners.contracts import Evidence, StageResult
from runners.delivery_local import LocalCommit
from tests.artifacts import builders as b

REPORT_SECTIONS = [
    "## 模型架构概述",
    "## 不兼容根因",
    "## 代码改动与理由",
    "## 启动与推理验证证据",
    "## 特性状态矩阵",
    "## 最大长度（理论 vs 实际）",
    "## dummy 与真实权重验证矩阵",
    "## false-ready 案例",
    "## 回退阶梯证据",
    "## 变更文件列表",
    "## 关键日志路径",
    "## 提交哈希",
]

DELIVERY = Delivery(
    commit_sha="0123456789abcdef0123456789abcdef01234567",
    branch="adapt/qwen3-8b-42",
    changed_files=["tests/e2e/models/configs/Qwen3-8B.yaml", "docs/source/tutorials/models/Qwen3-8B.md"],
    pr_url="https://github.com/vllm-project/vllm-ascend/pull/9",
    logs_url="https://adapt.example/jobs/j1",
)


def test_report_has_every_section_the_workflow_demands_in_order() -> None:
    report = render_report(b.options(), b.full_results(), DELIVERY)
    h2 = [h for h in headings(report) if h.startswith("## ")]
    assert h2 == REPORT_SECTIONS
    assert "0123456789abcdef0123456789abcdef01234567" in report.split("## 提交哈希", 1)[1]
    assert "`tests/e2e/models/configs/Qwen3-8B.yaml`" in report.split("## 变更文件列表", 1)[1]
    assert "不等价" in report.split("## dummy 与真实权重验证矩阵", 1)[1]
    assert "| 实际可用最大长度（能启动且能服务） | 32768 |" in report
    assert "| ACLGraph | ✅ supported and verified |" in report


def test_report_accepts_the_lead_callers_commit_and_workspace(tmp_path) -> None:
    from runners.workspace import Workspace

    ws = Workspace.for_job("job-1", tmp_path)
    (ws.logs / "real-gate.log").write_text("x")
    commit = LocalCommit(sha="f" * 40, branch="adapt/x-1", base="e" * 40, files=("a.md",))
    report = render_report(b.options(), b.full_results(), commit=commit, workspace=ws)
    assert "f" * 40 in report and str(ws.logs / "real-gate.log") in report
    as_dict = render_report(
        b.options(), b.full_results(), commit={"sha": "a" * 40, "branch": "b", "files": []}
    )
    assert "a" * 40 in as_dict
    assert delivery_from(None).commit_sha is None


def test_report_when_things_went_wrong_says_so() -> None:
    results = b.full_results()
    results["real-gate"] = b.gate(
        "real-gate",
        "Qwen/Qwen3-8B",
        status="failed",
        first_error="RuntimeError: Unsupported CPU attention configuration: head_dim=16",
        ladder=[
            {"step": "reproduce", "flags": "", "status": "failed", "signature": "head_dim=16"},
            {"step": "eager", "flags": ["--enforce-eager"], "status": "failed", "signature": "head_dim=16"},
            {"step": "dynamo-off", "env": {"TORCHDYNAMO_DISABLE": "1"}, "status": "failed"},
        ],
    )
    results["real-gate"].reason = "false-ready"
    results["real-gate"].diagnosis = "ready, then the first chat request killed the engine"
    results["analyze"] = b.analysis(
        problems=["model.layers.0.mlp.weight is F8_E4M3 without weight_scale_inv"]
    )
    report = render_report(b.options(), results, DELIVERY)
    assert "- 结论：**失败：real-gate：false-ready，不能签收**" in report
    assert "可以合入评审" not in report
    fr = report.split("## false-ready 案例", 1)[1].split("## ", 1)[0]
    assert "head_dim=16" in fr
    ladder = report.split("## 回退阶梯证据", 1)[1].split("## ", 1)[0]
    assert "| real-gate | eager | --enforce-eager | failed |" in ladder
    assert "TORCHDYNAMO_DISABLE=1" in ladder
    causes = report.split("## 不兼容根因", 1)[1].split("## ", 1)[0]
    assert "weight_scale_inv" in causes and "first chat request killed the engine" in causes


def test_report_survives_missing_stages() -> None:
    report = render_report(b.options(), {"analyze": StageResult(stage="analyze", status="passed")})
    assert [h for h in headings(report) if h.startswith("## ")] == REPORT_SECTIONS
    assert "未运行" in report and "尚未提交" in report


def test_runbook_has_start_check_and_both_fallbacks() -> None:
    results = b.full_results()
    results["real-gate"].data["env"] = {"HCCL_OP_EXPANSION_MODE": "AIV"}
    runbook = render_runbook(b.options(), results, DELIVERY)
    h2 = [h for h in headings(runbook) if h.startswith("## ")]
    assert h2[:4] == [
        "## 1. 启动服务",
        "## 2. OpenAI 接口验证",
        "## 3. 回退：eager 模式",
        "## 4. 回退：关闭 TorchDynamo",
    ]
    start = runbook.split("## 1. 启动服务", 1)[1].split("## 2.", 1)[0]
    assert "export HCCL_OP_EXPANSION_MODE=AIV\nvllm serve Qwen/Qwen3-8B" in start
    assert "--enforce-eager" not in start
    assert "--enforce-eager" in runbook.split("## 3.", 1)[1].split("## 4.", 1)[0]
    assert "export TORCHDYNAMO_DISABLE=1" in runbook.split("## 4.", 1)[1]
    assert "/v1/chat/completions" in runbook and "/v1/models" in runbook
    assert "0123456789ab" in runbook


def test_pr_title_has_an_accepted_prefix() -> None:
    docs_only = pr_title(b.options(), b.full_results())
    with_code = pr_title(b.options(), b.full_results(), code_changes=["vllm_ascend/models/foo.py"])
    for title in (docs_only, with_code):
        assert title_ok(title), title
        assert "\n" not in title and len(title) < 120
    assert with_code.startswith("[Feature]")
    assert not title_ok("[Model] Add Foo") and title_ok("[doc] lower case is fine")


def test_pr_body_has_the_three_template_sections_and_links_the_issue() -> None:
    body = pr_body(
        b.options(),
        b.full_results(),
        job_id="j1",
        files=["tests/e2e/models/configs/Qwen3-8B.yaml", "mkdocs.yml"],
        report_url="https://adapt.example/jobs/j1",
    )
    h3 = [h for h in headings(body) if h.startswith("### ")]
    assert h3 == [
        "### What this PR does / why we need it?",
        "### Does this PR introduce _any_ user-facing change?",
        "### How was this patch tested?",
    ]
    what = body.split("### Does this PR", 1)[0]
    assert re.search(r"^Fixes #42$", what, re.M)
    assert "<!-- adapt-bot:pr job=j1 -->" in body
    assert "| Real-weight gate (start, `GET /v1/models`, chat request) | passed" in body


def test_pr_body_warns_while_the_real_gate_has_not_passed() -> None:
    results = b.full_results()
    results["real-gate"] = b.gate("real-gate", "Qwen/Qwen3-8B", status="failed")
    body = pr_body(b.options(), results, job_id="j1", files=[])
    assert "stays a draft" in body


def test_commit_message_starts_with_the_title_and_cannot_forge_trailers() -> None:
    results = b.full_results()
    results["real-gate"].reason = "x\nSigned-off-by: Mallory <m@evil>"
    msg = commit_message(b.options(), results)
    assert msg.splitlines()[0] == pr_title(b.options(), results)
    assert not any(line.startswith("Signed-off-by:") for line in msg.splitlines())
    assert "Fixes #42" in msg


def outside_fences(markdown: str) -> str:
    """The text a Markdown renderer interprets (fenced code is shown literally)."""
    out, fence = [], None
    for line in markdown.splitlines():
        m = re.match(r"^\s*(`{3,}|~{3,})", line)
        if fence is None and m:
            fence = m.group(1)
            continue
        if fence is not None:
            if (
                m
                and m.group(1)[0] == fence[0]
                and len(m.group(1)) >= len(fence)
                and line.strip() == m.group(1)
            ):
                fence = None
            continue
        out.append(line)
    return "\n".join(out)


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []

    def handle_starttag(self, tag: str, attrs: object) -> None:
        self.tags.append(tag)

    def handle_endtag(self, tag: str) -> None:
        self.tags.append("/" + tag)


def test_final_comment_has_matrices_and_the_report_collapsed() -> None:
    comment = render_final_comment(b.options(), b.full_results(), DELIVERY, job_id="j1")
    assert comment.startswith("<!-- adapt-bot:final job=j1 -->")
    assert "#### Feature matrix" in comment and "#### Dummy vs real weights" in comment
    assert DELIVERY.pr_url in comment and DELIVERY.logs_url in comment
    parser = _Tags()
    parser.feed(comment)
    assert parser.tags == ["details", "summary", "/summary", "/details"] * 2  # the report, the runbook
    inside = comment.split("</summary>", 1)[1].split("</details>", 1)[0]
    assert "## 提交哈希" in inside
    runbook = comment.split("<summary>运行手册（中文）</summary>", 1)[1].split("</details>", 1)[0]
    assert "vllm serve" in runbook
    for anchor in ("#report", "#runbook", "#logs"):
        assert DELIVERY.logs_url + anchor in comment


HOSTILE = (
    "boom | pipe `tick` ``` fence </details><script>alert(1)</script> {{ evil }} @maintainer #1\n"
    "## fake heading\n" + "A" * 200_000
)


def _hostile_results() -> dict[str, StageResult]:
    results = b.full_results()
    gate = results["real-gate"]
    gate.status = "failed"
    gate.reason = "crashed"
    gate.diagnosis = HOSTILE
    gate.evidence = [Evidence(kind="log", text=HOSTILE, log_path="logs/real-gate.log")] * 30
    gate.data["smoke"] = {"response": HOSTILE}
    results["features"].data["matrix"]["aclgraph"]["reason"] = HOSTILE
    results["features"].data["matrix"]["aclgraph"]["evidence"] = [{"kind": "log", "text": HOSTILE}]
    results["analyze"] = b.analysis(architecture=HOSTILE, problems=[HOSTILE] * 50)
    return results


def test_final_comment_stays_under_githubs_limit_with_huge_hostile_logs() -> None:
    comment = render_final_comment(b.options(), _hostile_results(), DELIVERY, job_id="j1")
    assert len(comment) <= COMMENT_LIMIT
    visible = outside_fences(comment)
    assert "<script>" not in visible
    parser = _Tags()
    parser.feed(visible)
    # hostile </details> neutralised: the report and the runbook are the only collapsed blocks
    assert parser.tags == ["details", "summary", "/summary", "/details"] * 2
    assert "报告过长已截断" in comment and DELIVERY.logs_url in comment
    assert "@maintainer" not in visible  # no pings from log text
    # every table row keeps its column count
    for line in comment.splitlines():
        if line.startswith("| ACLGraph"):
            assert len(re.findall(r"(?<!\\)\|", line)) == 4


def test_final_comment_limit_is_a_parameter() -> None:
    comment = render_final_comment(b.options(), _hostile_results(), DELIVERY, job_id="j1", limit=20_000)
    assert len(comment) <= 20_000


def test_hostile_text_cannot_add_headings_or_escape_tables_in_the_report() -> None:
    report = render_report(b.options(), _hostile_results(), DELIVERY)
    assert [h for h in headings(report) if h.startswith("## ")] == REPORT_SECTIONS
    visible = outside_fences(report)
    assert "<script>" not in visible and "\n## fake heading" not in visible


def test_pr_body_and_check_run_with_hostile_text_stay_within_limits() -> None:
    results = _hostile_results()
    body = pr_body(b.options(), results, job_id="j1", files=["x"], code_rationale=HOSTILE)
    assert len(body) <= COMMENT_LIMIT and "<script>" not in outside_fences(body)
    gate = collect(b.options(), results).real_gate
    assert gate is not None
    out = check_run_output(gate, logs_url="https://adapt.example/jobs/j1")
    assert len(out["summary"]) <= CHECK_RUN_TEXT_LIMIT and "<script>" not in outside_fences(out["summary"])
    assert out["title"].startswith("Real-weight gate failed")


@pytest.mark.parametrize("limit", [100, 1000, 65_536])
def test_fit_cuts_and_closes_an_open_fence(limit: int) -> None:
    text = "intro\n```\n" + "line\n" * 50_000
    out = fit(text, limit, "https://x/logs")
    assert len(out) <= limit
    assert out.count("```") % 2 == 0
    assert "https://x/logs" in out
    assert fit("short", limit) == "short"


def test_close_fences_leaves_closed_fences_alone() -> None:
    assert close_fences("a\n```\nb\n```\n") == "a\n```\nb\n```\n"
    assert close_fences("a\n````\nb\n```\n").endswith("\n````\n")


REAL_RUN = Path(__file__).resolve().parent / "data" / "real-run"


def _real_results() -> dict[str, StageResult]:
    return {
        p.stem: StageResult.model_validate_json(p.read_text(encoding="utf-8"))
        for p in sorted(REAL_RUN.glob("*.json"))
    }


def test_documents_from_the_results_of_a_real_run() -> None:
    """The stages' real output (key names and all) renders into complete documents."""
    from runners.contracts import JobOptions

    results = _real_results()
    assert set(results) == {"analyze", "dummy-gate", "real-gate", "features", "capacity", "accuracy"}
    options = JobOptions(model="org/Tiny-Llama-1B", issue=12)
    facts = collect(options, results)
    assert facts.real_gate_passed and facts.real_gate is not None
    assert facts.real_gate.ready_s is not None and facts.real_gate.smoke_response
    assert facts.capacity.practical_max_len == 512 and facts.capacity.successes == 4
    assert facts.capacity.requests == 4 and facts.capacity.ttft_ms and facts.capacity.throughput_tok_s
    # every feature the recorded matrix has is reported as it ran; a feature the catalog added
    # since (sequence_parallel) is honestly "not run" for that older run
    recorded = set(results["features"].data["features"])
    assert recorded and all(f.status != "not run" for f in facts.features if f.key in recorded)
    assert {f.key for f in facts.features if f.status == "not run"} <= {"sequence_parallel"}
    assert facts.accuracy.tasks and facts.accuracy.task_source == "local"
    report = render_report(options, results, DELIVERY)
    assert [h for h in headings(report) if h.startswith("## ")] == REPORT_SECTIONS
    assert "| 成功请求 | 4/4 |" in report and "离线本地任务" in report
    assert "LlamaForCausalLM" in report
    runbook = render_runbook(options, results, DELIVERY)
    assert "--max-model-len" in runbook and "lm_eval" in runbook
    comment = render_final_comment(options, results, DELIVERY, job_id="local-1")
    assert len(comment) <= COMMENT_LIMIT and "adapt_gsm8k_local" in comment
    body = pr_body(options, results, job_id="local-1", files=["mkdocs.yml"])
    assert (
        "Fixes #12" in body
        and "| Real-weight gate (start, `GET /v1/models`, chat request) | passed, ready in" in body
    )
