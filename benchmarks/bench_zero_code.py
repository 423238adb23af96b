"""The zero-code rungs' performance caveat (issue 14), measured side by side in one run.

The same checkpoint (`qwen3-renamed`: a dense Qwen3 under an invented class name, real weights)
served two ways on the `cpu` profile, alternating A/B pairs:

  A = architecture-override: `--hf-overrides '{"architectures":["Qwen3ForCausalLM"]}'` (vLLM's
      native Qwen3 implementation; the reference point "a native architecture of the same shape")
  B = transformers-backend: `--model-impl transformers` + the same override (vLLM's Transformers
      modeling backend running transformers' Qwen3 class)

Each start sends the same greedy completions (sequentially, then `--concurrency` at once) and
reports decode throughput (completion tokens / wall second), start-up time, and the ratio B/A.
CPU figures on tiny models are dominated by Python overhead: they say how the two paths compare
on THIS profile, not what an Ascend NPU would show.

    .venv/bin/python benchmarks/bench_zero_code.py [--pairs 2] [--requests 6] [--tokens 32]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from runners.analysis.zero_code import override_args  # noqa: E402
from runners.context import StageContext  # noqa: E402
from runners.contracts import JobOptions  # noqa: E402
from runners.demo.tiny import make_tiny_model  # noqa: E402
from runners.profile import load_profile  # noqa: E402
from runners.serve import served, text_completion  # noqa: E402
from runners.workspace import Workspace  # noqa: E402

PROMPTS = ["say hi", "The quick brown fox", "vLLM serves models", "Ascend NPUs run"]
WAYS = {
    "override": override_args("Qwen3ForCausalLM"),
    "transformers-backend": ["--model-impl", "transformers", *override_args("Qwen3ForCausalLM")],
}


def measure(
    model: Path, work: Path, way: str, requests: int, tokens: int, concurrency: int
) -> dict[str, float]:
    prof = load_profile("cpu")
    ctx = StageContext(
        job_id=f"bench-{way}",
        options=JobOptions(model=model.name, local_path=str(model), profile="cpu"),
        model_path=model,
        workspace=Workspace.for_job(f"bench-{way}", work),
        profile=prof,
    )
    t0 = time.monotonic()
    with served(ctx, extra_args=WAYS[way], log_name=f"bench-{way}") as srv:
        ready_s = time.monotonic() - t0
        text_completion(srv, "warm up", 4)
        t1 = time.monotonic()
        done = 0
        for i in range(requests):
            reply = text_completion(srv, PROMPTS[i % len(PROMPTS)], tokens)
            if not reply.ok:
                raise SystemExit(f"{way}: request failed: {reply.error}")
            done += tokens
        seq = done / (time.monotonic() - t1)
        t2 = time.monotonic()
        with ThreadPoolExecutor(concurrency) as pool:
            replies = list(pool.map(lambda p: text_completion(srv, p, tokens), PROMPTS[:concurrency]))
        if not all(r.ok for r in replies):
            raise SystemExit(f"{way}: a concurrent request failed")
        par = concurrency * tokens / (time.monotonic() - t2)
    return {"ready_s": ready_s, "seq_tok_s": seq, "par_tok_s": par}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pairs", type=int, default=2)
    ap.add_argument("--requests", type=int, default=6)
    ap.add_argument("--tokens", type=int, default=32)
    ap.add_argument("--concurrency", type=int, default=2)
    args = ap.parse_args()
    model = make_tiny_model("qwen3-renamed")
    runs: dict[str, list[dict[str, float]]] = {w: [] for w in WAYS}
    with tempfile.TemporaryDirectory(prefix="bench-zero-code-") as tmp:
        for i in range(args.pairs):
            for way in WAYS:
                r = measure(model, Path(tmp) / f"{i}", way, args.requests, args.tokens, args.concurrency)
                runs[way].append(r)
                print(
                    f"pair {i + 1} {way:22s} ready {r['ready_s']:6.1f} s  "
                    f"sequential {r['seq_tok_s']:7.1f} tok/s  x{args.concurrency} {r['par_tok_s']:7.1f}",
                    flush=True,
                )
    med = {w: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for w, rs in runs.items()}
    a, b = med["override"], med["transformers-backend"]
    print()
    print(f"{'median':10s} {'override (native)':>20s} {'transformers-backend':>22s} {'ratio B/A':>10s}")
    for key, label in (("ready_s", "start s"), ("seq_tok_s", "seq tok/s"), ("par_tok_s", "par tok/s")):
        print(f"{label:10s} {a[key]:20.2f} {b[key]:22.2f} {b[key] / a[key]:10.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
