"""Issue 10 in the report: the gates' load findings are listed (not only kept in the stage data),
and the remote-code row says what serving NEEDS, not whether the repository ships code."""

from __future__ import annotations

from runners.artifacts.builders import render_report
from tests.artifacts import builders as b

COMMIT = {"sha": "0" * 40, "branch": "adapt/x-1", "files": []}


def _section(report: str, title: str) -> str:
    return report.split(title, 1)[1].split("\n## ", 1)[0]


def test_load_findings_of_each_gate_are_listed_with_their_log_line() -> None:
    results = b.full_results()
    results["real-gate"].data["load_findings"] = [
        {"kind": "dtype-downcast", "text": "Downcasting torch.float32 to torch.bfloat16.", "line": 12},
        {"kind": "missing-keys", "text": "Missing keys: model.layers.0.mlp.gate.weight | x", "line": 40},
    ]
    section = _section(render_report(b.options(), results, commit=COMMIT), "### 加载告警")
    assert "| real-gate | `dtype-downcast` | 12 | Downcasting torch.float32 to torch.bfloat16. |" in section
    assert "model.layers.0.mlp.gate.weight \\| x" in section  # a pipe in log text stays in its cell
    assert "dummy-gate |" not in section


def test_no_findings_says_so() -> None:
    section = _section(render_report(b.options(), b.full_results(), commit=COMMIT), "### 加载告警")
    assert section.split("\n", 1)[1].strip().startswith("无：")


def test_remote_code_row_follows_what_serving_needs() -> None:
    def row(**analysis: object) -> str:
        results = b.full_results()
        results["analyze"] = b.analysis(**analysis)
        report = render_report(b.options(), results, commit=COMMIT)
        return next(ln for ln in report.splitlines() if ln.startswith("| 远程代码 |"))

    # ships an auto_map, but vLLM serves the architecture natively: no --trust-remote-code needed
    assert "否" in row(remote_code=True, remote_code_required=False)
    assert "--trust-remote-code" in row(remote_code=True, remote_code_required=True)
    assert "--trust-remote-code" in row(remote_code=True)  # an older result without the field
