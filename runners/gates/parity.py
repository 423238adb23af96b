"""Reference parity: does the served model compute the same function as `transformers` on the same weights?

Pure comparison of two greedy token streams, the server's and the reference's, for the same prompt
token ids. The rule is the one vLLM's own model tests use, `tests/models/utils.py::check_logprobs_close`
(read at vllm-project/vllm; default arguments, i.e. `always_check_logprobs=False`,
`num_outputs_0_skip_tokens=0`), adopted as follows:

- walk both generated streams position by position (up to the shorter one);
- while the tokens are equal, go on (logprobs are not compared there: greedy decoding of two
  correct implementations may differ in the last digits, which is why vLLM does not assert on them);
- at the FIRST position where the tokens differ, each side's token must be among the OTHER side's
  top-k logprobs (`output_id_0 in logprobs_elem_1 and output_id_1 in logprobs_elem_0`); if so the
  streams diverged at a near-tie and the prompt passes, else it fails; either way the comparison of
  that prompt STOPS there, because after a divergence the two continuations have different inputs;
- a missing top-k list at the divergence fails the prompt (vLLM asserts it is not None).

What we add, as evidence only (never a verdict of its own): the first divergence with both tokens
and both sides' logprobs of both tokens, and max |Δlogprob| of the chosen tokens over the matched
prefix (positions before the divergence, or the whole stream when nothing diverged). The verdict is
`passed` when every prompt passes, `failed` when one fails, `skipped` (with the reason) when there
was nothing to compare — a skipped check is never a pass.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal

from pydantic import BaseModel, Field

ParityStatus = Literal["passed", "failed", "skipped"]

RULE = (
    "vLLM tests/models/utils.py::check_logprobs_close: per position, equal tokens go on; at the first "
    "differing token each side's token must be in the other side's top-k logprobs; comparison stops there"
)


class Stream(BaseModel):
    """One side's greedy continuation of one prompt."""

    tokens: list[int] = Field(default_factory=list)
    #: logprob of each chosen token
    logprobs: list[float | None] = Field(default_factory=list)
    #: top-k {token id: logprob} at each position (may also hold the chosen token)
    top: list[dict[int, float] | None] = Field(default_factory=list)
    text: str = ""


class Divergence(BaseModel):
    position: int
    server_token: int
    reference_token: int
    #: each side's logprob of its own token
    server_logprob: float | None
    reference_logprob: float | None
    #: each side's logprob of the OTHER side's token (None = not in that side's top-k)
    server_logprob_of_reference_token: float | None
    reference_logprob_of_server_token: float | None
    within_top_k: bool


class PromptParity(BaseModel):
    prompt: str
    prompt_token_ids: list[int] = Field(default_factory=list)
    server: Stream
    reference: Stream
    passed: bool
    matched: int
    divergence: Divergence | None = None
    max_abs_dlogprob: float | None = None
    note: str = ""


class ParityResult(BaseModel):
    """What goes into StageResult.data["parity"] (the verdict code reads `status`)."""

    status: ParityStatus
    reason: str
    rule: str = RULE
    top_k: int | None = None
    max_tokens: int | None = None
    dtype: str | None = None
    prompts: list[PromptParity] = Field(default_factory=list)
    max_abs_dlogprob: float | None = None
    first_failure: int | None = None  # index into prompts
    #: the reference run itself (timings, memory, loading info); filled by runners.gates.reference
    reference: dict[str, object] = Field(default_factory=dict)


def _at(seq: Sequence[object], i: int) -> object:
    return seq[i] if i < len(seq) else None


def _lp(seq: Sequence[float | None], i: int) -> float | None:
    v = _at(seq, i)
    return float(v) if isinstance(v, (int, float)) else None


def _top(stream: Stream, i: int) -> Mapping[int, float] | None:
    v = _at(stream.top, i)
    return v if isinstance(v, dict) else None


def compare_stream(
    prompt: str, server: Stream, reference: Stream, *, prompt_token_ids: Sequence[int] = ()
) -> PromptParity:
    """Apply the rule to one prompt."""
    max_d: float | None = None
    n = min(len(server.tokens), len(reference.tokens))
    for i in range(n):
        s_tok, r_tok = server.tokens[i], reference.tokens[i]
        if s_tok == r_tok:
            s_lp, r_lp = _lp(server.logprobs, i), _lp(reference.logprobs, i)
            if s_lp is not None and r_lp is not None:
                d = abs(s_lp - r_lp)
                max_d = d if max_d is None else max(max_d, d)
            continue
        s_top, r_top = _top(server, i), _top(reference, i)
        s_of_r = s_top.get(r_tok) if s_top is not None else None
        r_of_s = r_top.get(s_tok) if r_top is not None else None
        ok = s_top is not None and r_top is not None and r_tok in s_top and s_tok in r_top
        div = Divergence(
            position=i,
            server_token=s_tok,
            reference_token=r_tok,
            server_logprob=_lp(server.logprobs, i),
            reference_logprob=_lp(reference.logprobs, i),
            server_logprob_of_reference_token=s_of_r,
            reference_logprob_of_server_token=r_of_s,
            within_top_k=ok,
        )
        if ok:
            note = f"diverged at position {i} at a near-tie (each token in the other side's top-k); stopped"
        elif s_top is None or r_top is None:
            note = f"diverged at position {i} and a side gave no top-k logprobs there"
        else:
            note = f"diverged at position {i}: a token outside the other side's top-k"
        return PromptParity(
            prompt=prompt,
            prompt_token_ids=list(prompt_token_ids),
            server=server,
            reference=reference,
            passed=ok,
            matched=i,
            divergence=div,
            max_abs_dlogprob=max_d,
            note=note,
        )
    note = f"all {n} tokens equal"
    if len(server.tokens) != len(reference.tokens):
        note += f" (streams of {len(server.tokens)} and {len(reference.tokens)} tokens: compared the shorter)"
    return PromptParity(
        prompt=prompt,
        prompt_token_ids=list(prompt_token_ids),
        server=server,
        reference=reference,
        passed=n > 0,
        matched=n,
        max_abs_dlogprob=max_d,
        note=note if n > 0 else "a side generated no tokens: nothing to compare",
    )


def compare(
    prompts: Sequence[str],
    servers: Sequence[Stream],
    references: Sequence[Stream],
    *,
    prompt_token_ids: Sequence[Sequence[int]] = (),
    top_k: int | None = None,
    max_tokens: int | None = None,
    dtype: str | None = None,
) -> ParityResult:
    """The verdict over all prompts: passed only if every prompt passes."""
    if not prompts:
        return skipped("no prompts to compare", top_k=top_k, max_tokens=max_tokens, dtype=dtype)
    if len(servers) != len(prompts) or len(references) != len(prompts):
        return ParityResult(
            status="failed",
            reason=(
                f"{len(prompts)} prompts but {len(servers)} server and {len(references)} reference streams"
            ),
            top_k=top_k,
            max_tokens=max_tokens,
            dtype=dtype,
        )
    rows = [
        compare_stream(p, s, r, prompt_token_ids=_at(prompt_token_ids, i) or ())  # type: ignore[arg-type]
        for i, (p, s, r) in enumerate(zip(prompts, servers, references, strict=True))
    ]
    ds = [r.max_abs_dlogprob for r in rows if r.max_abs_dlogprob is not None]
    first = next((i for i, r in enumerate(rows) if not r.passed), None)
    if first is None:
        diverged = sum(1 for r in rows if r.divergence is not None)
        reason = f"{len(rows)} prompts match the reference"
        if diverged:
            reason += f" ({diverged} diverged at a near-tie within top-{top_k})"
    else:
        bad = rows[first]
        reason = f"prompt {first + 1} of {len(rows)}: {bad.note}"
    return ParityResult(
        status="passed" if first is None else "failed",
        reason=reason,
        top_k=top_k,
        max_tokens=max_tokens,
        dtype=dtype,
        prompts=rows,
        max_abs_dlogprob=max(ds) if ds else None,
        first_failure=first,
    )


def skipped(
    reason: str,
    *,
    top_k: int | None = None,
    max_tokens: int | None = None,
    dtype: str | None = None,
    reference: Mapping[str, object] | None = None,
) -> ParityResult:
    return ParityResult(
        status="skipped",
        reason=reason,
        top_k=top_k,
        max_tokens=max_tokens,
        dtype=dtype,
        reference=dict(reference or {}),
    )


def parse_vllm_logprobs(choice: Mapping[str, object]) -> Stream:
    """A `/v1/completions` choice (asked with `logprobs: k` and `return_tokens_as_token_ids: true`)
    as a Stream: tokens come as "token_id:N" strings, top_logprobs as {"token_id:N": logprob}.
    Raises ValueError when the tokens are not ids (nothing comparable)."""
    lp = choice.get("logprobs")
    text = choice.get("text")
    if not isinstance(lp, Mapping):
        return Stream(text=text if isinstance(text, str) else "")
    tokens_raw = lp.get("tokens")
    tokens = [_token_id(t) for t in tokens_raw] if isinstance(tokens_raw, list) else []
    lps_raw = lp.get("token_logprobs")
    lps = (
        [float(x) if isinstance(x, (int, float)) else None for x in lps_raw]
        if isinstance(lps_raw, list)
        else []
    )
    tops_raw = lp.get("top_logprobs")
    tops: list[dict[int, float] | None] = []
    if isinstance(tops_raw, list):
        for entry in tops_raw:
            if isinstance(entry, Mapping):
                top = {_token_id(k): float(v) for k, v in entry.items() if isinstance(v, (int, float))}
                if -1 in top:
                    raise ValueError(
                        "the server did not return token ids (return_tokens_as_token_ids ignored)"
                    )
                tops.append(top)
            else:
                tops.append(None)
    if any(t < 0 for t in tokens):
        raise ValueError("the server did not return token ids (return_tokens_as_token_ids ignored)")
    return Stream(
        tokens=tokens,
        logprobs=lps,
        top=tops,
        text=text if isinstance(text, str) else "",
    )


def _token_id(raw: object) -> int:
    """ "token_id:123" -> 123; anything else -> -1 (the server ignored return_tokens_as_token_ids)."""
    if isinstance(raw, str) and raw.startswith("token_id:"):
        rest = raw[len("token_id:") :]
        if rest.lstrip("-").isdigit():
            return int(rest)
    return -1
