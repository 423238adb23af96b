"""Published scores read from a hub model card (README.md), for the plausibility check.

The card's YAML front matter may carry `model-index: [{results: [{dataset: {type, name, config},
metrics: [{type, value}]}]}]` (the Open LLM Leaderboard writes one into many cards), and its body a
two-column results table (`| GSM8k (5-shot) | 1.44 |`). Only datasets that map confidently onto
an lm-eval task this project measures are kept; the card's metric names rarely match lm-eval's
(a leaderboard "acc" on gsm8k is lm-eval's exact_match), so every score is task-level (metric
ANY_METRIC: compared with the task's best measured metric). Percent vs fraction is decided per card:
any value above 1 makes the whole card percent (1.44 next to 59.51 is 1.44 %, not 144 %).

The card is text anyone can write: the front matter is bounded in size, parsed with safe_load,
walked with a node budget (YAML aliases can make a small document a huge graph), and anything of
the wrong shape is skipped. A card we cannot read gives {}; it never raises. Pure.
"""

from __future__ import annotations

import re
from typing import Any

import yaml

from runners.accuracy.references import ANY_METRIC, MAX_REFERENCES

#: front matter above this is not read at all (real leaderboard cards: < 8 KB)
MAX_FRONT_MATTER_BYTES = 64 * 1024
#: the body scanned for a results table
MAX_BODY_BYTES = 256 * 1024
#: mappings/lists visited in the parsed front matter before giving up
MAX_NODES = 5000
#: metric types that are a score of the task (not a loss, a perplexity, a rouge...)
SCORE_METRICS = frozenset(
    {"acc", "acc_norm", "accuracy", "exact_match", "em", "exact-match", "strict-match", "flexible-extract"}
)

_FRONT = re.compile(r"\A\ufeff?---[ \t]*\r?\n(?P<yaml>.*?)\r?\n---[ \t]*(?:\r?\n|\Z)", re.DOTALL)
_ROW = re.compile(
    r"^\s*\|\s*(?P<name>[^|]{1,80}?)\s*\|\s*(?P<value>[0-9]{1,3}(?:\.[0-9]{1,6})?)\s*%?\s*\|\s*$"
)


def _norm(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", " ", text.lower()).strip()


def task_for(dataset_type: str, name: str = "", config: str = "") -> str | None:
    """The lm-eval task a card's dataset is, or None when we cannot say confidently."""
    words = " ".join(w for w in (_norm(x) for x in (dataset_type, name, config)) if w) + " "
    key = _norm(dataset_type.rsplit("/", 1)[-1]) or _norm(name)
    if key in ("gsm8k", "gsm8k main", "grade school math 8k") or words.startswith("gsm8k "):
        return "gsm8k"
    if key in ("ceval", "ceval exam", "c eval") or words.startswith(("ceval ", "c eval ")):
        return "ceval-valid"
    if key == "cmmlu" or words.startswith("cmmlu "):
        return "cmmlu"
    if key in ("mmlu", "hendrycks test", "mmlu all") or words.startswith("mmlu "):
        return "mmlu"
    if key in ("mmmu",) or words.startswith("mmmu "):
        return "mmmu_val"
    if key in ("ai2 arc", "arc", "ai2 reasoning challenge") or words.startswith(("arc ", "ai2 ")):
        if "easy" in words:
            return "arc_easy"
        if "challenge" in words:
            return "arc_challenge"
        return None
    if key == "hellaswag" or words.startswith("hellaswag "):
        return "hellaswag"
    if key == "winogrande" or words.startswith("winogrande "):
        return "winogrande"
    return None


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        v = float(str(value).strip().rstrip("%"))
    except ValueError:
        return None
    return v if 0 <= v <= 100 else None


def _model_index(doc: Any) -> list[tuple[str, float]]:
    """(task, raw value) pairs from `model-index`; at most MAX_NODES nodes are looked at."""
    if not isinstance(doc, dict):
        return []
    entries = doc.get("model-index")
    out: list[tuple[str, float]] = []
    budget = MAX_NODES
    for entry in entries if isinstance(entries, list) else []:
        results = entry.get("results") if isinstance(entry, dict) else None
        for result in results if isinstance(results, list) else []:
            budget -= 1
            if budget <= 0:
                return out
            if not isinstance(result, dict) or not isinstance(result.get("dataset"), dict):
                continue
            ds = result["dataset"]
            fields = [ds.get(k) if isinstance(ds.get(k), str) else "" for k in ("type", "name", "config")]
            task = task_for(*fields)
            metrics = result.get("metrics")
            if task is None or not isinstance(metrics, list):
                continue
            for m in metrics[:32]:
                budget -= 1
                if not isinstance(m, dict) or not isinstance(m.get("type"), str):
                    continue
                v = _number(m.get("value"))
                if v is not None and m["type"].strip().lower() in SCORE_METRICS:
                    out.append((task, v))
    return out


def _table(body: str) -> list[tuple[str, float]]:
    out: list[tuple[str, float]] = []
    for line in body[:MAX_BODY_BYTES].splitlines():
        m = _ROW.match(line)
        if m is None:
            continue
        task = task_for("", m.group("name"))
        if task is not None:
            out.append((task, float(m.group("value"))))
    return out


def _fractions(pairs: list[tuple[str, float]]) -> dict[str, float]:
    """Lowest score per task (the conservative reference), as fractions of 1."""
    percent = any(v > 1 for _, v in pairs)
    out: dict[str, float] = {}
    for task, v in pairs:
        f = round(v / 100 if percent else v, 6)
        out[task] = min(f, out.get(task, f))
    return out


def parse_model_card(text: str | bytes | None) -> dict[str, dict[str, float]]:
    """{lm-eval task: {ANY_METRIC: fraction}} from a model card; {} when it gives none we can map."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    if not isinstance(text, str) or not text:
        return {}
    front = _FRONT.match(text[: MAX_FRONT_MATTER_BYTES + 16])
    scores: dict[str, float] = {}
    body = text
    if front is not None:
        body = text[front.end() :]
        try:
            doc = yaml.load(front.group("yaml"), Loader=yaml.CSafeLoader)
        except Exception:  # malformed, too deep (RecursionError), anything: no scores from it
            doc = None
        scores = _fractions(_model_index(doc))
    elif text.startswith("---"):  # a front matter too large (or unterminated): skip past it unread
        end = text.find("\n---", 3)
        body = text[end + 4 :] if end >= 0 else ""
    for task, value in _fractions(_table(body)).items():
        scores.setdefault(task, value)  # the structured model-index wins over a prose table
    return {t: {ANY_METRIC: v} for t, v in sorted(scores.items())[:MAX_REFERENCES]}
