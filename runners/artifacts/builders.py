"""Pure renderers for the human documents: report, runbook, PR title/body, final comment, check runs.

The report and runbook cite the commit, so the control plane renders them at delivery time from the
stored stage results plus `Delivery` (what was committed where). No I/O here.
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from runners.artifacts.facts import GateFacts, JobFacts, ServeFlags, collect, human_bytes, shell_join
from runners.artifacts.markdown import tidy
from runners.contracts import JobOptions, StageResult
from runners.links import SKILL_URL, log_url
from runners.render import render
from runners.verdict import Verdict

#: GitHub's limit for issue/PR comment and PR bodies (422 "Body is too long" above it)
COMMENT_LIMIT = 65_536
#: check-run `output.summary` / `output.text`
CHECK_RUN_TEXT_LIMIT = 65_535
#: the CI check of vllm-ascend accepts a title containing one of these (case-insensitive)
PR_TITLE_PREFIXES = (
    "[BugFix]",
    "[Performance]",
    "[Test]",
    "[CI]",
    "[Feature]",
    "[Doc]",
    "[Misc]",
    "[Community]",
    "[Refactor]",
)
_TITLE_RE = re.compile("|".join(re.escape(p) for p in PR_TITLE_PREFIXES), re.I)


@dataclass(frozen=True)
class Delivery:
    """Where the artifacts landed (filled in by local or GitHub delivery)."""

    commit_sha: str | None = None
    branch: str | None = None
    changed_files: Sequence[str] = ()
    pr_url: str | None = None
    draft: bool = False
    logs_url: str | None = None
    #: (name, path) of the logs worth opening first
    logs: Sequence[tuple[str, str]] = field(default_factory=tuple)


def facts_for(
    options: JobOptions,
    results: Mapping[str, StageResult],
    code_changes: Sequence[str] = (),
    code_rationale: str | None = None,
) -> JobFacts:
    return collect(options, results, code_changes=code_changes, code_rationale=code_rationale)


def key_logs(facts: JobFacts, results: Mapping[str, StageResult]) -> list[tuple[str, str]]:
    """The logs a reviewer opens first: each stage's serve/tool log."""
    out: list[tuple[str, str]] = []
    seen: set[str] = set()
    for stage, result in results.items():
        paths = [result.data.get("log_path")] + [e.log_path for e in result.evidence]
        for p in paths:
            if isinstance(p, str) and p and p not in seen:
                seen.add(p)
                out.append((stage, p))
    return out


def maintainer_lines(facts: JobFacts, flags: ServeFlags | None = None) -> tuple[str, ...]:
    """`vllm serve <hub id> ...` as a maintainer runs it (from `/workspace`, port 8000), one flag
    per line: the run's flags that matter to a deployment (the tutorial's, runners.artifacts.docs),
    never the runner's argv (its executable in a cache directory, the local checkpoint path,
    `--host 127.0.0.1`, a random port)."""
    from runners.artifacts.docs import _serve_lines

    serve = flags if flags is not None and flags.argv else facts.serve
    served = serve.value("--served-model-name") or facts.names.served_name
    return _serve_lines(serve, facts.names.hub_id or facts.names.ref, served)


def _serve_cmd(gate: GateFacts | None, facts: JobFacts) -> str:
    return " \\\n  ".join(maintainer_lines(facts, gate.serve if gate else None))


def delivery_from(commit: Any, workspace: Any = None) -> Delivery:
    """A Delivery from a LocalCommit / commit dict ({sha, branch, files}) and a Workspace (its logs)."""
    if commit is None:
        sha, branch, files = None, None, ()
    elif isinstance(commit, Mapping):
        sha, branch, files = commit.get("sha"), commit.get("branch"), tuple(commit.get("files") or ())
    else:
        sha, branch, files = (
            getattr(commit, "sha", None),
            getattr(commit, "branch", None),
            tuple(getattr(commit, "files", ()) or ()),
        )
    logs: tuple[tuple[str, str], ...] = ()
    logs_dir = getattr(workspace, "logs", None)
    if logs_dir is not None and logs_dir.is_dir():
        logs = tuple((p.stem, str(p)) for p in sorted(logs_dir.glob("*.log")))
    return Delivery(commit_sha=sha, branch=branch, changed_files=files, logs=logs)


def render_report(
    options: JobOptions,
    results: Mapping[str, StageResult],
    delivery: Delivery | None = None,
    *,
    commit: Any = None,
    workspace: Any = None,
    code_changes: Sequence[str] = (),
    code_rationale: str | None = None,
) -> str:
    """The Chinese adaptation report (report.zh.md).

    Pass either `delivery`, or `commit` (LocalCommit or {sha, branch, files}) + `workspace`.
    """
    facts = facts_for(options, results, code_changes, code_rationale)
    d = delivery or delivery_from(commit, workspace)
    return tidy(
        render(
            "artifacts/report.zh.md.j2",
            facts=facts,
            size=human_bytes(facts.analysis.parameter_bytes),
            shell=shell_join,
            changed_files=list(d.changed_files),
            logs=list(d.logs) or key_logs(facts, results),
            logs_url=d.logs_url,
            commit_sha=d.commit_sha,
            branch=d.branch,
        )
    )


def _with_flag(argv: Sequence[str], flag: str) -> list[str]:
    return list(argv) if flag in argv else [*argv, flag]


def render_runbook(
    options: JobOptions,
    results: Mapping[str, StageResult],
    delivery: Delivery | None = None,
    *,
    commit: Any = None,
) -> str:
    """The compact Chinese runbook (runbook.zh.md): start, OpenAI check, eager and dynamo fallbacks."""
    from runners.artifacts.docs import accuracy_command
    from runners.artifacts.e2e_config import PUBLISHED_ENV

    facts = facts_for(options, results)
    serve = facts.serve
    argv = [a for line in maintainer_lines(facts) for a in shlex.split(line)]
    served = serve.value("--served-model-name") or facts.names.served_name
    env_prefix = "".join(
        f"export {k}={shell_join([v])}\n"
        for k, v in serve.env
        if k != "TORCHDYNAMO_DISABLE" and PUBLISHED_ENV.match(k)
    )
    chat = json.dumps(
        {
            "model": served,
            "messages": [{"role": "user", "content": "say hi"}],
            "temperature": 0,
            "max_tokens": 16,
        },
        ensure_ascii=False,
    )
    image = json.dumps(
        {
            "model": served,
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "image_url", "image_url": {"url": "data:image/png;base64,<BASE64>"}},
                        {"type": "text", "text": "describe the image"},
                    ],
                }
            ],
            "max_tokens": 16,
        },
        ensure_ascii=False,
    )
    acc_cmd = accuracy_command(facts) if facts.accuracy.tasks else None
    d = delivery or delivery_from(commit)
    return tidy(
        render(
            "artifacts/runbook.zh.md.j2",
            facts=facts,
            serve_cmd=shell_join(argv),
            eager_cmd=shell_join(_with_flag(argv, "--enforce-eager")),
            env_prefix=env_prefix,
            chat_body=shell_join([chat]),
            image_body=shell_join([image]),
            accuracy_cmd=acc_cmd,
            commit_sha=d.commit_sha,
        )
    )


def pr_title(
    options: JobOptions, results: Mapping[str, StageResult], code_changes: Sequence[str] = ()
) -> str:
    title = render("artifacts/pr_title.txt.j2", facts=facts_for(options, results, code_changes)).strip()
    if not _TITLE_RE.search(title):  # the target repo's CI rejects anything else
        raise ValueError(f"PR title {title!r} lacks an accepted prefix {PR_TITLE_PREFIXES}")
    return title


def commit_message(
    options: JobOptions,
    results: Mapping[str, StageResult],
    *,
    analysis: Mapping[str, Any] | None = None,
    code_changes: Sequence[str] = (),
) -> str:
    """Commit message: the PR title, then what was validated (the sign-off is added at commit time)."""
    del analysis  # the analysis result is in `results`; accepted for callers that pass it separately
    facts = facts_for(options, results, code_changes)
    return tidy(
        render("artifacts/commit_message.txt.j2", title=pr_title(options, results, code_changes), facts=facts)
    )


def title_ok(title: str) -> bool:
    return bool(_TITLE_RE.search(title))


_FILE_NOTES = (
    ("tests/e2e/models/configs/", "e2e accuracy config; the baseline values were measured in this run"),
    ("docs/source/tutorials/models/index.md", "registers the tutorial in the docs toctree"),
    (
        "docs/source/tutorials/models/",
        "deployment tutorial (features, serve command, verification, accuracy)",
    ),
    ("mkdocs.yml", "registers the tutorial in the docs navigation"),
    (".github/workflows/configs/nightly_config.yaml", "runs the accuracy config in CI"),
    (".github/workflows/misc/model_dataset_list.json", "lets CI pre-download the model"),
)


def _file_note(path: str, code: Sequence[str]) -> str:
    if path in code:
        return "code change for this model"
    for prefix, note in _FILE_NOTES:
        if path == prefix or (prefix.endswith("/") and path.startswith(prefix)):
            return note
    return "changed"


def pr_body(
    options: JobOptions,
    results: Mapping[str, StageResult],
    *,
    job_id: str,
    files: Sequence[str],
    code_changes: Sequence[str] = (),
    code_rationale: str | None = None,
    report_url: str | None = None,
) -> str:
    from runners.artifacts.e2e_config import config_path

    facts = facts_for(options, results, code_changes, code_rationale)
    body = tidy(
        render(
            "artifacts/pr_body.md.j2",
            facts=facts,
            job_id=job_id,
            issue=options.issue,
            file_notes=[(p, _file_note(p, code_changes)) for p in files],
            serve_cmd=_serve_cmd(facts.real_gate, facts),
            e2e_config=config_path(facts),
            report_url=report_url,
        )
    )
    return fit(body, COMMENT_LIMIT, report_url)


def render_final_comment(
    options: JobOptions,
    results: Mapping[str, StageResult],
    delivery: Delivery,
    *,
    job_id: str,
    code_changes: Sequence[str] = (),
    code_rationale: str | None = None,
    limit: int = COMMENT_LIMIT,
) -> str:
    """The issue's final comment; the report goes in <details>, clipped so the whole fits `limit`."""
    facts = facts_for(options, results, code_changes, code_rationale)
    report = render_report(
        options, results, delivery, code_changes=code_changes, code_rationale=code_rationale
    )
    runbook = render_runbook(options, results, delivery)

    def build(rep: str) -> str:
        return tidy(
            render(
                "artifacts/final_comment.md.j2",
                runbook=runbook,
                skill_url=SKILL_URL,
                facts=facts,
                job_id=job_id,
                pr_url=delivery.pr_url,
                draft=delivery.draft,
                commit_sha=delivery.commit_sha,
                branch=delivery.branch,
                report=rep,
                logs_url=delivery.logs_url,
            )
        )

    return _with_report(build, report, limit, delivery.logs_url)


def _with_report(build: Any, report: str, limit: int, link: str | None) -> str:
    """`build(report)`, with the report clipped (fences closed, a note saying where the rest is)
    so that the whole comment fits `limit`."""
    text = str(build(report))
    if len(text) <= limit:
        return text
    overhead = len(text) - len(report)
    note = "\n\n…（报告过长已截断" + (f"，完整报告见 {link}" if link else "") + "）\n"
    budget = max(0, limit - overhead - len(note) - 16)
    text = str(build(close_fences(report[:budget]) + note))
    return fit(text, limit, link)


def stage_rows(results: Mapping[str, StageResult]) -> list[dict[str, Any]]:
    """Every stage of the pipeline in order: what ran, how it ended, how long it took."""
    from runners.verdict import ORDER

    rows: list[dict[str, Any]] = []
    for stage in (*ORDER, *(s for s in results if s not in ORDER)):
        r = results.get(stage)
        rows.append(
            {
                "stage": stage,
                "status": r.status if r else "not run",
                "seconds": r.duration_s if r else None,
                "reason": (r.reason or "") if r else "",
                "attempt": r.attempt if r else None,
            }
        )
    return rows


def render_failure_report(
    options: JobOptions,
    results: Mapping[str, StageResult],
    job_id: str,
    verdict: Verdict,
    limit: int = COMMENT_LIMIT,
    *,
    logs_url: str | None = None,
) -> str:
    """The issue comment of a failed job: what ran, the failed stage's evidence, diagnosis and next
    step, what the earlier stages established, and the Chinese report in <details>; within `limit`.

    `results` must hold a result for the failed stage (bot.comments.failure_results adds one from
    the job's summary when the store has none)."""
    facts = facts_for(options, results)
    failed = results.get(verdict.failed_stage) if verdict.failed_stage else None
    gate = next((g for g in facts.gates if g.stage == verdict.failed_stage), None)
    report = render_report(options, results, Delivery(logs_url=logs_url))

    def build(rep: str) -> str:
        return tidy(
            render(
                "artifacts/failure_report.md.j2",
                facts=facts,
                v=verdict,
                job_id=job_id,
                failed=failed,
                gate=gate,
                rows=stage_rows(results),
                logs=key_logs(facts, results),
                logs_url=logs_url,
                log_url=log_url,
                shell=shell_join,
                report=rep,
            )
        )

    return _with_report(build, report, limit, logs_url)


def close_fences(markdown: str) -> str:
    """Close a code fence left open by truncation, so the rest of the comment still renders."""
    fence: str | None = None
    for line in markdown.splitlines():
        m = re.match(r"^(`{3,}|~{3,})", line.strip())
        if not m:
            continue
        if fence is None:
            fence = m.group(1)
        elif m.group(1).startswith(fence) and line.strip() == m.group(1):
            fence = None
    return markdown + (f"\n{fence}\n" if fence else "")


def fit(text: str, limit: int, link: str | None = None) -> str:
    """Hard cap for anything GitHub stores (comment, body, check-run text): cut and say where the rest is."""
    if len(text) <= limit:
        return text
    note = "\n\n…(truncated" + (f"; full text: {link}" if link else "") + ")\n"
    return close_fences(text[: max(0, limit - len(note) - 16)]) + note


def check_run_output(gate: GateFacts, *, logs_url: str | None = None) -> dict[str, str]:
    """`output` of a gate's check run (title + summary within GitHub's limits)."""
    summary = tidy(render("artifacts/check_run.md.j2", gate=gate, shell=shell_join, logs_url=logs_url))
    title = {"passed": "passed", "not run": "not run"}.get(
        gate.status, f"{gate.status}: {gate.reason or ''}".strip()
    )
    name = "Dummy-weight gate" if gate.weights == "dummy" else "Real-weight gate"
    return {"title": f"{name} {title}"[:1000], "summary": fit(summary, CHECK_RUN_TEXT_LIMIT, logs_url)}
