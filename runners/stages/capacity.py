"""The capacity stage: the profile's baseline under N concurrent requests, and max length.

Baseline (Ascend: `--max-model-len 131072 --max-num-seqs 16`, then 32/64 on request) served with
`concurrency` simultaneous streamed chat completions: success count, TTFT (p50 / max) and output
throughput. Theoretical max length is the config's `max_position_embeddings`; the practical one is
the largest length that started and served — found by a bounded search (halving between the last
length that worked and the first that failed) when the baseline does not start.
"""

from __future__ import annotations

import statistics
import threading
import time
from typing import Any

from runners.context import StageContext
from runners.contracts import Evidence, StageResult, StageStatus, utcnow
from runners.gates.gate import Attempt, attempt, has_weights, model_facts
from runners.profile import CapacitySpec, Profile
from runners.serve import RunningServer, stream_completion

WORDS = ("alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta", "iota", "kappa")


def baseline_len(spec: CapacitySpec, theoretical: int | None, requested: int | None) -> int:
    """The length the baseline asks for (pure)."""
    want = requested or spec.max_model_len
    if spec.clamp_to_config and theoretical:
        want = min(want, theoretical)
    return want


def next_search_len(ok: int | None, failed: int, spec: CapacitySpec) -> int | None:
    """Next length to try between the largest that worked (`ok`, None = none yet) and the smallest that
    failed; None when the interval is narrower than the granularity (pure)."""
    lo = ok if ok is not None else 0
    if ok is None:
        # nothing worked yet: try the floor first, so a model that never starts is found quickly
        cand = spec.min_model_len
        return cand if cand < failed else None
    mid = (lo + failed) // 2
    mid -= mid % max(1, spec.granularity)
    if mid <= lo or mid >= failed:
        return None
    return mid


def prompt_of(words: int, i: int) -> str:
    return " ".join(WORDS[(i + k) % len(WORDS)] for k in range(words))


def load_test(server: RunningServer, spec: CapacitySpec, cancel: Any) -> dict[str, Any]:
    """`concurrency` simultaneous streamed requests; bounded by the server's request timeout."""
    results: list[Any] = [None] * spec.concurrency

    def one(i: int) -> None:
        results[i] = stream_completion(server, prompt_of(spec.prompt_words, i), spec.max_tokens)

    threads = [threading.Thread(target=one, args=(i,), daemon=True) for i in range(spec.concurrency)]
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
        "requests": spec.concurrency,
        "success": len(ok),
        "ttft_p50_s": round(statistics.median(ttfts), 3) if ttfts else None,
        "ttft_max_s": round(ttfts[-1], 3) if ttfts else None,
        "throughput_tok_s": round(tokens / wall, 2) if wall > 0 else None,
        "completion_tokens": tokens,
        "wall_s": round(wall, 2),
        "errors": errors[:5],
    }


def _try(
    ctx: StageContext, length: int, seqs: int, real: bool, *, measure: bool, prof: Profile
) -> tuple[Attempt, dict[str, Any]]:
    figures: dict[str, Any] = {}

    def on_ready(srv: RunningServer, _att: Attempt) -> None:
        if measure:
            figures.update(load_test(srv, prof.capacity, ctx.cancel))

    att = attempt(
        ctx,
        log_name=f"capacity-len{length}-seqs{seqs}",
        load_format=None if real else "dummy",
        multimodal=False,
        overrides={"max_model_len": length, "max_num_seqs": seqs},
        on_ready=on_ready,
    )
    return att, figures


def run(ctx: StageContext) -> StageResult:
    started = utcnow()
    prof: Profile = ctx.profile
    spec = prof.capacity
    facts = model_facts(ctx)
    theoretical = facts.get("max_position_embeddings")
    theoretical = int(theoretical) if isinstance(theoretical, int) else None
    real = has_weights(ctx.model_path)
    base = baseline_len(spec, theoretical, ctx.options.max_model_len)
    seq_levels = [*spec.max_num_seqs, *(spec.optional_max_num_seqs if spec.run_optional else [])]
    runs: list[dict[str, Any]] = []
    evidence: list[Evidence] = []
    practical: int | None = None
    search: list[dict[str, Any]] = []

    def record(att: Attempt, length: int, seqs: int, figures: dict[str, Any], kind: str) -> dict[str, Any]:
        row: dict[str, Any] = {
            "kind": kind,
            "max_model_len": length,
            "max_num_seqs": seqs,
            "status": "served" if att.ok else (att.reason or "failed"),
            "ready_after_s": att.ready_after_s,
            "log_path": att.log_path,
            "argv": att.argv,
            **figures,
        }
        if not att.ok:
            row["diagnosis"] = att.diagnosis
            evidence.extend(att.evidence[:2])
        return row

    first_seqs = seq_levels[0]
    att, figures = _try(ctx, base, first_seqs, real, measure=True, prof=prof)
    runs.append(record(att, base, first_seqs, figures, "baseline"))
    if att.ok:
        practical = base
    elif att.reason != "cancelled":
        ok_len: int | None = None
        failed = base
        for _ in range(spec.search_steps):
            if ctx.cancel.is_set():
                break
            cand = next_search_len(ok_len, failed, spec)
            if cand is None:
                break
            ctx.progress(f"capacity: searching practical max length, trying {cand}")
            # every search start that serves is measured too: no extra start for the figures
            a, f = _try(ctx, cand, first_seqs, real, measure=True, prof=prof)
            search.append(record(a, cand, first_seqs, f, "search"))
            if a.reason == "cancelled":
                break
            if a.ok:
                ok_len = cand
            else:
                failed = cand
        practical = ok_len
    if practical is not None:
        for seqs in seq_levels[1:]:
            if ctx.cancel.is_set():
                break
            a, f = _try(ctx, practical, seqs, real, measure=True, prof=prof)
            runs.append(record(a, practical, seqs, f, "max-num-seqs"))
    cancelled = ctx.cancel.is_set() or any(r["status"] == "cancelled" for r in [*runs, *search])
    data: dict[str, Any] = {
        "theoretical_max_len": theoretical,
        "practical_max_len": practical,
        "baseline": {"max_model_len": base, "max_num_seqs": first_seqs},
        "runs": runs,
        "search": search,
        "load_format": "auto" if real else "dummy",
        "profile": prof.name,
    }
    status: StageStatus
    reason: str | None
    if cancelled:
        status, reason = "failed", "cancelled"
        diagnosis = "cancelled during the capacity runs"
    elif practical is None:
        status, reason = "failed", runs[0]["status"]
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
    return StageResult(
        stage="capacity",
        status=status,
        reason=reason,
        diagnosis=diagnosis,
        next_step=None if status == "passed" else "read the run rows and log excerpts; lower the baseline",
        started_at=started,
        finished_at=utcnow(),
        evidence=evidence,
        data=data,
    )
