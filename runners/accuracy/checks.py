"""Judgements on measured metrics: reproducible (two measurements agree) and plausible (not chance).

Reproducibility uses the target CI's own rule (`np.isclose(a, round(b, 4), rtol=0.05)`): a baseline
that our own second measurement would fail is a baseline CI would fail too, so it is not committed.

Plausibility: a metric at chance level is not a baseline, it is a broken model (or a broken harness).
Chance per task family: generated answers (gsm8k exact_match) ~ 0; multiple choice 1/num_choices.
A metric counts as at chance when value <= chance + max(2 * stderr, CHANCE_MARGIN). Far below a
reference (the model card's score, when one is given) means below REFERENCE_FRACTION of it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from runners.accuracy.ci import ci_passes
from runners.render import render

CHANCE_MARGIN = 0.02
REFERENCE_FRACTION = 0.5

#: (task name prefix, metric name) -> chance score. First match wins; metric None = any metric.
CHANCE: tuple[tuple[str, str | None, float, str], ...] = (
    ("gsm8k", "exact_match", 0.0, "free-form numeric answer"),
    ("adapt_gsm8k_local", "exact_match", 0.0, "free-form numeric answer"),
    ("ceval", "acc", 0.25, "4 choices"),
    ("cmmlu", "acc", 0.25, "4 choices"),
    ("mmlu", "acc", 0.25, "4 choices"),
    ("arc_", "acc", 0.25, "4 choices"),
    ("hellaswag", "acc", 0.25, "4 choices"),
    ("gpqa", "acc", 0.25, "4 choices"),
    ("mmmu", "acc", 0.22, "mostly 4-5 choices plus open questions (random-choice baseline 22%)"),
    ("piqa", "acc", 0.5, "2 choices"),
    ("winogrande", "acc", 0.5, "2 choices"),
    ("boolq", "acc", 0.5, "yes/no"),
)


def chance_level(task: str, metric: str) -> tuple[float, str] | None:
    base = metric.split(",", 1)[0]
    for prefix, name, value, why in CHANCE:
        if task.startswith(prefix) and (name is None or base == name or base.startswith(name + "_")):
            return value, why
    return None


def judge_metric(
    task: str,
    metric: str,
    value: float,
    stderr: float | None,
    reference: float | None = None,
    source: str | None = None,
) -> dict[str, Any]:
    """One metric's plausibility: {"implausible", "why", "chance", "reference", "reference_source"}."""
    reasons: list[str] = []
    chance = chance_level(task, metric)
    if chance is not None:
        level, basis = chance
        margin = max(2 * stderr, CHANCE_MARGIN) if stderr is not None else CHANCE_MARGIN
        if value <= level + margin:
            reasons.append(f"{value:.4f} is at chance level ({level:.2f}: {basis})")
    elif value == 0.0:
        reasons.append("0.0: no document scored")
    if reference is not None and value < REFERENCE_FRACTION * reference:
        named = render("artifacts/reference_source.txt.j2", reference=reference, source=source).strip()
        reasons.append(f"{value:.4f} is far below {named}")
    return {
        "implausible": bool(reasons),
        "why": "; ".join(reasons) or None,
        "chance": chance[0] if chance else None,
        "reference": reference,
        "reference_source": source if reference is not None else None,
    }


def plausibility(
    tasks: Sequence[Mapping[str, Any]],
    references: Mapping[tuple[str, str], float] | None = None,
    sources: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Every metric judged; `implausible` is true when any metric is. `sources`: {task: where its
    reference came from} ("issue", "model card", "transformers"), named in the flag's wording."""
    refs = references or {}
    where = sources or {}
    rows = []
    for task in tasks:
        # a task-level reference (metric "*": the model card did not say which) judges the best metric
        best = max(task["metrics"], key=lambda m: m["value"], default=None)
        for m in task["metrics"]:
            ref = refs.get((task["name"], m["name"]))
            if ref is None and m is best:
                ref = refs.get((task["name"], "*"))
            verdict = judge_metric(
                task["name"], m["name"], m["value"], m.get("stderr"), ref, where.get(task["name"])
            )
            rows.append({"task": task["name"], "metric": m["name"], "value": m["value"], **verdict})
    why = [f"{r['task']} {r['metric']}: {r['why']}" for r in rows if r["implausible"]]
    return {"implausible": bool(why), "why": "; ".join(why) or None, "metrics": rows}


def compare_tasks(
    first: Sequence[Mapping[str, Any]], second: Sequence[Mapping[str, Any]]
) -> list[dict[str, Any]]:
    """Pairs of the same task/metric from two full measurements, each judged by CI's rule."""
    other = {(t["name"], m["name"]): m["value"] for t in second for m in t["metrics"]}
    pairs = []
    for t in first:
        for m in t["metrics"]:
            b = other.get((t["name"], m["name"]))
            pairs.append(
                {
                    "task": t["name"],
                    "metric": m["name"],
                    "first": m["value"],
                    "second": b,
                    "agree": b is not None and ci_passes(m["value"], b),
                }
            )
    return pairs


def compare_doc_scores(
    first: Mapping[tuple[str, str], Mapping[int, float]],
    second: Mapping[tuple[str, str], Mapping[int, float]],
) -> list[dict[str, Any]]:
    """Repeat check: the first run's mean on the documents the repeat saw vs the repeat's mean."""
    pairs: list[dict[str, Any]] = []
    for key, rep in sorted(second.items()):
        base = first.get(key, {})
        docs = sorted(set(rep) & set(base))
        if not docs:
            pairs.append(
                {"task": key[0], "metric": key[1], "first": None, "second": None, "docs": 0, "agree": False}
            )
            continue
        a = sum(base[d] for d in docs) / len(docs)
        b = sum(rep[d] for d in docs) / len(docs)
        pairs.append(
            {
                "task": key[0],
                "metric": key[1],
                "first": a,
                "second": b,
                "docs": len(docs),
                "agree": ci_passes(a, b),
            }
        )
    return pairs


def reproducible(pairs: Iterable[Mapping[str, Any]]) -> bool:
    pairs = list(pairs)
    return bool(pairs) and all(p["agree"] for p in pairs)
