"""Issue 10: the model card's published score (README.md `model-index`, or its results table) is
a reference for the plausibility check. The parser reads a real card (tests/fixtures/model_cards,
SOURCES.md there) and survives hostile ones; the stand-in-hub test runs the real pre-flight path
(huggingface_hub pointed at the stand-in by HF_ENDPOINT) up to the job's references, with the
issue's own figure winning over the card's, and the plausibility flag naming the card."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from runners.accuracy.checks import plausibility
from runners.accuracy.model_card import MAX_FRONT_MATTER_BYTES, parse_model_card, task_for
from runners.accuracy.references import ANY_METRIC, SOURCE_CARD, SOURCE_ISSUE, merge_card, sources_for
from tests.intake.test_flow import label
from tests.intake.test_preflight import hub, tiny_repo  # noqa: F401 - the pytest fixture
from tests.plugins.standin import REPO
from tests.standin.hub import HubStandin

CARDS = Path(__file__).resolve().parent.parent / "fixtures" / "model_cards"
TINYLLAMA = CARDS / "TinyLlama-1.1B-intermediate-step-1431k-3T.README.md"


def test_a_real_leaderboard_card_gives_its_scores_as_fractions() -> None:
    refs = parse_model_card(TINYLLAMA.read_text(encoding="utf-8"))
    # percent card: gsm8k 1.44 is 1.44 %, not 144 % and not 1.44; TruthfulQA has no task of ours
    assert refs == {
        "arc_challenge": {ANY_METRIC: 0.3387},
        "gsm8k": {ANY_METRIC: 0.0144},
        "hellaswag": {ANY_METRIC: 0.6031},
        "mmlu": {ANY_METRIC: 0.2604},
        "winogrande": {ANY_METRIC: 0.5951},
    }


def test_the_results_table_alone_is_read_and_model_index_wins_over_it() -> None:
    text = TINYLLAMA.read_text(encoding="utf-8")
    body = text.split("\n---\n", 1)[1]  # the card without its front matter: the table remains
    assert parse_model_card(body)["gsm8k"] == {ANY_METRIC: 0.0144}
    assert parse_model_card(body)["arc_challenge"] == {ANY_METRIC: 0.3387}
    table_only = "| Metric | Value |\n|---|---:|\n| GSM8K | 0.79 |\n| C-Eval | 81.2 |\n| Avg. | 50 |\n"
    assert parse_model_card(table_only) == {"gsm8k": {ANY_METRIC: 0.0079}, "ceval-valid": {ANY_METRIC: 0.812}}
    conflicting = text.replace("|GSM8k (5-shot)                   | 1.44|", "|GSM8k (5-shot) | 99.0|")
    assert parse_model_card(conflicting)["gsm8k"] == {ANY_METRIC: 0.0144}


def test_a_fraction_card_stays_fractions_and_unmapped_metrics_are_ignored() -> None:
    card = """---
model-index:
- name: m
  results:
  - dataset: {type: openai/gsm8k, name: GSM8K}
    metrics:
    - {type: exact_match, value: 0.82}
    - {type: loss, value: 0.4}
  - dataset: {type: ceval/ceval-exam, name: C-Eval}
    metrics: [{type: accuracy, value: "0.7"}]
  - dataset: {type: squad}
    metrics: [{type: f1, value: 0.9}]
---
"""
    assert parse_model_card(card) == {"ceval-valid": {ANY_METRIC: 0.7}, "gsm8k": {ANY_METRIC: 0.82}}
    assert task_for("ai2_arc", "ARC", "ARC-Easy") == "arc_easy"
    assert task_for("ai2_arc") is None  # which ARC? we do not guess


#: one result; the well-formed instance is read (test below), each hostile one is not
ONE = (
    "---\nmodel-index:\n- results:\n  - dataset: {{type: {dataset}}}\n"
    "    metrics: [{{type: acc, value: {value}}}]\n---\n"
)


def test_the_hostile_cases_template_is_read_when_well_formed() -> None:
    assert parse_model_card(ONE.format(dataset="gsm8k", value="55")) == {"gsm8k": {ANY_METRIC: 0.55}}


@pytest.mark.parametrize(
    "card",
    [
        "",
        "no front matter at all",
        "---\nmodel-index: [unclosed\n---\n",
        "---\n" + "[" * 50_000 + "]" * 50_000 + "\n---\n",  # deeper than any parser should follow
        "---\nmodel-index: 7\n---\n",
        "---\nmodel-index:\n- results: {dataset: gsm8k}\n---\n",
        ONE.format(dataset="[gsm8k]", value="0.5"),  # a list where a name belongs
        ONE.format(dataset="gsm8k", value="1e308"),
        ONE.format(dataset="gsm8k", value="true"),
        ONE.format(dataset="gsm8k", value="{a: 1}"),
        "---\n!!python/object/apply:os.system ['touch /tmp/pwned-by-card']\n---\n",
        "---\nx: " + "a" * (MAX_FRONT_MATTER_BYTES + 10) + "\n---\n",  # over the bound: not parsed
        # a billion-laughs alias bomb: small text, a huge graph; the walk is bounded
        "---\na: &a [x, x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
        "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\n"
        "model-index: [{results: [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]}]\n---\n",
        b"---\nmodel-index: \xff\xfe\n---\n",
    ],
)
def test_a_hostile_or_broken_card_gives_nothing_and_never_raises(card: str | bytes) -> None:
    assert parse_model_card(card) == {}
    assert not Path("/tmp/pwned-by-card").exists()


def test_the_issue_wins_and_the_card_fills_the_rest_with_its_source() -> None:
    issue = {"gsm8k": {ANY_METRIC: 0.89}}
    card = {"gsm8k": {ANY_METRIC: 0.0144}, "mmlu": {ANY_METRIC: 0.26}}
    refs, sources = merge_card(issue, card)
    assert refs == {"gsm8k": {ANY_METRIC: 0.89}, "mmlu": {ANY_METRIC: 0.26}}
    assert sources == {"gsm8k": SOURCE_ISSUE, "mmlu": SOURCE_CARD}
    tasks = [{"name": "mmlu", "metrics": [{"name": "acc,none", "value": 0.05, "stderr": 0.01}]}]
    judged = plausibility(tasks, {("mmlu", ANY_METRIC): 0.26}, sources)
    assert judged["implausible"]
    assert "far below the reference 0.2600 (the model card's published score)" in judged["why"]


def test_the_cards_score_reaches_the_job_through_the_real_preflight(
    post: Callable[..., Any],
    github_standin: Any,
    deps: Any,
    drain: Callable[[], list[Any]],
    hub: HubStandin,  # noqa: F811 - the fixture imported above
    tmp_path: Path,
) -> None:
    gh = github_standin
    d = tmp_path / "ckpt"
    d.mkdir()
    tiny_repo(d)
    (d / "README.md").write_bytes(TINYLLAMA.read_bytes())
    hub.add_repo("tiny-org/Tiny-Llama", d)
    body = "model: tiny-org/Tiny-Llama\n\nreference: gsm8k 0.89\n"
    n = int(gh.add_issue(REPO, "[New model] Tiny-Llama", body)["number"])
    label(post, gh, n)
    assert "passed" in drain()
    job = deps.store.active_for(REPO, n)
    refs = job.options.accuracy_references or {}
    sources = sources_for(refs, job.options.accuracy_reference_sources)
    assert refs["gsm8k"] == {ANY_METRIC: 0.89}  # the issue's figure, not the card's 1.44 %
    assert refs["mmlu"] == {ANY_METRIC: 0.2604} and refs["hellaswag"] == {ANY_METRIC: 0.6031}
    assert sources["gsm8k"] == SOURCE_ISSUE and sources["mmlu"] == SOURCE_CARD
    pairs = {(t, m): v for t, ms in refs.items() for m, v in ms.items()}
    good = [{"name": "hellaswag", "metrics": [{"name": "acc,none", "value": 0.55, "stderr": 0.01}]}]
    assert not plausibility(good, pairs, sources)["implausible"]
    bad = [{"name": "hellaswag", "metrics": [{"name": "acc,none", "value": 0.29, "stderr": 0.01}]}]
    why = plausibility(bad, pairs, sources)["why"]
    assert (
        why
        == "hellaswag acc,none: 0.2900 is far below the reference 0.6031 (the model card's published score)"
    )
    # a card without scores leaves the job's references as the issue gave them
    (d / "README.md").write_text("# Tiny\nno scores here\n", encoding="utf-8")
    hub.add_repo("tiny-org/Tiny-Plain", d)
    m = int(gh.add_issue(REPO, "[New model] Tiny-Plain", "model: tiny-org/Tiny-Plain")["number"])
    label(post, gh, m)
    assert "passed" in drain()
    assert deps.store.active_for(REPO, m).options.accuracy_references is None
