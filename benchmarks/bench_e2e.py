"""End-to-end figures for the README: the local run on the tiny model, split by stage, and the
bot's own overhead.

    .venv/bin/python benchmarks/bench_e2e.py [--out DIR] [--runs N]

Runs `adapt-bot demo` (the README's first command, minus set-up) as a subprocess, then reads
`result.json` (wall time per stage) and `logs/processes.jsonl` (lifetime of every `vllm serve`
and `lm_eval` process the job started). Overhead = total − time inside those processes: what
adapt-bot itself costs (analysis, polling, rendering, git). Target: ≤ 10 % of the total.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from runners.accounting import intervals, union_seconds  # noqa: E402


def one_run(out: Path) -> dict[str, float]:
    if out.exists():
        shutil.rmtree(out)
    t0 = time.monotonic()
    proc = subprocess.run(
        [str(REPO / ".venv" / "bin" / "adapt-bot"), "demo", "--out", str(out)],
        capture_output=True,
        text=True,
        check=False,
    )
    wall = time.monotonic() - t0
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr[-4000:])
        raise SystemExit(f"demo failed with exit code {proc.returncode}")
    result = json.loads((out / "run" / "result.json").read_text())
    spans = intervals(out / "run" / "logs")
    total = float(result["timings"]["total_s"])
    inside = union_seconds(spans)  # parallel probes overlap: count wall time once
    row: dict[str, float] = {"wall_incl_setup_s": wall, "total_s": total, "external_s": inside}
    row["overhead_s"] = total - inside
    row["overhead_pct"] = 100.0 * row["overhead_s"] / total
    for stage, seconds in result["timings"]["by_stage_s"].items():
        row[f"stage:{stage}"] = float(seconds)
    row["n_processes"] = float(len(spans))
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--runs", type=int, default=1)
    args = parser.parse_args()
    base = args.out or Path(tempfile.mkdtemp(prefix="adapt-e2e-"))
    rows = [one_run(base / f"run{i}") for i in range(args.runs)]
    print(f"local run on the tiny model ({args.runs} run(s); figures of the last, min/max over runs)")
    last = rows[-1]
    for key in last:
        values = [r[key] for r in rows]
        unit = "%" if key.endswith("pct") else ("" if key.startswith("n_") else "s")
        print(f"  {key:<22} {last[key]:9.1f} {unit:<2} (min {min(values):.1f}, max {max(values):.1f})")
    ok = all(r["overhead_pct"] <= 10.0 for r in rows)
    print(f"target overhead <= 10 % of total: {'met' if ok else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
