"""Feature probes on the shrunk model vs the full model (issue 13), side by side in one run.

One Qwen3-MoE-shaped checkpoint (config + tokenizer only: probes start with dummy weights either
way) with more layers and experts than the test models, so there is something to cut. The features
stage runs on the `cpu` profile twice per pair, alternating: A = `probe_model.shrink: false` (the
probe starts the full model), B = the profile's shrunk model (`--hf-overrides` with fewer layers and
experts, runners/stages/shrink.py). It prints each probe's server lifetime (device-seconds: one cpu
slot x seconds) and the ratio B/A. On CPU a start is dominated by imports and process set-up, so the
ratio here understates what cutting 61 layers of graph capture saves on an NPU; the figure says
what THIS profile measures, nothing about Ascend.

    .venv/bin/python benchmarks/bench_shrunk_probes.py [--pairs 1] [--layers 24] [--experts 32] [--hidden 256]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from runners.context import StageContext  # noqa: E402
from runners.contracts import JobOptions  # noqa: E402
from runners.demo.tiny import make_tiny_model  # noqa: E402
from runners.profile import load_profile  # noqa: E402
from runners.stages import features  # noqa: E402
from runners.workspace import Workspace  # noqa: E402


def deep_moe(work: Path, layers: int, experts: int, hidden: int) -> Path:
    """The tiny Qwen3-MoE's tokenizer and config, widened: no weights (probes use dummy ones)."""
    tiny = make_tiny_model("qwen3-moe", work / "tiny")
    out = work / "deep-moe"
    out.mkdir()
    for f in tiny.iterdir():
        if f.suffix != ".safetensors" and f.name != "model.safetensors.index.json":
            shutil.copy(f, out / f.name)
    cfg = json.loads((out / "config.json").read_text())
    cfg.update(
        num_hidden_layers=layers,
        num_experts=experts,
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        moe_intermediate_size=hidden // 2,
        head_dim=hidden // cfg["num_attention_heads"],
    )
    (out / "config.json").write_text(json.dumps(cfg, indent=2))
    return out


def probe(model: Path, work: Path, shrink: bool, tag: str) -> dict[str, float]:
    prof = load_profile("cpu").model_copy(deep=True)
    prof.probe_model.shrink = shrink
    ctx = StageContext(
        job_id=f"bench-{tag}",
        options=JobOptions(model=model.name, local_path=str(model), profile="cpu"),
        model_path=model,
        workspace=Workspace.for_job(f"bench-{tag}", work),
        profile=prof,
    )
    t0 = time.monotonic()
    result = features.run(ctx)
    wall = time.monotonic() - t0
    ep = result.data["probes"].get("expert_parallel")
    if result.status != "passed" or ep is None:
        raise SystemExit(f"{tag}: the EP probe did not run: {result.diagnosis}")
    return {"wall_s": wall, "probe_s": float(ep["duration_s"]), "ready_s": float(ep["ready_after_s"] or 0)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pairs", type=int, default=1)
    ap.add_argument("--layers", type=int, default=24)
    ap.add_argument("--experts", type=int, default=32)
    ap.add_argument(
        "--hidden", type=int, default=256, help="hidden size (float32 dummy weights grow with it)"
    )
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-shrunk-") as tmp:
        work = Path(tmp)
        model = deep_moe(work, args.layers, args.experts, args.hidden)
        rows: dict[str, list[dict[str, float]]] = {"full": [], "shrunk": []}
        for i in range(args.pairs):
            for way in ("full", "shrunk") if i % 2 == 0 else ("shrunk", "full"):
                rows[way].append(probe(model, work, way == "shrunk", f"{way}-{i}"))
                print(f"pair {i + 1} {way}: " + ", ".join(f"{k} {v:.1f}" for k, v in rows[way][-1].items()))
        med = {w: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for w, rs in rows.items()}
        shape = f"{args.layers} layers x {args.experts} experts, hidden {args.hidden}"
        print(f"\nQwen3-MoE shape, {shape}, dummy weights, cpu profile")
        print("| probe model | EP probe device-seconds | ready after | features stage wall |")
        print("| --- | ---: | ---: | ---: |")
        for way in ("full", "shrunk"):
            m = med[way]
            print(f"| {way} | {m['probe_s']:.1f} | {m['ready_s']:.1f} s | {m['wall_s']:.1f} s |")
        ratio = med["shrunk"]["probe_s"] / med["full"]["probe_s"]
        print(f"ratio shrunk/full (probe device-seconds): {ratio:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
