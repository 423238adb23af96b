"""Reference parity rule (runners.gates.parity), from tables: the vLLM check_logprobs_close rule,
the evidence it records, and the parsing of the server's /v1/completions logprobs."""

from __future__ import annotations

from typing import Any

import pytest

from runners.gates import parity as par


def S(tokens: list[int], lps: list[float | None] | None = None, top: list[Any] | None = None) -> par.Stream:
    return par.Stream(
        tokens=tokens,
        logprobs=lps if lps is not None else [-1.0] * len(tokens),
        top=top if top is not None else [{t: -1.0} for t in tokens],
    )


# (name, server, reference, passed, matched, divergence position or None, note fragment)
CASES: list[tuple[str, par.Stream, par.Stream, bool, int, int | None, str]] = [
    ("identical", S([1, 2, 3]), S([1, 2, 3]), True, 3, None, "all 3 tokens equal"),
    (
        "near tie at 1: each token in the other's top-k",
        S([1, 5, 9], top=[{1: -1.0}, {5: -0.69, 6: -0.70}, {9: -1.0}]),
        S([1, 6, 7], top=[{1: -1.0}, {6: -0.69, 5: -0.70}, {7: -1.0}]),
        True,
        1,
        1,
        "near-tie",
    ),
    (
        "server token not in the reference's top-k",
        S([1, 5], top=[{1: -1.0}, {5: -0.1, 6: -3.0}]),
        S([1, 6], top=[{1: -1.0}, {6: -0.1, 7: -3.0}]),
        False,
        1,
        1,
        "outside the other side's top-k",
    ),
    (
        "reference token not in the server's top-k",
        S([5], top=[{5: -0.1, 8: -3.0}]),
        S([6], top=[{6: -0.1, 5: -3.0}]),
        False,
        0,
        0,
        "outside",
    ),
    (
        "no top-k on one side at the divergence",
        S([5], top=[None]),
        S([6], top=[{6: -0.1, 5: -3.0}]),
        False,
        0,
        0,
        "gave no top-k",
    ),
    (
        "top-k list shorter than the stream",
        S([1, 5], top=[{1: -1.0}]),
        S([1, 6], top=[{1: -1.0}, {6: -1.0, 5: -2.0}]),
        False,
        1,
        1,
        "gave no top-k",
    ),
    (
        "different lengths: the shorter is compared",
        S([1, 2]),
        S([1, 2, 3]),
        True,
        2,
        None,
        "compared the shorter",
    ),
    ("a side generated nothing", S([]), S([1]), False, 0, None, "nothing to compare"),
]


@pytest.mark.parametrize(
    ("name", "server", "ref", "passed", "matched", "pos", "note"), CASES, ids=[c[0] for c in CASES]
)
def test_rule(
    name: str, server: par.Stream, ref: par.Stream, passed: bool, matched: int, pos: int | None, note: str
) -> None:
    row = par.compare_stream("p", server, ref, prompt_token_ids=[7, 8])
    assert row.passed is passed, row
    assert row.matched == matched
    assert (row.divergence.position if row.divergence else None) == pos
    assert note in row.note
    assert row.prompt_token_ids == [7, 8]


def test_comparison_stops_at_the_first_divergence() -> None:
    """After a near-tie divergence the continuations have different inputs: later garbage is not
    looked at (the rule stops), and max |Δlogprob| covers the matched prefix only."""
    server = S(
        [1, 5, 100, 101], lps=[-1.0, -0.69, -0.1, -0.1], top=[{1: -1.0}, {5: -0.69, 6: -0.70}, None, None]
    )
    ref = S(
        [1, 6, 200, 201], lps=[-1.25, -0.69, -9.0, -9.0], top=[{1: -1.25}, {6: -0.69, 5: -0.70}, None, None]
    )
    row = par.compare_stream("p", server, ref)
    assert row.passed and row.matched == 1
    assert row.max_abs_dlogprob == pytest.approx(0.25)
    d = row.divergence
    assert d is not None and d.within_top_k
    assert (d.server_token, d.reference_token) == (5, 6)
    assert (d.server_logprob, d.reference_logprob) == (-0.69, -0.69)
    assert (d.server_logprob_of_reference_token, d.reference_logprob_of_server_token) == (-0.70, -0.70)


def test_failed_divergence_records_both_sides() -> None:
    row = par.compare_stream("p", S([5], lps=[-0.1], top=[{5: -0.1}]), S([6], lps=[-0.2], top=[{6: -0.2}]))
    d = row.divergence
    assert d is not None and not d.within_top_k
    assert d.server_logprob_of_reference_token is None and d.reference_logprob_of_server_token is None
    assert row.max_abs_dlogprob is None  # no matched prefix


def test_missing_logprob_values_do_not_count_in_the_delta() -> None:
    row = par.compare_stream("p", S([1, 2], lps=[None, -1.0]), S([1, 2], lps=[-1.0, -1.5]))
    assert row.passed and row.max_abs_dlogprob == pytest.approx(0.5)


def test_compare_verdicts() -> None:
    good = par.compare(["a", "b"], [S([1]), S([2])], [S([1]), S([2])], top_k=5, max_tokens=1, dtype="float32")
    assert good.status == "passed" and good.first_failure is None
    assert good.reason == "2 prompts match the reference"
    assert (good.top_k, good.max_tokens, good.dtype) == (5, 1, "float32")
    assert good.max_abs_dlogprob == 0.0

    tie = par.compare(
        ["a"],
        [S([5], top=[{5: -0.69, 6: -0.7}])],
        [S([6], top=[{6: -0.69, 5: -0.7}])],
        top_k=2,
    )
    assert tie.status == "passed" and "1 diverged at a near-tie within top-2" in tie.reason
    assert tie.max_abs_dlogprob is None

    bad = par.compare(["a", "b"], [S([1]), S([5])], [S([1]), S([6])], prompt_token_ids=[[1], [2]])
    assert bad.status == "failed" and bad.first_failure == 1
    assert bad.reason.startswith("prompt 2 of 2: diverged at position 0")
    assert bad.prompts[1].prompt_token_ids == [2]


def test_compare_refuses_misaligned_input_and_empty_prompts() -> None:
    assert par.compare([], [], []).status == "skipped"
    odd = par.compare(["a", "b"], [S([1])], [S([1]), S([1])])
    assert odd.status == "failed" and "2 prompts but 1 server and 2 reference streams" in odd.reason


def test_skipped_is_never_a_pass() -> None:
    s = par.skipped("reference skipped: needs 9.0 GB, budget 1.0 GB", top_k=5, reference={"need_gb": 9.0})
    assert s.status == "skipped" and s.reason.startswith("reference skipped: needs")
    assert s.reference == {"need_gb": 9.0} and s.prompts == []
    assert par.RULE in s.model_dump()["rule"]


def _choice(tokens: list[Any], lps: Any = None, tops: Any = None, text: Any = "x") -> dict[str, Any]:
    return {"text": text, "logprobs": {"tokens": tokens, "token_logprobs": lps, "top_logprobs": tops}}


def test_parse_vllm_logprobs() -> None:
    choice = _choice(
        ["token_id:5", "token_id:7"],
        [-0.5, None],
        [{"token_id:5": -0.5, "token_id:6": -1.0}, None],
    )
    s = par.parse_vllm_logprobs(choice)
    assert s.tokens == [5, 7] and s.logprobs == [-0.5, None]
    assert s.top == [{5: -0.5, 6: -1.0}, None] and s.text == "x"
    # shapes a server may send: no logprobs object, non-list fields, non-numeric values, no text
    assert par.parse_vllm_logprobs({"text": "hi"}) == par.Stream(text="hi")
    assert par.parse_vllm_logprobs({"logprobs": None, "text": 3}).text == ""
    odd = par.parse_vllm_logprobs(_choice("nope", "nope", "nope", text=None))
    assert odd.tokens == [] and odd.logprobs == [] and odd.top == [] and odd.text == ""
    vals = par.parse_vllm_logprobs(_choice(["token_id:1"], ["x"], [{"token_id:1": "y", "token_id:2": -2}]))
    assert vals.logprobs == [None] and vals.top == [{2: -2.0}]


@pytest.mark.parametrize("raw", ["hello", "token_id:abc", 5, "token_id:"])
def test_parse_refuses_tokens_that_are_not_ids(raw: Any) -> None:
    with pytest.raises(ValueError, match="did not return token ids"):
        par.parse_vllm_logprobs(_choice([raw]))


def test_parse_refuses_top_logprobs_keyed_by_text() -> None:
    with pytest.raises(ValueError, match="did not return token ids"):
        par.parse_vllm_logprobs(_choice(["token_id:1"], [-1.0], [{"hello": -1.0}]))
