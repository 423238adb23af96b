"""Degenerate-reply detector and known-answer checks (runners.gates.quality), from tables."""

from __future__ import annotations

import pytest

from runners.gates import quality as q

# (reply, special tokens, token ids, degenerate, reasons)
CASES: list[tuple[str, tuple[str, ...], tuple[int, ...], bool, list[str]]] = [
    ("Hello! How can I help you today?", (), (), False, []),
    ("你好！有什么可以帮你？", (), (), False, []),
    ("hi", (), (), False, []),  # short is not repeated
    ("", (), (), True, ["empty"]),
    ("   \n\t", (), (), True, ["empty"]),
    ("<|im_end|>", (), (), True, ["empty"]),  # special-token text by pattern
    ("</s><s> <unk>", (), (), True, ["empty"]),
    ("[EOT]", ("[EOT]",), (), True, ["empty"]),  # special token from the tokenizer
    ("]\ufffd mo <|\ufffd mo\ufffd[[[[[[[[[", (), (), True, ["replacement-chars"]),  # the example
    ("aaaaaaaaaaaaaaaa", (), (), True, ["repeated"]),
    ("[[[[[[", (), (), True, ["repeated"]),
    ("mo mo mo mo mo", (), (), True, ["repeated"]),  # whitespace ignored: "mo" repeated
    ("abcabcabcabca", (), (), True, ["repeated"]),  # a partial last unit
    ("aaa", (), (), False, []),  # fewer than MIN_REPEATS
    ("\ufffd\ufffd\ufffd\ufffd", (), (), True, ["replacement-chars", "repeated"]),
    ("Bonjour, je m'appelle \ufffd", (), (), False, []),  # one trailing U+FFFD: a cut character
    ("The sky is blue", (), (7, 7, 7, 7), True, ["repeated"]),  # one token id repeated
    ("The sky is blue", (), (7, 7, 7), False, []),
    ("The sky is blue", (), (7, 8, 7, 7), False, []),
]


@pytest.mark.parametrize(("text", "specials", "ids", "degenerate", "reasons"), CASES)
def test_assess(
    text: str, specials: tuple[str, ...], ids: tuple[int, ...], degenerate: bool, reasons: list[str]
) -> None:
    result = q.assess(text, special_tokens=specials, token_ids=ids)
    assert result.degenerate is degenerate, result
    assert result.reasons == reasons
    assert bool(result.detail) is degenerate


def test_trailing_replacement_is_noted_not_flagged() -> None:
    result = q.assess("Bonjour \ufffd")
    assert not result.degenerate and result.notes == [
        "one trailing U+FFFD: a multi-byte character cut by max_tokens"
    ]


def test_details_name_what_was_found() -> None:
    assert "'a' repeated" in q.assess("aaaaaaaa").detail
    assert "2 U+FFFD" in q.assess("x\ufffdy\ufffdz").detail
    assert "one token id (7) repeated 4 times" in q.assess("The sky is blue", token_ids=[7, 7, 7, 7]).detail
    assert "nothing left" in q.assess("<|endoftext|>").detail


def test_strip_special_longest_first() -> None:
    assert q.strip_special("<a><ab>x", ("<a>", "<ab>")) == "x"
    assert q.strip_special("<|im_start|>assistant", ("",)) == "assistant"


@pytest.mark.parametrize(
    ("text", "unit"),
    [
        ("zzzz", "z"),
        ("abab abab", None),
        ("ababab", None),
        ("abababab", "ab"),
        ("abcdefghabcdefghabcdefghabcdefgh", "abcdefgh"),
        ("xyz", None),
        ("The quick brown fox jumps over the lazy dog", None),
    ],
)
def test_repeated_unit(text: str, unit: str | None) -> None:
    assert q.repeated_unit(text) == unit


# (question index, answer, status, correct)
ANSWERS = [
    (0, "5", 200, True),
    (0, "The answer is 5.", 200, True),
    (0, "five", None, True),
    (0, "15", 200, False),
    (0, "5", 500, False),  # a failed request is not a right answer
    (1, "Paris.", 200, True),
    (1, "paris", 200, True),
    (1, "Lyon", 200, False),
    (2, "7", 200, True),
    (2, "17", 200, False),
    (3, "Blue", 200, True),
    (3, "bluish", 200, False),
]


@pytest.mark.parametrize(("index", "answer", "status", "ok"), ANSWERS)
def test_known_answers(index: int, answer: str, status: int | None, ok: bool) -> None:
    item = q.KNOWN_ANSWERS[index]
    check = q.check_answer(item, answer, status)
    assert check.ok is ok
    assert (check.prompt, check.expected, check.answer, check.status) == (
        item.prompt,
        item.expect_text,
        answer,
        status,
    )


def test_answer_warning() -> None:
    right = q.check_answer(q.KNOWN_ANSWERS[0], "5")
    wrong = q.check_answer(q.KNOWN_ANSWERS[1], "Lyon")
    assert q.answer_warning([right]) is None
    assert q.answer_warning([]) is None
    text = q.answer_warning([right, wrong])
    assert text is not None and text.startswith("known-answer prompts: 1 of 2 wrong:")
    assert "'Lyon'" in text and "(expected Paris)" in text
