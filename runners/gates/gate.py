"""Shared gate logic: one serve + smoke attempt, the fallback ladder around it, model facts.

`attempt()` starts a server (runners.serve), waits for READY, sends the smoke request(s) and, for
multimodal models, one text+image request. A server that was ready and then fails its first
request (or whose engine dies) is a FALSE-READY: reported with the first error signature logged
after the ready point. `run_gate()` wraps attempts in the fallback ladder (runners.gates.ladder) and
returns the stage result of the dummy or real gate.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runners.analysis.zero_code import OVERRIDE_RUNG, REMOTE_CODE_SKIP, ZERO_CODE_RUNGS, ZeroCodePlan
from runners.context import StageContext
from runners.contracts import Evidence, StageResult, utcnow
from runners.gates import checks
from runners.gates import evidence as ev
from runners.gates import parity as par
from runners.gates import quality as qual
from runners.gates.findings import load_findings_for, with_load_cause
from runners.gates.ladder import LadderState, Rung, RungRecord, Stop, ZeroCodeStep, next_step
from runners.gates.reference import BUDGET_ENV, ReferenceRun, start_reference
from runners.profile import Profile
from runners.recipe import FeatureSet, feature_set, features_off, serve_recipe
from runners.serve import (
    TINY_PNG_DATA_URL,
    ChatReply,
    RunningServer,
    ServeError,
    chat_completion,
    error_message,
    read_log_lines,
    served,
    server_error_evidence,
    text_completion,
)
from runners.stage_data import GateData, wire

# --------------------------------------------------------------------------- model facts


def facts_from_config(config: Mapping[str, Any], weight_names: Sequence[str] | None) -> dict[str, Any]:
    """The subset of the analysis the gates need, from config.json (+ index tensor names). Pure.

    Used when no analysis result is stored and the analysis itself refuses the checkpoint (e.g.
    `adapt-bot gate` on a bare folder). The config signals and the feature decision are the
    analysis's own (runners.analysis.config / .features), so the two can never disagree."""
    from runners.analysis import features as feat
    from runners.analysis.config import ConfigView
    from runners.analysis.model import Moe

    cfg = ConfigView(dict(config))
    raw_moe = cfg.moe()
    moe = Moe.model_validate(raw_moe) if raw_moe else None
    mtp_layers = cfg.mtp_layers()
    names = list(weight_names or [])
    mtp_weights = feat.mtp_weights(names, cfg.num_hidden_layers, weight_names is not None)
    modalities = [m for m, has in (("image", cfg.has_vision), ("audio", cfg.has_audio)) if has]
    multimodal = bool(modalities)
    decided = feat.decide(
        moe=moe,
        mtp_layers=mtp_layers,
        has_mtp_weights=mtp_weights,
        multimodal=multimodal,
        modalities=modalities,
        has_vision_weights=None,
    )
    return {
        "architecture": cfg.architecture,
        "model_type": cfg.model_type,
        "multimodal": multimodal,
        "moe": moe.model_dump() if moe else None,
        "mtp_layers": mtp_layers,
        "mtp_weights": mtp_weights,
        "max_position_embeddings": cfg.max_position_embeddings(),
        "features": {name: f.model_dump(mode="json") for name, f in decided.items()},
        "source": "config.json",
    }


def weight_names_of(model_dir: Path) -> list[str] | None:
    """Tensor names from model.safetensors.index.json, or from single-file safetensors headers."""
    index = model_dir / "model.safetensors.index.json"
    if index.is_file():
        try:
            return list(json.loads(index.read_text(encoding="utf-8")).get("weight_map", {}))
        except (OSError, ValueError):
            return None
    names: list[str] = []
    files = sorted(model_dir.glob("*.safetensors"))
    if not files:
        return None
    for f in files:
        try:
            with f.open("rb") as fh:
                n = int.from_bytes(fh.read(8), "little")
                if n > 100_000_000:
                    return None
                names.extend(k for k in json.loads(fh.read(n)) if k != "__metadata__")
        except (OSError, ValueError):
            return None
    return names


def has_weights(model_dir: Path) -> bool:
    return any(model_dir.glob("*.safetensors")) or any(model_dir.glob("*.bin"))


def model_facts(ctx: StageContext) -> dict[str, Any]:
    """The stored analysis result; else the analysis run here (headers only, sub-second); else the
    config-only fallback (a checkpoint the analysis refuses still gets a gate verdict)."""
    prev = ctx.previous.get("analyze")
    if prev is not None and prev.data.get("features"):
        return dict(prev.data)
    try:
        from runners.analysis import analyze

        data = analyze(
            ctx.model_path, vllm_root=ctx.vllm_root, vllm_ascend_root=ctx.vllm_ascend_root
        ).model_dump(mode="json")
        data["source"] = "analysis (run by the stage)"
        return data
    except Exception:  # noqa: S110 - any analysis failure: fall back to config.json
        pass
    try:
        config = json.loads((ctx.model_path / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        config = {}
    return facts_from_config(config, weight_names_of(ctx.model_path))


# --------------------------------------------------------------------------- one attempt

#: Proof of a healthy start, quoted with line numbers when a gate passes.
HEALTHY_LINES = (
    r"Resolved architecture: ",
    r"Application startup complete",
    r'"GET /v1/models HTTP/1\.1" 200',
)


@dataclass
class Attempt:
    ok: bool
    log_name: str
    reason: str | None = None
    diagnosis: str | None = None
    next_step: str | None = None
    evidence: list[Evidence] = field(default_factory=list)
    signature: str | None = None
    hint: str = "none"
    meaning: str = ""
    sig_next_step: str = ""
    argv: list[str] = field(default_factory=list)
    command: str = ""
    log_path: str | None = None
    ready_after_s: float | None = None
    notice_latency_s: float | None = None
    duration_s: float = 0.0
    smoke: dict[str, Any] | None = None
    image_smoke: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    #: Log lines that show a healthy start (architecture resolved, ready line), for a pass.
    healthy: list[Evidence] = field(default_factory=list)

    def data(self) -> dict[str, Any]:
        return {
            "argv": self.argv,
            "command": self.command,
            "log_path": self.log_path,
            "ready_after_s": self.ready_after_s,
            "notice_latency_s": self.notice_latency_s,
            "smoke": self.smoke,
            "image_smoke": self.image_smoke,
            "signature": self.signature,
            "duration_s": round(self.duration_s, 2),
            **self.extra,
        }


def _reply_data(reply: ChatReply) -> dict[str, Any]:
    return {
        "request": reply.request,
        "status": reply.status,
        "content": ev.clip_line(reply.content, 300),
        "elapsed_s": round(reply.elapsed_s, 3),
        "ok": reply.ok,
        "error": reply.error,
        "response_excerpt": reply.body_excerpt if not reply.ok else "",
    }


def _sig_fields(att: Attempt, sig: ev.SignatureHit | None) -> None:
    if sig is not None:
        att.signature = sig.signature.id
        att.hint = sig.signature.ladder
        att.meaning = sig.signature.meaning
        att.sig_next_step = sig.signature.next_step


def attempt(
    ctx: StageContext,
    *,
    log_name: str,
    load_format: str | None,
    multimodal: bool,
    extra_args: Sequence[str] = (),
    extra_env: Mapping[str, str] | None = None,
    devices: Sequence[str] | None = None,
    profile: Profile | None = None,
    requests: int = 1,
    on_ready: Callable[[RunningServer, Attempt], None] | None = None,
    overrides: Mapping[str, Any] | None = None,
    chat: bool | None = None,
) -> Attempt:
    """Start + READY + smoke (+ image smoke). Never raises for server failures: they become an Attempt.

    `chat`: smoke through /v1/chat/completions (None = when the checkpoint ships a chat template);
    a base model without one is smoke-tested through /v1/completions. Every smoke reply that passed
    gets an output-quality record (`extra["quality"]`, runners.gates.quality)."""
    prof: Profile = profile or ctx.profile
    real = load_format != "dummy"
    if chat is None:
        chat = checks.chat_template_present(ctx.model_path)
    t0 = time.monotonic()
    att = Attempt(ok=False, log_name=log_name, log_path=str(ctx.workspace.log_path(log_name)))
    att.extra["started_at"] = utcnow().isoformat()
    try:
        with served(
            ctx,
            load_format=load_format,
            extra_args=extra_args,
            extra_env=extra_env,
            log_name=log_name,
            devices=devices,
            profile=prof,
            overrides=overrides,
        ) as srv:
            att.argv = srv.argv
            att.command = srv.argv_display()
            att.extra["devices"] = srv.devices
            att.ready_after_s = srv.ready_after_s
            att.notice_latency_s = srv.notice_latency_s
            att.healthy.extend(srv.notes)  # plan facts (e.g. the --max-model-len clamp) are evidence
            ready_line = len(srv.log_lines())
            replies: list[ChatReply] = []
            for _ in range(max(1, requests)):
                if chat:
                    reply = chat_completion(srv, prof.smoke.prompt, prof.smoke.max_tokens)
                else:
                    reply = text_completion(srv, prof.smoke.prompt, prof.smoke.max_tokens)
                replies.append(reply)
                if not reply.ok:
                    break
            att.smoke = _reply_data(replies[0])
            att.smoke["endpoint"] = "/v1/chat/completions" if chat else "/v1/completions"
            if not chat:
                att.smoke["note"] = "no chat template: smoke-tested through /v1/completions"
            bad = next((r for r in replies if not r.ok), None)
            if bad is None and multimodal:
                img = chat_completion(
                    srv, "describe the image", prof.smoke.max_tokens, image_url=TINY_PNG_DATA_URL
                )
                att.image_smoke = _reply_data(img)
                bad = None if img.ok else img
            if bad is not None:
                _false_ready(att, srv, bad, ready_line, real)
            else:
                att.ok = True
                q = qual.assess(replies[0].content, special_tokens=checks.special_tokens_of(ctx.model_path))
                att.extra["quality"] = {
                    **q.model_dump(),
                    "reason": q.detail or None,
                    "reply": ev.clip_line(replies[0].content, 300),
                    "chat_template": chat,
                    "known_answers": [],
                }
                lines = srv.log_lines()
                for pattern in HEALTHY_LINES:
                    hit = ev.find(lines, pattern)
                    if hit is not None:
                        att.healthy.append(hit.evidence(str(srv.log_path)))
                if on_ready is not None:
                    on_ready(srv, att)
    except ServeError as exc:
        att.ok = False
        att.reason = exc.reason
        att.diagnosis = exc.diagnosis
        att.next_step = exc.next_step
        att.evidence = list(exc.evidence)
        att.argv = att.argv or exc.argv
        att.signature = exc.signature
        if exc.signature:
            sig = next((s for s in ev.SIGNATURES if s.id == exc.signature), None)
            if sig is not None:
                att.hint, att.meaning, att.sig_next_step = sig.ladder, sig.meaning, sig.next_step
        elif exc.reason == "timeout":
            att.meaning = exc.diagnosis
    att.duration_s = time.monotonic() - t0
    att.extra["finished_at"] = utcnow().isoformat()
    return att


def _false_ready(att: Attempt, srv: RunningServer, bad: ChatReply, ready_line: int, real: bool) -> None:
    """Ready, then the request failed: wait briefly for the engine to die / log, then explain.
    A 4xx from a live server is its answer to the request, not a crash: quoted, not retried."""
    if bad.status is not None and 400 <= bad.status < 500 and bad.status not in (408, 429) and srv.alive():
        _refused(att, srv, bad)
        return
    deadline = time.monotonic() + 3.0
    while srv.alive() and time.monotonic() < deadline:
        time.sleep(0.1)
    evs, sig, err = server_error_evidence(srv, since_line=ready_line, real_weights=real)
    _sig_fields(att, sig)
    if bad.status == 200 and srv.alive() and sig is None and err is None:
        # served fine, said nothing: the model's first token was EOS (random/dummy weights do this)
        att.reason = "empty-output"
        att.diagnosis = (
            f"ready after {srv.ready_after_s:.1f} s and the request answered 200, but the content was empty; "
            "the server is healthy: the model ended at once (EOS first), or the chat template swallowed it"
        )
        att.next_step = (
            "check the tokenizer's eos_token / chat template; with dummy weights try the real gate"
        )
        att.evidence = [
            Evidence(kind="request", text=json.dumps(bad.request)[:500]),
            Evidence(kind="response", text=f"HTTP 200: {bad.body_excerpt}"),
        ]
        return
    first = err.text.strip() if err else (sig.hit.text.strip() if sig else "no error line in the log")
    engine = "and the engine died" if not srv.alive() else "(the process is still up)"
    att.reason = "false-ready"
    att.diagnosis = (
        f"ready after {srv.ready_after_s:.1f} s (/v1/models 200), then the smoke request failed "
        f"({bad.error}) {engine}: {ev.clip_line(first, 300)}"
    )
    att.next_step = (
        sig.signature.next_step if sig else None
    ) or "read the first error signature; run the ladder"
    req = Evidence(kind="request", text=json.dumps(bad.request)[:500])
    resp = Evidence(kind="response", text=f"HTTP {bad.status}: {bad.body_excerpt or bad.error}")
    att.evidence = [*evs, req, resp]


def _refused(att: Attempt, srv: RunningServer, bad: ChatReply) -> None:
    """Ready, and the server refused the smoke request with a 4xx: its own message is the diagnosis.
    Deterministic (the same request gets the same answer): the ladder does not retry it."""
    said = error_message(bad.body_excerpt) or bad.body_excerpt or "no message"
    endpoint = "/v1/chat/completions" if "messages" in bad.request else "/v1/completions"
    att.reason = "request-rejected"
    att.diagnosis = (
        f"ready after {srv.ready_after_s:.1f} s, then the server refused the smoke request to {endpoint} "
        f"with HTTP {bad.status}: {ev.clip_line(said, 400)}"
    )
    low = said.lower()
    if "chat template" in low or "chat_template" in low:
        att.next_step = (
            "the tokenizer has no usable chat template: add one to tokenizer_config.json (or "
            "chat_template.jinja) if this is a chat model, or serve it as a base model (/v1/completions)"
        )
    elif "max_tokens" in low or "context length" in low or "maximum" in low:
        att.next_step = (
            "the request does not fit the model's context: raise --max-model-len or lower max_tokens"
        )
    else:
        att.next_step = (
            f"fix what the server's HTTP {bad.status} message names (request shape, model name, limits)"
        )
    att.hint = "no-retry"
    att.meaning = att.diagnosis
    att.sig_next_step = att.next_step
    att.evidence = [
        Evidence(kind="request", text=json.dumps(bad.request)[:500]),
        Evidence(kind="response", text=f"HTTP {bad.status}: {bad.body_excerpt}"),
    ]


# --------------------------------------------------------------------------- gate with ladder


def _attempt_record(name: str, att: Attempt, env: Mapping[str, str], note: str) -> RungRecord:
    return RungRecord(
        rung=name,
        status="passed" if att.ok else "failed",
        note=note,
        reason=att.reason,
        signature=att.signature,
        argv=att.argv,
        env=dict(env),
        log_path=att.log_path,
        ready_after_s=att.ready_after_s,
        duration_s=round(att.duration_s, 2),
    )


def run_ladder(
    ctx: StageContext,
    first: Attempt,
    *,
    base_log: str,
    run: Callable[[str, Rung], Attempt],
    multimodal: bool,
    profile: Profile | None = None,
    zero_code: Sequence[ZeroCodeStep] = (),
) -> tuple[list[RungRecord], Attempt | None, Stop | None]:
    """Walk the ladder after a failed `first` attempt. Returns (records, passing attempt, stop)."""
    prof: Profile = profile or ctx.profile
    records: list[RungRecord] = []
    seen = {first.signature} if first.signature else set()
    last = first
    while True:
        if ctx.cancel.is_set() or last.reason == "cancelled":
            return records, None, Stop("cancelled", "rerun the stage when ready")
        base_argv = first.argv
        state = LadderState(
            rungs=prof.ladder.rungs,
            done=records,
            base_argv=base_argv,
            eager_args=prof.serve.eager_args,
            text_only_args=prof.serve.text_only_args,
            multimodal=multimodal,
            signature=last.signature,
            hint=last.hint,
            meaning=last.meaning,
            next_step=last.sig_next_step,
            seen_signatures=frozenset(s for s in seen if s),
            first_signature=first.signature,
            zero_code=zero_code,
        )
        skipped, decision = next_step(state)
        records.extend(skipped)
        if isinstance(decision, Stop):
            return records, None, decision
        ctx.progress(f"fallback ladder: {decision.name}")
        att = run(f"{base_log}-{decision.name}", decision)
        records.append(_attempt_record(decision.name, att, decision.env, decision.note))
        if att.signature:
            seen.add(att.signature)
        if att.ok:
            return records, att, None
        last = att


def run_gate(ctx: StageContext, *, stage: str, load_format: str | None) -> StageResult:
    """The dummy or real gate. The real gate also starts the transformers reference at once (it
    overlaps the server's start) and, on the server that answered its smoke, compares the two
    (runners.gates.checks); the reference process never outlives the stage.

    A gate that fails after its ladder runs the job's adapter step when it has one (runners.adapter,
    off by default), in this same stage: each patch is installed and re-gated from the dummy gate."""
    result = _gate_stage(ctx, stage=stage, load_format=load_format)
    fs = feature_set(ctx.previous) if load_format != "dummy" else FeatureSet()
    if fs.features and not ctx.cancel.is_set():  # the probes' set, confirmed or refuted at full size
        result = _at_full_size(ctx, result, fs, stage=stage, load_format=load_format)
    spec = getattr(ctx.options, "adapter", None)
    if not (spec is None or result.ok or result.reason in ADAPTER_NOT_FOR or ctx.cancel.is_set()):
        result = _with_adapter(ctx, spec, result, stage=stage, load_format=load_format)
    # one typed shape for both gates, shared with the builders (runners.stage_data)
    return result.model_copy(update={"data": wire(GateData.model_validate(result.data))})


def full_size_rows(profile: Profile, features: Sequence[str], log_path: str | None) -> dict[str, Any]:
    """Each feature of the set judged on the full-size start's own log with the profile's evidence
    patterns: `confirmed` (a proof line, no veto line) or `refuted` (why). Pure apart from the read."""
    lines = read_log_lines(Path(log_path)) if log_path else []
    rows: dict[str, Any] = {}
    for feature in features:  # the probes' own rule (runners.gates.evidence.proof)
        spec = profile.features.get(feature)
        found = (
            ev.proof(lines, spec.evidence, spec.negative_evidence) if spec is not None else ev.Proof([], [])
        )
        if found.proven:
            hit = found.hits[0]
            rows[feature] = {"status": "confirmed", "line": hit.line, "text": ev.clip_line(hit.text, 200)}
        else:
            rows[feature] = {"status": "refuted", "why": f"at full size: {found.why_not()}"}
    return rows


def _at_full_size(
    ctx: StageContext, result: StageResult, fs: FeatureSet, *, stage: str, load_format: str | None
) -> StageResult:
    """The real-weight start carried the features the probes proved on the shrunk model (issue 13).
    Passed: each is confirmed or refuted by this start's own log. Failed: the set is taken off for
    one start; if that passes, the set is what broke the full-size start, and every feature of it
    is refuted (later starts drop it, runners.recipe.feature_set)."""
    shown = " ".join([*fs.args, *(f"{k}={v}" for k, v in fs.env.items())])
    record: dict[str, Any] = {"features": list(fs.features), "flags": shown}
    if result.ok:
        rows = full_size_rows(ctx.profile, fs.features, result.data.get("log_path"))
        note = "; ".join(f"{f}: {r['status']}" for f, r in rows.items())
        return result.model_copy(
            update={
                "data": {**result.data, "feature_set": record, "features_at_full_size": rows},
                "evidence": [
                    *result.evidence,
                    Evidence(
                        kind="config", text=f"full-size start with the probes' feature set ({shown}): {note}"
                    ),
                ],
            }
        )
    ctx.progress(f"{stage} failed with the feature set ({shown}); one start without it")
    with features_off():
        plain = _gate_stage(ctx, stage=stage, load_format=load_format)
    if not plain.ok:  # not (only) the features: the plain failure is the gate's verdict
        return plain.model_copy(update={"data": {**plain.data, "feature_set": {**record, "undecided": True}}})
    why = f"the full-size start with {shown} failed ({result.reason}), without it passed"
    rows = {f: {"status": "refuted", "why": why} for f in fs.features}
    return plain.model_copy(
        update={
            "data": {**plain.data, "feature_set": record, "features_at_full_size": rows},
            "evidence": [
                *plain.evidence,
                Evidence(kind="config", text=f"feature set refuted at full size: {why}"),
            ],
        }
    )


#: failures no code patch can change (the checkpoint is missing, the job was stopped)
ADAPTER_NOT_FOR = frozenset({"no-weights", "cancelled"})


def _with_adapter(
    ctx: StageContext, spec: Any, failed: StageResult, *, stage: str, load_format: str | None
) -> StageResult:
    from runners import adapter

    rounds = [0]

    def regate() -> list[StageResult]:
        rounds[0] += 1
        tag = f"adapter{rounds[0]}"
        dummy = _gate_stage(ctx, stage="dummy-gate", load_format="dummy", log_name=f"dummy-gate-{tag}")
        if stage == "dummy-gate" or not dummy.ok:
            return [dummy]
        return [dummy, _gate_stage(ctx, stage=stage, load_format=load_format, log_name=f"{stage}-{tag}")]

    analysis = ctx.previous.get("analyze")
    try:
        record, passing = adapter.run_step(
            ctx, spec, failed, regate, analysis.data if analysis is not None else model_facts(ctx)
        )
    except Exception as exc:  # the step must never hide the gate's own failure
        adapter.drop(ctx)
        record = {"command": adapter.shown_argv(spec.command), "attempts": [], "outcome": "error"}
        record["stopped"] = f"error: {type(exc).__name__}: {str(exc)[:300]}"
        passing = None
    text = adapter.render_text(record)
    if passing is not None:
        passing.data["adapter"] = record
        passing.data["adapter_first_failure"] = {
            "reason": failed.reason,
            "diagnosis": failed.diagnosis,
            "log_path": failed.data.get("log_path"),
        }
        passing.diagnosis = f"{passing.diagnosis} {text}".strip() if passing.diagnosis else text
        passing.started_at = failed.started_at
        return passing
    failed.data["adapter"] = record
    failed.diagnosis = f"{failed.diagnosis or ''} {text}".strip()
    failed.finished_at = utcnow()
    return failed


def _gate_stage(
    ctx: StageContext, *, stage: str, load_format: str | None, log_name: str | None = None
) -> StageResult:
    """One gate with its ladder (no adapter step)."""
    started = utcnow()
    facts = model_facts(ctx)
    if load_format is None and not has_weights(ctx.model_path):
        return StageResult(
            stage=stage,
            status="failed",
            reason="no-weights",
            diagnosis=f"{ctx.model_path} has no *.safetensors / *.bin files: the real gate needs weights",
            next_step="download the full checkpoint (the dummy gate needs only config and tokenizer)",
            started_at=started,
            finished_at=utcnow(),
        )
    real = stage == "real-gate"
    chat = checks.chat_template_present(ctx.model_path, facts)
    ref = _start_reference(ctx, facts) if real else None
    try:
        return _gate(
            ctx,
            stage=stage,
            load_format=load_format,
            facts=facts,
            started=started,
            chat=chat,
            on_ready=_ready_checks(ctx, ref, real=real, chat=chat),
            log_name=log_name or stage,
        )
    finally:
        if ref is not None:
            ref.stop()


def _start_reference(ctx: StageContext, facts: Mapping[str, Any]) -> ReferenceRun:
    try:
        config = json.loads((ctx.model_path / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        config = {}
    ctx.progress("reference parity: starting transformers on the same weights (in the background)")
    return start_reference(
        model_dir=ctx.model_path,
        config=config if isinstance(config, dict) else {},
        facts=facts,
        profile=ctx.profile,
        trust_remote_code=bool(getattr(ctx.options, "trust_remote_code", False)),
        scratch=ctx.workspace.path / "tmp",
        log_path=ctx.workspace.log_path("real-gate-reference"),
    )


def _ready_checks(
    ctx: StageContext, ref: ReferenceRun | None, *, real: bool, chat: bool
) -> Callable[[RunningServer, Attempt], None]:
    """Run on the server that passed its smoke: known answers (chat models), then parity (the
    reference has had the server's start and the known answers to finish)."""

    def run(srv: RunningServer, att: Attempt) -> None:
        quality = att.extra.setdefault("quality", {})
        if real and chat:
            answers = checks.known_answers(srv)
            quality["known_answers"] = [a.model_dump() for a in answers]
            warning = qual.answer_warning(answers)
            if warning:
                att.extra.setdefault("warnings", []).append(warning)
        if real and ref is not None:
            ctx.progress("reference parity: comparing the server with transformers")
            att.extra["parity"] = checks.parity_against(srv, ref, ctx.cancel).model_dump(mode="json")

    return run


def _gate(
    ctx: StageContext,
    *,
    stage: str,
    load_format: str | None,
    facts: Mapping[str, Any],
    started: Any,
    chat: bool,
    on_ready: Callable[[RunningServer, Attempt], None],
    log_name: str,
) -> StageResult:
    prof: Profile = ctx.profile
    multimodal = bool(facts.get("multimodal"))
    real = stage == "real-gate"
    first = attempt(
        ctx, log_name=log_name, load_format=load_format, multimodal=multimodal, chat=chat, on_ready=on_ready
    )
    data: dict[str, Any] = {
        "load_format": load_format or "auto",
        "facts_source": facts.get("source", "analyze"),
    }
    data.update(first.data())
    data["load_findings"] = load_findings_for(first.log_path, ctx.model_path)  # issue 10: load warnings
    inherited = serve_recipe(ctx.previous)
    if inherited is not None:  # the earlier gate's zero-code flags were on this start (runners.recipe)
        data["serve_recipe"] = inherited
    if first.ok:
        return _judge(
            StageResult(
                stage=stage,
                status="passed",
                started_at=started,
                finished_at=utcnow(),
                evidence=_pass_evidence(first),
                data={**data, "ladder": [], "fallback": None},
            ),
            first,
            real=real,
            chat=chat,
        )
    records: list[RungRecord] = []
    passing: Attempt | None = None
    stop: Stop | None = None
    if prof.ladder.enabled and first.reason != "cancelled":

        def run(log_name: str, rung: Rung) -> Attempt:
            return attempt(
                ctx,
                log_name=log_name,
                load_format=load_format,
                multimodal=multimodal and rung.name != "text-only",
                extra_args=rung.args,
                extra_env=rung.env,
                chat=chat,
                on_ready=on_ready,
            )

        records, passing, stop = run_ladder(
            ctx,
            first,
            base_log=log_name,
            run=run,
            multimodal=multimodal,
            zero_code=zero_code_steps(ctx, facts),
        )
    data["ladder"] = [r.model_dump() for r in records]
    data["first_failure"] = {"reason": first.reason, "signature": first.signature, "log_path": first.log_path}
    if passing is not None:
        rung = records[-1].rung
        recipe = _zero_code_recipe(rung, passing, facts)
        if recipe is not None:
            data["serve_recipe"] = recipe
            diagnosis = (
                f"vLLM does not register {facts.get('architecture')}; it serves through "
                f"{recipe['runs_through']} (the '{rung}' zero-code rung)"
            )
            next_step = (
                "every later start and the delivered e2e config and tutorial use the same flags "
                f"({' '.join(recipe['args'])}); a native registration would remove them"
            )
        else:
            diagnosis = (
                f"the plain command failed ({first.reason}: {first.diagnosis}); it passed on the "
                f"'{rung}' rung of the fallback ladder"
            )
            next_step = f"serve with the '{rung}' changes (see data.fallback) and fix the root cause"
        return _judge(
            StageResult(
                stage=stage,
                status="passed",
                diagnosis=diagnosis,
                next_step=next_step,
                started_at=started,
                finished_at=utcnow(),
                evidence=[*first.evidence, *_pass_evidence(passing)],
                data={**data, "fallback": {"rung": rung, **passing.data()}},
            ),
            passing,
            real=real,
            chat=chat,
        )
    next_text = first.next_step
    if stop is not None and stop.next_step and first.reason != "cancelled":
        next_text = stop.next_step if first.signature else (first.next_step or stop.next_step)
    return StageResult(
        stage=stage,
        status="failed",
        reason=first.reason or "crashed",
        diagnosis=with_load_cause(first.diagnosis, data["load_findings"]),
        next_step=next_text,
        started_at=started,
        finished_at=utcnow(),
        evidence=first.evidence,
        data={**data, "fallback": None},
    )


def _zero_code_plan(facts: Mapping[str, Any]) -> ZeroCodePlan | None:
    """The analysis's zero-code plan, validated once for the ladder and the recipe."""
    raw = facts.get("zero_code")
    if not isinstance(raw, Mapping):
        return None
    try:
        return ZeroCodePlan.model_validate(raw)
    except ValueError:
        return None


def zero_code_steps(ctx: StageContext, facts: Mapping[str, Any]) -> list[ZeroCodeStep]:
    """The analysis's zero-code plan as ladder steps; a rung that runs the checkpoint's own code
    is skipped unless the job opted in to remote code."""
    planned = _zero_code_plan(facts)
    if planned is None:
        return []
    allowed = bool(getattr(ctx.options, "trust_remote_code", False))
    steps = []
    for r in planned.rungs:
        skip = r.skip or (REMOTE_CODE_SKIP if r.remote_code and not allowed else None)
        steps.append(ZeroCodeStep(name=r.rung, args=tuple(r.args), skip=skip, note=r.runs_through))
    return steps


def _zero_code_recipe(rung: str, passing: Attempt, facts: Mapping[str, Any]) -> dict[str, Any] | None:
    plan = _zero_code_plan(facts) if rung in ZERO_CODE_RUNGS else None
    step = next((r for r in plan.rungs if r.rung == rung), None) if plan is not None else None
    if plan is None or step is None:
        return None
    return {
        "rung": rung,
        "args": list(step.args),
        "runs_through": step.runs_through,
        "basis": list(plan.match.basis) if rung == OVERRIDE_RUNG else [],
        "architecture": facts.get("architecture"),
    }


def _judge(result: StageResult, att: Attempt, *, real: bool, chat: bool) -> StageResult:
    """A served, smoke-passing gate, judged on what the checks found (issue 10):
    parity failed -> `reference-mismatch`; a degenerate reply of a chat model in the real gate ->
    `degenerate-output` unless parity passed (random weights give gibberish that parity proves is
    the transformers function); otherwise passed, with the findings recorded. Never a silent pass:
    a skipped parity check stays `data.parity.status == "skipped"` with its reason."""
    quality: dict[str, Any] = dict(att.extra.get("quality") or {})
    # result.data already holds the passing attempt's extra (first attempt) or not (a rung): merge once
    warnings: list[str] = list(
        dict.fromkeys([*result.data.get("warnings", []), *att.extra.get("warnings", [])])
    )
    result.data["quality"] = quality
    if real:
        parity = att.extra.get("parity") or par.skipped("reference not run").model_dump(mode="json")
        result.data["parity"] = parity
        record = par.ParityResult.model_validate(parity)
        result.evidence.extend(checks.parity_evidence(record))
    else:
        record = None
    for a in quality.get("known_answers") or []:
        mark = "right" if a.get("ok") else "WRONG"
        result.evidence.append(
            Evidence(
                kind="known-answer",
                text=f"{a.get('prompt')!r} -> {a.get('answer')!r} (expected {a.get('expected')}: {mark})",
            )
        )
    if not chat:
        result.evidence.append(Evidence(kind="note", text="no chat template: smoke through /v1/completions"))
    degenerate = bool(quality.get("degenerate"))
    if record is not None and record.status == "failed":
        result.status = "failed"
        result.reason = "reference-mismatch"
        result.diagnosis = checks.mismatch_diagnosis(record)
        result.next_step = checks.MISMATCH_NEXT_STEP
    elif real and chat and degenerate and (record is None or record.status != "passed"):
        result.status = "failed"
        result.reason = "degenerate-output"
        why = record.reason if record is not None else "no parity record"
        result.diagnosis = (
            f"the chat model's smoke reply is degenerate ({quality.get('detail')}): "
            f"{quality.get('reply')!r}; reference parity did not pass ({why}), so nothing shows that "
            "this is the checkpoint's own behaviour rather than a serving fault"
        )
        result.next_step = (
            "check the weight mapping, dtype and chat template; if the reference was skipped for its "
            f"budget, raise {BUDGET_ENV} on a host with the memory and rerun the real gate"
        )
        quality["failed_gate"] = True
    elif degenerate:
        why = (
            "parity passed: the served model matches transformers, the weights produce this"
            if record is not None and record.status == "passed"
            else ("dummy weights" if not real else "base model without a chat template")
        )
        warnings.append(f"degenerate smoke reply ({quality.get('detail')}), recorded only: {why}")
    result.data["warnings"] = warnings
    return result


def _pass_evidence(att: Attempt) -> list[Evidence]:
    out = [Evidence(kind="command", text=att.command), *att.healthy]
    if att.smoke:
        out.append(Evidence(kind="request", text=json.dumps(att.smoke["request"])[:500]))
        out.append(Evidence(kind="response", text=f"HTTP {att.smoke['status']}: {att.smoke['content']!r}"))
    if att.image_smoke:
        out.append(
            Evidence(
                kind="response",
                text=f"image: HTTP {att.image_smoke['status']}: {att.image_smoke['content']!r}",
            )
        )
    return out
