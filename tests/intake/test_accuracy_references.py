"""Issue 10: the model card's published score, when the issue gives one, is what accuracy is judged
against. Parsing is pure; the label-to-job path runs through the real webhook app, Redis and the
GitHub stand-in (issue body as GitHub sends it)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from runners.accuracy.checks import plausibility
from runners.accuracy.references import ANY_METRIC, MAX_REFERENCES, parse_references
from tests.plugins.standin import REPO
from tests.standin import payloads

BODY = """### Model
model: Qwen/Qwen3-8B

reference: gsm8k 0.89
- **model card**: ceval-valid acc,none = 83.5%

```
reference: mmlu 0.99
```
> reference: arc_easy 0.9
"""


def test_references_are_read_outside_code_and_quotes_as_fractions() -> None:
    assert parse_references(BODY) == {"gsm8k": {ANY_METRIC: 0.89}, "ceval-valid": {"acc,none": 0.835}}


def test_anything_else_is_not_a_reference() -> None:
    for line in (
        "reference: gsm8k",  # no value
        "reference: gsm8k 0.89 (5-shot)",  # trailing text: we do not guess
        "reference: gsm8k 189",  # not a score
        "reference: $(rm -rf /) 0.5",
        "references gsm8k 0.8",
        "reference: gsm8k ０.８",  # non-ASCII digits
    ):
        assert parse_references(line) == {}, line
    many = "\n".join(f"reference: task{i} 0.5" for i in range(MAX_REFERENCES + 5))
    assert len(parse_references(many)) == MAX_REFERENCES


def test_a_task_level_reference_judges_the_tasks_best_metric() -> None:
    tasks = [
        {
            "name": "gsm8k",
            "metrics": [
                {"name": "exact_match,strict-match", "value": 0.30, "stderr": 0.01},
                {"name": "exact_match,flexible-extract", "value": 0.40, "stderr": 0.01},
            ],
        }
    ]
    rows = {r["metric"]: r for r in plausibility(tasks, {("gsm8k", ANY_METRIC): 0.89})["metrics"]}
    assert rows["exact_match,flexible-extract"]["implausible"]  # 0.40 < half of 0.89
    assert "far below the reference 0.8900" in rows["exact_match,flexible-extract"]["why"]
    assert rows["exact_match,strict-match"]["reference"] is None  # judged once, on the best
    ok = plausibility(tasks, {("gsm8k", ANY_METRIC): 0.6})
    assert not ok["implausible"]


def test_a_labelled_issue_carries_its_references_into_the_job(
    post: Callable[..., Any], github_standin: Any, deps: Any, drain: Callable[[], list[Any]]
) -> None:
    gh = github_standin
    n = int(gh.add_issue(REPO, "[New model] Qwen3-8B", BODY)["number"])
    assert post("issues", payloads.issues_labeled(gh, REPO, n)).status_code == 202
    assert drain()[0].startswith("started job ")
    job = deps.store.active_for(REPO, n)
    assert job.options.accuracy_references == {"gsm8k": {"*": 0.89}, "ceval-valid": {"acc,none": 0.835}}
    m = int(gh.add_issue(REPO, "[New model] Qwen3-8B", "model: Qwen/Qwen3-8B")["number"])
    post("issues", payloads.issues_labeled(gh, REPO, m))
    drain()
    assert deps.store.active_for(REPO, m).options.accuracy_references is None
