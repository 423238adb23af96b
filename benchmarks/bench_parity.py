"""What reference parity adds to the real gate: the same gate with and without it, same run.

A = `adapt-bot gate MODEL --profile cpu --stage real-gate --json` (parity on: the transformers
    reference starts with the server and is compared once the smoke passed).
B = the same command with `ADAPT_BOT_REFERENCE_BUDGET_GB=0`: the reference is skipped before it
    starts ("reference skipped: needs … GB, budget 0.0 GB"), everything else identical (smoke,
    quality, known-answer prompts).
Same tiny model (real weights), alternating pairs (AB, BA, ...). Prints both wall times per pair,
the medians and the ratio median(A)/median(B), and the reference's own wall time (it overlaps the
server's start, so its cost is not additive).

    .venv/bin/python benchmarks/bench_parity.py [--pairs 2] [--kind llama]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from runners.demo.tiny import make_tiny_model  # noqa: E402
from runners.gates.reference import BUDGET_ENV  # noqa: E402


def run_gate(model: Path, work: Path, *, parity: bool) -> tuple[float, dict]:  # type: ignore[type-arg]
    env = dict(os.environ)
    env.pop(BUDGET_ENV, None)
    if not parity:
        env[BUDGET_ENV] = "0"
    t0 = time.monotonic()
    proc = subprocess.run(
        [
            str(REPO / ".venv" / "bin" / "adapt-bot"),
            "gate",
            str(model),
            "--profile",
            "cpu",
            "--stage",
            "real-gate",
            "--json",
            "--work",
            str(work),
        ],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    wall = time.monotonic() - t0
    try:
        result = json.loads(proc.stdout)
    except ValueError:
        raise SystemExit(f"gate printed no JSON (exit {proc.returncode}):\n{proc.stderr[-2000:]}") from None
    # without parity a chat model's degenerate (random-weight) reply fails the gate by design:
    # the timing is still the same work; anything else is a real failure
    if result.get("status") != "passed" and (parity or result.get("reason") != "degenerate-output"):
        raise SystemExit(f"real gate did not pass: {result.get('reason')}: {result.get('diagnosis')}")
    status = result["data"]["parity"]["status"]
    want = "passed" if parity else "skipped"
    if status != want:
        raise SystemExit(f"parity {status!r}, expected {want!r}: {result['data']['parity'].get('reason')}")
    return wall, result


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=int, default=2)
    ap.add_argument("--kind", default="llama")
    args = ap.parse_args()
    model = make_tiny_model(args.kind)
    with_p: list[float] = []
    without: list[float] = []
    ref_wall: list[float] = []
    ready: dict[str, list[float]] = {"A": [], "B": []}
    print(f"model {model} (tiny {args.kind}, real weights), {args.pairs} pairs")
    print("| pair | order | A: with parity | B: without | A/B | reference wall (overlapped) |")
    print("|---|---|---|---|---|---|")
    for i in range(args.pairs):
        order = "AB" if i % 2 == 0 else "BA"
        walls: dict[str, float] = {}
        for which in order:
            with tempfile.TemporaryDirectory(prefix="bench-parity-") as tmp:
                wall, result = run_gate(model, Path(tmp), parity=which == "A")
            walls[which] = wall
            ready[which].append(float(result["data"].get("ready_after_s") or 0))
            if which == "A":
                ref_wall.append(float(result["data"]["parity"]["reference"].get("wall_s") or 0))
        with_p.append(walls["A"])
        without.append(walls["B"])
        print(
            f"| {i + 1} | {order} | {walls['A']:.1f} s | {walls['B']:.1f} s | {walls['A'] / walls['B']:.3f} "
            f"| {ref_wall[-1]:.1f} s |"
        )
    ma, mb = statistics.median(with_p), statistics.median(without)
    print(f"| median | | {ma:.1f} s | {mb:.1f} s | **{ma / mb:.3f}** | {statistics.median(ref_wall):.1f} s |")
    print(
        f"server ready after (median): A {statistics.median(ready['A']):.1f} s, "
        f"B {statistics.median(ready['B']):.1f} s (the reference runs beside A's start)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
