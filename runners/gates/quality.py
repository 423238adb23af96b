"""Is a reply text, or noise? A pure detector for degenerate smoke replies, and known-answer checks.

A server can answer 200 with garbage: `]� mo ‹|� mo�[[[[` passed the old smoke. Degenerate means:
- `empty`: nothing left after removing special-token text (`<|im_end|>`, `</s>`, any `<|...|>`) and
  whitespace;
- `replacement-chars`: U+FFFD (bytes that are not UTF-8) anywhere but the very end (one trailing
  U+FFFD is a multi-byte character cut by max_tokens, not a fault, and only noted);
- `repeated`: the whole reply (whitespace ignored) is one short unit (1–8 characters) repeated at
  least `MIN_REPEATS` times (`aaaaaaaa`, `[[[[[[`, `mo mo mo mo`); with token ids, one id repeated.
Whether a degenerate reply fails a gate is the gate's decision (runners.gates.gate): here only facts.

Known-answer prompts (chat models, real gate): a handful of deterministic questions with an expected
answer pattern; a wrong answer is a warning, never a failure (tiny or random weights answer nonsense).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from pydantic import BaseModel, Field

REPLACEMENT = "\ufffd"
MIN_REPEATS = 4
MAX_UNIT = 8
_SPECIAL_RX = re.compile(r"<\|[^|<>\s]{1,40}\|>|</?s>|<unk>|<pad>|\[PAD\]|\[CLS\]|\[SEP\]|<eos>|<bos>")


class Quality(BaseModel):
    degenerate: bool
    #: codes: "empty", "replacement-chars", "repeated"
    reasons: list[str] = Field(default_factory=list)
    detail: str = ""
    notes: list[str] = Field(default_factory=list)
    chars: int = 0


def strip_special(text: str, special_tokens: Sequence[str] = ()) -> str:
    out = text
    for tok in sorted({t for t in special_tokens if t}, key=len, reverse=True):
        out = out.replace(tok, "")
    return _SPECIAL_RX.sub("", out)


def repeated_unit(text: str, min_repeats: int = MIN_REPEATS, max_unit: int = MAX_UNIT) -> str | None:
    """The unit the whole text repeats (a partial last unit allowed), or None."""
    for size in range(1, max_unit + 1):
        if len(text) < size * min_repeats:
            break
        unit = text[:size]
        reps = -(-len(text) // size)
        if (unit * reps)[: len(text)] == text:
            return unit
    return None


def assess(text: str, *, special_tokens: Sequence[str] = (), token_ids: Sequence[int] = ()) -> Quality:
    """Facts about one reply. Pure."""
    stripped = strip_special(text, special_tokens)
    compact = re.sub(r"\s+", "", stripped)
    reasons: list[str] = []
    details: list[str] = []
    notes: list[str] = []
    if not compact:
        reasons.append("empty")
        details.append("nothing left after removing special tokens and whitespace")
    else:
        body = compact[:-1] if compact.endswith(REPLACEMENT) else compact
        bad = body.count(REPLACEMENT)
        if bad:
            reasons.append("replacement-chars")
            details.append(f"{bad} U+FFFD replacement character(s): bytes that are not valid UTF-8")
        elif body != compact:
            notes.append("one trailing U+FFFD: a multi-byte character cut by max_tokens")
        unit = repeated_unit(compact)
        if unit is not None:
            reasons.append("repeated")
            details.append(f"the whole reply is {unit!r} repeated")
    if "repeated" not in reasons and len(token_ids) >= MIN_REPEATS and len(set(token_ids)) == 1:
        reasons.append("repeated")
        details.append(f"one token id ({token_ids[0]}) repeated {len(token_ids)} times")
    return Quality(
        degenerate=bool(reasons), reasons=reasons, detail="; ".join(details), notes=notes, chars=len(compact)
    )


class KnownAnswer(BaseModel):
    prompt: str
    #: regular expression (case-insensitive) the answer must contain
    expect: str
    expect_text: str


#: Deterministic questions a chat model of any size that works answers the same way.
KNOWN_ANSWERS: tuple[KnownAnswer, ...] = (
    KnownAnswer(
        prompt="What is 2+3? Answer with the number only.", expect=r"(?<!\d)5(?!\d)|\bfive\b", expect_text="5"
    ),
    KnownAnswer(
        prompt="What is the capital of France? Answer with one word.",
        expect=r"\bparis\b",
        expect_text="Paris",
    ),
    KnownAnswer(
        prompt="How many days are in a week? Answer with the number only.",
        expect=r"(?<!\d)7(?!\d)|\bseven\b",
        expect_text="7",
    ),
    KnownAnswer(
        prompt="What color is the sky on a clear day? Answer with one word.",
        expect=r"\bblue\b",
        expect_text="blue",
    ),
)


class AnswerCheck(BaseModel):
    prompt: str
    expected: str
    answer: str
    status: int | None = None
    ok: bool


def check_answer(item: KnownAnswer, answer: str, status: int | None = None) -> AnswerCheck:
    ok = status in (None, 200) and re.search(item.expect, answer, re.IGNORECASE) is not None
    return AnswerCheck(prompt=item.prompt, expected=item.expect_text, answer=answer, status=status, ok=ok)


def answer_warning(checks: Sequence[AnswerCheck]) -> str | None:
    """One warning line for the wrong answers, or None when all were right."""
    wrong = [c for c in checks if not c.ok]
    if not wrong:
        return None
    shown = "; ".join(f"{c.prompt!r} -> {c.answer[:60]!r} (expected {c.expected})" for c in wrong)
    return f"known-answer prompts: {len(wrong)} of {len(checks)} wrong: {shown}"
