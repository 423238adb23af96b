"""Server starts, wall time and device-seconds of a healthy default job, before/after the shared
real-weight start (issue 13), measured side by side in one run.

    .venv/bin/python benchmarks/bench_server_starts.py [--pairs N] [--out DIR]

Runs `adapt-bot demo` (tiny Llama with real weights, `cpu` profile, every stage real) once with
`ADAPT_BOT_SHARED_START=0` (before: one start per stage) and once with the default (after: the
real gate, the capacity baseline and accuracy share one real-weight start), alternating the
order per pair, and reads each job's `logs/processes.jsonl` (every `vllm serve` start, with its
devices) and stored stage results (stage windows, for device-seconds per stage).

A start is real-weight unless it is the dummy gate's (or a feature probe the features stage ran
on dummy weights). Target: real-weight starts 1 (was 3), total starts <= 2 plus probes.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from runners import accounting  # noqa: E402
from runners.workspace import Workspace  # noqa: E402


def count_starts(run_dir: Path) -> dict[str, Any]:
    """Starts of one job from its process records (pure reading; no vllm needed)."""
    ws = Workspace(run_dir)
    results = ws.load_results()
    features = results.get("features")
    probes_dummy = bool(features and features.data.get("load_format") == "dummy")
    recs = accounting.records(ws.logs)
    serves = [r for r in recs if r.name.startswith("vllm-serve:")]
    probes = [r for r in serves if r.name.startswith("vllm-serve:features-")]
    dummy = [
        r for r in serves if r.name.startswith("vllm-serve:dummy-gate") or (r in probes and probes_dummy)
    ]
    job = accounting.job_device_seconds(ws.logs, accounting.windows_of(results))
    return {
        "starts": len(serves),
        "probe_starts": len(probes),
        "real_weight_starts": len(serves) - len(dummy),
        "names": [r.name.removeprefix("vllm-serve:") for r in serves],
        "device_seconds": job["device_seconds"],
        "by_stage": job["by_stage"],
        "other_processes": [r.name for r in recs if not r.name.startswith("vllm-serve:")],
    }


def one_run(out: Path, shared: bool) -> dict[str, Any]:
    if out.exists():
        shutil.rmtree(out)
    env = dict(os.environ)
    env["ADAPT_BOT_SHARED_START"] = "1" if shared else "0"
    t0 = time.monotonic()
    proc = subprocess.run(
        [str(REPO / ".venv" / "bin" / "adapt-bot"), "demo", "--out", str(out)],
        capture_output=True,
        text=True,
        check=False,
        env=env,
    )
    wall = time.monotonic() - t0
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr[-4000:])
        raise SystemExit(f"demo failed with exit code {proc.returncode}")
    result = json.loads((out / "run" / "result.json").read_text())
    row = count_starts(out / "run")
    row.update(
        state=result.get("state"),
        total_s=float(result["timings"]["total_s"]),
        wall_incl_setup_s=wall,
        by_stage_s=result["timings"]["by_stage_s"],
    )
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--pairs", type=int, default=1)
    args = parser.parse_args()
    base = args.out or Path(tempfile.mkdtemp(prefix="adapt-starts-"))
    rows: dict[bool, list[dict[str, Any]]] = {False: [], True: []}
    for i in range(args.pairs):
        order = (False, True) if i % 2 == 0 else (True, False)
        for shared in order:
            label = "after" if shared else "before"
            row = one_run(base / f"{label}{i}", shared)
            rows[shared].append(row)
            print(
                f"pair {i + 1} {label:<6} {row['state']}: starts {row['starts']} "
                f"(real-weight {row['real_weight_starts']}, probes {row['probe_starts']}: "
                f"{', '.join(row['names'])}); "
                f"total {row['total_s']:.1f} s; device-seconds {row['device_seconds']:.1f}",
                flush=True,
            )

    def med(shared: bool, key: str) -> float:
        return statistics.median(float(r[key]) for r in rows[shared])

    print("\nhealthy default job, tiny Llama, cpu profile (median over pairs)")
    print(f"  {'':<28} {'before':>9} {'after':>9} {'after/before':>13}")
    for key in ("real_weight_starts", "starts", "probe_starts", "total_s", "device_seconds"):
        b, a = med(False, key), med(True, key)
        ratio = f"{a / b:.3f}" if b else "-"
        print(f"  {key:<28} {b:9.1f} {a:9.1f} {ratio:>13}")
    stages = sorted({s for r in rows[True] + rows[False] for s in r["by_stage"]})
    print("  device-seconds by stage (last run of each)")
    for s in stages:
        b = rows[False][-1]["by_stage"].get(s, 0.0)
        a = rows[True][-1]["by_stage"].get(s, 0.0)
        print(f"    {s:<26} {b:9.1f} {a:9.1f}")
    after = rows[True]
    met = all(r["real_weight_starts"] == 1 and r["starts"] - r["probe_starts"] <= 2 for r in after)
    print(f"target real-weight starts 1, total starts <= 2 plus probes: {'met' if met else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
