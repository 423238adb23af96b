"""The fallback ladder as a pure decision: given what failed and which rungs ran, what to try next.

Order (shared reference "adaptation" §4): (1) reproduce once with the same flags; (2)
`--enforce-eager`; (3) `TORCHDYNAMO_DISABLE=1`, only for the VL + dynamo signature; (4) text-only
isolation (`--limit-mm-per-prompt` all zero), only for multimodal models; (5) stop with the
signature's known fix and the next step for a human. Every rung is recorded, including the ones
skipped and why. Rungs are cumulative: once eager is on it stays on for the later rungs.
Signatures marked `stop` (not registered, weight mapping, a rejected flag, ...) are deterministic:
after the one reproduction no other rung can change them, so the ladder stops and records the rest
as skipped. One exception: an architecture vLLM does not register (`not-registered` first) walks the
zero-code rungs instead (issue 14: `architecture-override` = `--hf-overrides` to the structurally
matching registered class, `transformers-backend` = `--model-impl transformers`), each on its own
(not cumulative), as the analysis planned them (runners.analysis.zero_code); the reproduction and
the other rungs are skipped, since vLLM's registry check is static. A request the server refused
with a 4xx (hint `no-retry`) is not even reproduced: the same request gets the same answer.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, Field

from runners.analysis.zero_code import ZERO_CODE_RUNGS

RungStatus = Literal["passed", "failed", "skipped"]


class RungRecord(BaseModel):
    """One rung as it happened (goes into StageResult.data["ladder"])."""

    rung: str
    status: RungStatus
    note: str = ""
    reason: str | None = None
    signature: str | None = None
    argv: list[str] = Field(default_factory=list)
    env: dict[str, str] = Field(default_factory=dict)
    log_path: str | None = None
    ready_after_s: float | None = None
    duration_s: float | None = None


@dataclass(frozen=True)
class Rung:
    """What to run next: flags/env added on top of the base serve command."""

    name: str
    args: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    note: str = ""


@dataclass(frozen=True)
class Stop:
    diagnosis: str
    next_step: str
    skipped: tuple[RungRecord, ...] = ()


@dataclass(frozen=True)
class ZeroCodeStep:
    """One zero-code rung as planned (args) or why it cannot run (skip)."""

    name: str
    args: tuple[str, ...] = ()
    skip: str | None = None
    note: str = ""


#: the first failure that sends the ladder down the zero-code rungs
ZERO_CODE_SIGNATURE = "not-registered"


@dataclass(frozen=True)
class LadderState:
    """Inputs of one decision."""

    rungs: Sequence[str]  # the profile's enabled rungs, in order
    done: Sequence[RungRecord]  # rungs already decided (ran or skipped)
    base_argv: Sequence[str]  # the original serve argv
    eager_args: Sequence[str]
    text_only_args: Sequence[str]
    multimodal: bool
    signature: str | None  # id of the latest known signature (evidence.SIGNATURES)
    hint: str  # that signature's ladder hint ("stop", "enforce-eager", ..., "none")
    meaning: str = ""
    next_step: str = ""
    seen_signatures: frozenset[str] = frozenset()
    #: the signature of the plain command's failure (decides the zero-code path)
    first_signature: str | None = None
    zero_code: Sequence[ZeroCodeStep] = ()


def cumulative(done: Sequence[RungRecord], state: LadderState) -> tuple[tuple[str, ...], dict[str, str]]:
    """Flags and env of every rung that ran so far (rungs stack)."""
    args: list[str] = []
    env: dict[str, str] = {}
    for r in done:
        if r.status == "skipped":
            continue
        if r.rung == "enforce-eager":
            args.extend(state.eager_args)
        elif r.rung == "torchdynamo-disable":
            env["TORCHDYNAMO_DISABLE"] = "1"
        elif r.rung == "text-only":
            args.extend(state.text_only_args)
    return tuple(args), env


def _has_all(argv: Sequence[str], flags: Sequence[str]) -> bool:
    return all(f in argv for f in flags if f.startswith("--"))


def next_step(state: LadderState) -> tuple[list[RungRecord], Rung | Stop]:
    """Decide. Returns (newly skipped rungs to record, the rung to run or Stop)."""
    decided = {r.rung for r in state.done}
    skipped: list[RungRecord] = []
    if state.first_signature == ZERO_CODE_SIGNATURE:
        return _zero_code_step(state, decided)
    if state.hint == "no-retry":
        # a deterministic answer to the request itself (HTTP 4xx): not even a reproduction helps
        for name in state.rungs:
            if name not in decided:
                skipped.append(
                    RungRecord(
                        rung=name,
                        status="skipped",
                        signature=state.signature,
                        note="the server refused the request (HTTP 4xx): the same request gets the same "
                        "answer",
                    )
                )
        return skipped, Stop(
            diagnosis=state.meaning or "the server refused the request",
            next_step=state.next_step or "fix what the server's message names",
            skipped=tuple(skipped),
        )
    if state.hint == "stop" and "reproduce" in state.rungs and "reproduce" not in decided:
        # (1) always reproduce once: a crash seen once may be flaky; seen twice it is the model's
        return skipped, Rung("reproduce", (), {}, "same flags again: is the failure deterministic?")
    if state.hint == "stop":
        for name in state.rungs:
            if name not in decided:
                skipped.append(
                    RungRecord(
                        rung=name,
                        status="skipped",
                        signature=state.signature,
                        note=f"signature {state.signature} is deterministic: this rung cannot change it",
                    )
                )
        return skipped, Stop(
            diagnosis=state.meaning or "a known, deterministic failure",
            next_step=state.next_step or "code work needed",
            skipped=tuple(skipped),
        )
    args, env = cumulative(state.done, state)
    for name in state.rungs:
        if name in decided:
            continue
        if name == "reproduce":
            note = "same flags again (a stale port was cleaned first)" if state.hint == "retry-clean" else ""
            return skipped, Rung("reproduce", args, env, note or "same flags again")
        if name == "enforce-eager":
            if _has_all(state.base_argv, state.eager_args):
                skipped.append(
                    RungRecord(rung=name, status="skipped", note="the serve command is already eager")
                )
                continue
            return skipped, Rung(name, (*args, *state.eager_args), env, "graph capture / compilation off")
        if name == "torchdynamo-disable":
            if "vl-dynamo" not in state.seen_signatures and state.hint != "torchdynamo-disable":
                skipped.append(
                    RungRecord(rung=name, status="skipped", note="no VL + dynamo signature in the logs")
                )
                continue
            return skipped, Rung(
                name, args, {**env, "TORCHDYNAMO_DISABLE": "1"}, "dynamo off for the VL path"
            )
        if name == "text-only":
            if not state.multimodal:
                skipped.append(RungRecord(rung=name, status="skipped", note="not a multimodal model"))
                continue
            if "meta-tensor" in state.seen_signatures:
                skipped.append(
                    RungRecord(rung=name, status="skipped", note="text-only isolation already proved unsafe")
                )
                continue
            return skipped, Rung(name, (*args, *state.text_only_args), env, "multimodal inputs off")
        if name in ZERO_CODE_RUNGS:
            skipped.append(
                RungRecord(
                    rung=name, status="skipped", note="only for an architecture vLLM does not register"
                )
            )
    return skipped, Stop(
        diagnosis=state.meaning or "every rung of the fallback ladder failed",
        next_step=state.next_step or "read the log excerpts; this needs code work",
        skipped=tuple(skipped),
    )


def _zero_code_step(state: LadderState, decided: set[str]) -> tuple[list[RungRecord], Rung | Stop]:
    planned = {z.name: z for z in state.zero_code}
    skipped: list[RungRecord] = []
    for name in state.rungs:
        if name in decided:
            continue
        step = planned.get(name)
        if step is None:
            note = (
                "the analysis planned no such rung (no registry to match against)"
                if name in ZERO_CODE_RUNGS
                else "an architecture vLLM does not register: this rung cannot change that"
            )
            skipped.append(RungRecord(rung=name, status="skipped", signature=state.signature, note=note))
            continue
        if step.skip:
            skipped.append(RungRecord(rung=name, status="skipped", reason="not-applicable", note=step.skip))
            continue
        return skipped, Rung(name, step.args, {}, step.note)
    tried = [r for r in state.done if r.rung in planned and r.status == "failed"]
    return skipped, Stop(
        diagnosis=state.meaning or "vLLM does not register this architecture",
        next_step=(
            "no zero-code rung served it"
            + (f" ({', '.join(r.rung for r in tried)} failed: see their logs)" if tried else "")
            + "; "
            + (state.next_step or "code work needed")
        ),
        skipped=tuple(skipped),
    )


def summary(records: Sequence[RungRecord]) -> list[dict[str, Any]]:
    return [r.model_dump() for r in records]
