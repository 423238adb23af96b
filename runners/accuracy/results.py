"""lm-eval output files -> metrics with stderr, and per-document scores for the repeat check.

Results JSON (`results_<time>.json`, or `results_ci.json` from ci_evaluate.py): `results[task]` holds
`<metric>,<filter>` values and `<metric>_stderr,<filter>` standard errors; lm-eval writes the string
"N/A" for a stderr it could not compute (e.g. one document). Samples (`samples_<task>_<time>.jsonl`,
one line per document and filter) hold `doc_id`, `filter` and the per-document score under the
metric's name.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

_METRIC_KEY = re.compile(r"^(?P<metric>[A-Za-z0-9_]+),(?P<filter>[A-Za-z0-9_.-]+)$")
_SAMPLES = re.compile(r"^samples_(?P<task>.+?)(?:_\d{4}-\d\d-\d\dT[\d.\-]+)?\.jsonl$")


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def parse_results(doc: Mapping[str, Any], tasks: Sequence[str]) -> list[dict[str, Any]]:
    """lm-eval's results JSON -> [{name, metrics: [{name, value, stderr}]}] in e2e-config form."""
    out: list[dict[str, Any]] = []
    results = doc.get("results") or {}
    for task in tasks:
        entry = results.get(task)
        if not isinstance(entry, Mapping):
            continue
        metrics = []
        for key, value in entry.items():
            m = _METRIC_KEY.match(str(key))
            if not m or m.group("metric").endswith("_stderr") or _number(value) is None:
                continue
            stderr = _number(entry.get(f"{m.group('metric')}_stderr,{m.group('filter')}"))
            metrics.append({"name": key, "value": float(value), "stderr": stderr})
        if metrics:
            out.append({"name": task, "metrics": metrics})
    return out


def find_results_file(output: Path) -> Path | None:
    found = sorted(output.rglob("results_*.json"), key=lambda p: p.stat().st_mtime)
    return found[-1] if found else None


def read_doc_scores(output: Path) -> dict[tuple[str, str], dict[int, float]]:
    """{(samples task, "metric,filter"): {doc_id: score}} from every samples file under `output`."""
    scores: dict[tuple[str, str], dict[int, float]] = {}
    for path in sorted(output.rglob("samples_*.jsonl")):
        m = _SAMPLES.match(path.name)
        if not m:
            continue
        task = m.group("task")
        for line in path.read_text(encoding="utf-8").splitlines():
            if not line.strip():
                continue
            row = json.loads(line)
            doc_id, filt = row.get("doc_id"), row.get("filter", "none")
            if not isinstance(doc_id, int):
                continue
            for metric in row.get("metrics") or []:
                value = _number(row.get(metric))
                if value is not None:
                    scores.setdefault((task, f"{metric},{filt}"), {})[doc_id] = value
    return scores


def responses(output: Path) -> dict[tuple[str, int], str]:
    """{(samples task, doc_id): first raw response} - to count identical generations across runs."""
    out: dict[tuple[str, int], str] = {}
    for path in sorted(output.rglob("samples_*.jsonl")):
        m = _SAMPLES.match(path.name)
        if not m:
            continue
        for line in path.read_text(encoding="utf-8").splitlines():
            if not line.strip():
                continue
            row = json.loads(line)
            resps = row.get("resps")
            while isinstance(resps, list) and resps:
                resps = resps[0]
            if isinstance(row.get("doc_id"), int) and isinstance(resps, str):
                out[(m.group("task"), row["doc_id"])] = resps
    return out
