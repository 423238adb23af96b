"""The fallback ladder decision (pure)."""

from __future__ import annotations

from runners.gates.ladder import LadderState, Rung, RungRecord, Stop, cumulative, next_step

RUNGS = ["reproduce", "enforce-eager", "torchdynamo-disable", "text-only"]
EAGER = ["--enforce-eager"]
TEXT = ["--limit-mm-per-prompt", '{"image":0,"video":0,"audio":0}']


def state(done: list[RungRecord], **kw) -> LadderState:  # type: ignore[no-untyped-def]
    base = dict(
        rungs=RUNGS,
        done=done,
        base_argv=["vllm", "serve", "m"],
        eager_args=EAGER,
        text_only_args=TEXT,
        multimodal=False,
        signature=None,
        hint="none",
    )
    base.update(kw)
    return LadderState(**base)  # type: ignore[arg-type]


def walk(**kw) -> list[tuple[str, str]]:  # type: ignore[no-untyped-def]
    """Run the ladder to the end with every rung failing; returns (rung, status) in order."""
    done: list[RungRecord] = []
    while True:
        skipped, decision = next_step(state(done, **kw))
        done.extend(skipped)
        if isinstance(decision, Stop):
            return [(r.rung, r.status) for r in done]
        done.append(RungRecord(rung=decision.name, status="failed"))


def test_unknown_crash_on_text_model_walks_reproduce_then_eager() -> None:
    assert walk() == [
        ("reproduce", "failed"),
        ("enforce-eager", "failed"),
        ("torchdynamo-disable", "skipped"),
        ("text-only", "skipped"),
    ]


def test_already_eager_command_skips_the_eager_rung() -> None:
    steps = walk(base_argv=["vllm", "serve", "m", "--enforce-eager"])
    assert ("enforce-eager", "skipped") in steps and ("reproduce", "failed") in steps


def test_deterministic_signature_reproduces_once_then_stops_recording_every_rung() -> None:
    kw = dict(signature="not-registered", hint="stop", next_step="adapt")
    skipped, decision = next_step(state([], **kw))
    assert skipped == [] and isinstance(decision, Rung) and decision.name == "reproduce"
    assert decision.args == () and decision.env == {}
    done = [RungRecord(rung="reproduce", status="failed", signature="not-registered")]
    skipped, decision = next_step(state(done, **kw))
    assert isinstance(decision, Stop) and decision.next_step == "adapt"
    assert [r.rung for r in skipped] == RUNGS[1:] and all(r.status == "skipped" for r in skipped)
    assert "deterministic" in skipped[0].note


def test_deterministic_signature_without_reproduce_rung_stops_at_once() -> None:
    skipped, decision = next_step(state([], rungs=["enforce-eager"], signature="oom", hint="stop"))
    assert isinstance(decision, Stop) and [r.rung for r in skipped] == ["enforce-eager"]


def test_vl_dynamo_and_multimodal_walk_all_four_rungs_cumulatively() -> None:
    done: list[RungRecord] = []
    seen = frozenset({"vl-dynamo"})
    names = []
    while True:
        skipped, decision = next_step(
            state(
                done, multimodal=True, signature="vl-dynamo", hint="torchdynamo-disable", seen_signatures=seen
            )
        )
        done.extend(skipped)
        if isinstance(decision, Stop):
            break
        assert isinstance(decision, Rung)
        names.append((decision.name, decision.args, dict(decision.env)))
        done.append(RungRecord(rung=decision.name, status="failed"))
    assert [n for n, _, _ in names] == RUNGS
    # rungs stack: text-only keeps eager on and dynamo off
    _, args, env = names[-1]
    assert (
        "--enforce-eager" in args and "--limit-mm-per-prompt" in args and env == {"TORCHDYNAMO_DISABLE": "1"}
    )


def test_meta_tensor_after_text_only_is_not_retried() -> None:
    steps = walk(multimodal=True, seen_signatures=frozenset({"meta-tensor"}))
    assert ("text-only", "skipped") in steps


def test_stale_port_reproduces_after_cleanup() -> None:
    _, decision = next_step(state([], signature="stale-port", hint="retry-clean"))
    assert isinstance(decision, Rung) and decision.name == "reproduce" and "stale port" in decision.note


def test_cumulative_ignores_skipped_rungs() -> None:
    done = [
        RungRecord(rung="enforce-eager", status="skipped"),
        RungRecord(rung="torchdynamo-disable", status="failed"),
    ]
    args, env = cumulative(done, state([]))
    assert args == () and env == {"TORCHDYNAMO_DISABLE": "1"}


def test_profile_may_disable_rungs() -> None:
    assert walk(rungs=["enforce-eager"]) == [("enforce-eager", "failed")]
