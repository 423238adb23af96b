"""Published scores named in the issue (the model card's figure), for the plausibility check.

An issue may say what the model is expected to score, one line each, outside code blocks and
quotes (the same reading as the `model:` line, runners.model_ref):

    reference: gsm8k 0.89
    reference: gsm8k exact_match,flexible-extract = 89.1%
    - **model card**: ceval-valid: 0.84

Task and metric names are lm-eval's (`[A-Za-z0-9_.-]`, metrics may carry `,filter`). A value is a
fraction (0-1) or a percentage (`%`, or a number above 1 and up to 100). A line without a metric
names the task's score as published: it is compared with the task's BEST measured metric (model
cards rarely say which filter). Anything else is ignored: a reference only ever adds a flag, so a
line we cannot read costs nothing but that flag. Pure; at most MAX_REFERENCES entries.
"""

from __future__ import annotations

import re

from runners.model_ref import outside_code_and_quotes

#: the metric key of a task-level reference (the task's best metric is judged against it)
ANY_METRIC = "*"
MAX_REFERENCES = 16

_LINE = re.compile(
    r"^\s*(?:[-*]\s*)?\**(?:reference|model[ _-]?card)(?:[ _-]?(?:score|accuracy))?\**\s*[:：]\s*"
    r"(?P<task>[A-Za-z][A-Za-z0-9_.-]{0,63})"
    r"(?:\s+(?P<metric>[A-Za-z][A-Za-z0-9_.-]{0,63}(?:,[A-Za-z0-9_.-]{1,63})?))?"
    r"\s*[=:：]?\s*(?P<value>[0-9]{1,3}(?:\.[0-9]{1,6})?)\s*(?P<pct>%)?\s*$",
    re.IGNORECASE,
)


def parse_references(body: str | None) -> dict[str, dict[str, float]]:
    """{task: {metric or ANY_METRIC: fraction}} from the issue body; {} when it names none."""
    out: dict[str, dict[str, float]] = {}
    count = 0
    for line in outside_code_and_quotes(body or ""):
        m = _LINE.match(line)
        if m is None or count >= MAX_REFERENCES:
            continue
        value = float(m.group("value"))
        if m.group("pct") or value > 1:
            value /= 100
        if not 0 <= value <= 1:
            continue
        out.setdefault(m.group("task"), {})[m.group("metric") or ANY_METRIC] = round(value, 6)
        count += 1
    return out


#: where a reference came from, as the accuracy stage records and the report shows it
SOURCE_ISSUE = "issue"
SOURCE_CARD = "model card"
SOURCE_TRANSFORMERS = "transformers"
SOURCE_ENV = "environment"
SOURCES = (SOURCE_ISSUE, SOURCE_CARD, SOURCE_TRANSFORMERS, SOURCE_ENV)


def merge_card(
    issue: dict[str, dict[str, float]] | None, card: dict[str, dict[str, float]] | None
) -> tuple[dict[str, dict[str, float]], dict[str, str]]:
    """The issue's references plus the card's for the tasks the issue does not name, and where
    each task's came from ({task: source}: JobOptions.accuracy_reference_sources)."""
    out = {t: dict(m) for t, m in (issue or {}).items()}
    sources = dict.fromkeys(out, SOURCE_ISSUE)
    for task, metrics in (card or {}).items():
        if task not in out and len(out) < MAX_REFERENCES:
            out[task] = dict(metrics)
            sources[task] = SOURCE_CARD
    return out, sources


def sources_for(
    refs: dict[str, dict[str, float]], recorded: dict[str, str] | None, default: str = SOURCE_ISSUE
) -> dict[str, str]:
    """{task: source} for every referenced task: the recorded source when it is one we know, else
    `default` (an issue's own line, or ADAPT_BOT_ACCURACY_REFERENCES)."""
    recorded = recorded or {}
    return {t: recorded[t] if recorded.get(t) in SOURCES else default for t, m in refs.items() if m}
