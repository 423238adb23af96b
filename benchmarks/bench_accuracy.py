"""Accuracy stage on the tiny model (cpu profile): cost of each check and live-vs-CI agreement.

Runs the real stage (vllm serve on the cpu profile + lm-eval) once per check:
  repeat          - the default: live measurement, then the live run again on the first 4 documents
  offline-engine  - live measurement, then the target CI's own path (simple_evaluate(model="vllm"),
                    params derived from the e2e YAML the run would commit) after the server stopped
and prints, per check: stage wall time, each measurement's wall time, the metrics of both
measurements and how many generations were identical.

    flock /tmp/adapt-vllm.lock .venv/bin/python benchmarks/bench_accuracy.py [--checks repeat,offline-engine]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from runners.context import StageContext  # noqa: E402
from runners.contracts import JobOptions, StageResult  # noqa: E402
from runners.demo.tiny import make_tiny_model  # noqa: E402
from runners.profile import load_profile  # noqa: E402
from runners.stages.accuracy import run  # noqa: E402
from runners.workspace import Workspace  # noqa: E402


def one(check: str, model: Path, work: Path) -> None:
    os.environ["ADAPT_BOT_ACCURACY_CHECK"] = check
    ctx = StageContext(
        job_id=f"bench-{check}",
        options=JobOptions(model="org/Tiny-Llama", local_path=str(model)),
        model_path=model,
        workspace=Workspace.for_job(f"bench-{check}", work),
        profile=load_profile("cpu"),
        previous={
            "analyze": StageResult(
                stage="analyze", status="passed", data={"multimodal": False, "max_position_embeddings": 512}
            )
        },
    )
    t0 = time.monotonic()
    result = run(ctx)
    wall = time.monotonic() - t0
    print(f"\n== check={check}: stage {result.status} ({result.reason}) in {wall:.1f} s")
    for m in result.data.get("measurements", []):
        figures = "; ".join(
            f"{t['name']} " + ", ".join(f"{x['name']}={x['value']:.4f}±{x['stderr']}" for x in t["metrics"])
            for t in m["tasks"]
        )
        print(f"   {m['label']:<15} {m['wall_s']:>6.1f} s  exit {m['exit_code']}  {figures}")
    repro = result.data.get("reproducibility", {})
    print(f"   {repro.get('summary')}")
    print(f"   plausibility: {result.data.get('plausibility', {}).get('why')}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--checks", default="repeat,offline-engine")
    args = ap.parse_args()
    model = make_tiny_model("llama")
    with tempfile.TemporaryDirectory(prefix="bench-acc-") as tmp:
        for check in args.checks.split(","):
            one(check, model, Path(tmp))


if __name__ == "__main__":
    main()
