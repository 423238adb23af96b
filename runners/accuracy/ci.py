"""What the target repo's CI check does with an e2e YAML, as data.

`tests/e2e/models/test_lm_eval_correctness.py` (vllm-ascend) builds `model_args` from `serve:`
(pretrained = model_name, tensor_parallel_size, dtype, trust_remote_code, max_model_len, then the
optional keys max_images, gpu_memory_utilization, enable_expert_parallel, tensor_parallel_size,
enforce_eager, enable_thinking, quantization when present) and calls `lm_eval.simple_evaluate` with
model = model_type (default "vllm"), the task names, apply_chat_template (default True),
fewshot_as_multiturn (default True), limit (default None), batch_size (default "auto") and
num_fewshot when present; each metric passes when `np.isclose(value, round(measured, 4), rtol=0.05)`.
`ci_eval_params` restates that contract so the stage can (a) prove its lm-eval argv has the same
settings and (b) on the cpu profile run CI's own engine path from the YAML it would commit.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

#: the tolerance of the target's check (np.isclose rtol; atol stays numpy's default)
RTOL = 0.05
ATOL = 1e-8
OPTIONAL_SERVE_KEYS = (
    "max_images",
    "gpu_memory_utilization",
    "enable_expert_parallel",
    "tensor_parallel_size",
    "enforce_eager",
    "enable_thinking",
    "quantization",
)
#: the runner script: stdlib + lm_eval only, run by the vLLM environment's python
EVAL_SCRIPT = Path(__file__).resolve().parent / "ci_evaluate.py"


def ci_model_args(
    cfg: Mapping[str, Any], *, tp_size: int = 1, pretrained: str | None = None
) -> dict[str, Any]:
    serve = cfg.get("serve") or {}
    args: dict[str, Any] = {
        "pretrained": pretrained or cfg["model_name"],
        "tensor_parallel_size": tp_size,
        "dtype": serve.get("dtype", "auto"),
        "trust_remote_code": serve.get("trust_remote_code", False),
        "max_model_len": serve.get("max_model_len", 4096),
    }
    for key in OPTIONAL_SERVE_KEYS:
        if serve.get(key) is not None:
            args[key] = serve[key]
    return args


def ci_eval_params(
    cfg: Mapping[str, Any], *, tp_size: int = 1, pretrained: str | None = None
) -> dict[str, Any]:
    """The keyword arguments CI passes to `lm_eval.simple_evaluate` for this YAML."""
    params: dict[str, Any] = {
        "model": cfg.get("model_type", "vllm"),
        "model_args": ci_model_args(cfg, tp_size=tp_size, pretrained=pretrained),
        "tasks": [t["name"] for t in cfg["tasks"]],
        "apply_chat_template": cfg.get("apply_chat_template", True),
        "fewshot_as_multiturn": cfg.get("fewshot_as_multiturn", True),
        "limit": cfg.get("limit"),
        "batch_size": cfg.get("batch_size", "auto"),
    }
    if cfg.get("num_fewshot") is not None:
        params["num_fewshot"] = cfg["num_fewshot"]
    return params


def settings_of(params: Mapping[str, Any]) -> dict[str, Any]:
    """CI's evaluation settings in the plan's vocabulary (`AccuracyPlan.settings()` keys)."""
    out = {k: params[k] for k in ("num_fewshot", "limit") if params.get(k) is not None}
    out["apply_chat_template"] = bool(params["apply_chat_template"])
    out["fewshot_as_multiturn"] = bool(params["fewshot_as_multiturn"])
    out["batch_size"] = params["batch_size"]
    return out


def ci_passes(value: float, measured: float) -> bool:
    """CI's comparison: np.isclose(value, round(measured, 4), rtol=0.05) without numpy."""
    measured = round(measured, 4)
    return abs(value - measured) <= ATOL + RTOL * abs(measured)


def offline_argv(python: str, request_path: Path) -> list[str]:
    return [python, str(EVAL_SCRIPT), str(request_path)]


def offline_request(
    params: Mapping[str, Any], *, include_path: Path | None, output_path: Path
) -> dict[str, Any]:
    """The JSON the runner script reads (params exactly as CI would pass them)."""
    return {
        "params": dict(params),
        "include_path": str(include_path) if include_path else None,
        "output_path": str(output_path),
    }


if __name__ == "__main__":  # pragma: no cover - convenience: print CI's params for a YAML file
    import json

    import yaml

    print(json.dumps(ci_eval_params(yaml.safe_load(Path(sys.argv[1]).read_text(encoding="utf-8"))), indent=2))
