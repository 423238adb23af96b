"""Run `lm_eval.simple_evaluate` exactly as the target repo's CI check does, in the vLLM environment.

Usage: <vllm env python> ci_evaluate.py REQUEST.json
REQUEST = {"params": <simple_evaluate kwargs from runners.accuracy.ci.ci_eval_params>,
           "include_path": <dir of local task YAMLs or null>, "output_path": <dir>}
Writes <output_path>/results_ci.json (lm-eval's results, versions) and samples_<task>.jsonl.
Stdlib + lm_eval only: this file runs outside the bot's environment and imports nothing from it.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def main(request_path: str) -> int:
    import lm_eval
    from lm_eval.tasks import TaskManager
    from lm_eval.utils import handle_non_serializable

    request = json.loads(Path(request_path).read_text(encoding="utf-8"))
    params = dict(request["params"])
    out = Path(request["output_path"])
    out.mkdir(parents=True, exist_ok=True)
    include = request.get("include_path")
    task_manager = TaskManager(include_path=include) if include else None
    results = lm_eval.simple_evaluate(**params, task_manager=task_manager, log_samples=True)
    if results is None:  # non-zero ranks return None; one process here
        print("simple_evaluate returned no results", file=sys.stderr)
        return 2
    samples = results.pop("samples", {}) or {}
    for task, rows in samples.items():
        with (out / f"samples_{task}.jsonl").open("w", encoding="utf-8") as fh:
            for row in rows:
                fh.write(json.dumps(row, default=handle_non_serializable, ensure_ascii=False) + "\n")
    doc = {
        "results": results.get("results", {}),
        "n-samples": results.get("n-samples", {}),
        "lm_eval_version": getattr(lm_eval, "__version__", None),
        "params": params,
    }
    (out / "results_ci.json").write_text(
        json.dumps(doc, default=handle_non_serializable, indent=2, ensure_ascii=False), encoding="utf-8"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
