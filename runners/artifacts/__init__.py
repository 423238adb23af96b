"""Artifacts a maintainer reviews: e2e config, tutorial + docs registration, CI list entries, the Chinese
report and runbook, PR title/body, the final issue comment and check-run text.

Public API (pure; the stages and delivery do the I/O):
    collect(options, results) -> JobFacts                   runners.artifacts.facts
    build_e2e_config / render_e2e_config(facts)             runners.artifacts.e2e_config
    detect(root) -> TargetRepo; register_* (text edits)     runners.artifacts.target
    render_tutorial(facts, target)                          runners.artifacts.docs
    render_report, render_runbook, render_final_comment,
    render_failure_report, pr_title, pr_body,
    check_run_output, fit                                   runners.artifacts.builders
    verdict_headline, verdict_block (plain-text wording)    runners.artifacts.wording
The verdict itself (validated / serves-not-validated / failed) is runners.verdict.judge.
"""

from runners.artifacts.builders import (
    COMMENT_LIMIT,
    PR_TITLE_PREFIXES,
    Delivery,
    check_run_output,
    commit_message,
    delivery_from,
    fit,
    pr_body,
    pr_title,
    render_failure_report,
    render_final_comment,
    render_report,
    render_runbook,
    title_ok,
)
from runners.artifacts.facts import JobFacts, branch_name, collect, model_names

__all__ = [
    "COMMENT_LIMIT",
    "PR_TITLE_PREFIXES",
    "Delivery",
    "JobFacts",
    "branch_name",
    "check_run_output",
    "collect",
    "commit_message",
    "delivery_from",
    "fit",
    "model_names",
    "pr_body",
    "pr_title",
    "render_failure_report",
    "render_final_comment",
    "render_report",
    "render_runbook",
    "title_ok",
]
