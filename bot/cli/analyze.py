"""`adapt-bot analyze MODEL`: what a checkpoint is, whether vLLM / vllm-ascend support it, what applies.

MODEL is an existing local directory, or a hub id / hub URL / `/models/<name>` resolved under the
models root by runners.model_ref (which refuses `..`, shell metacharacters and symlink escapes).
A hub id with no local checkout is read from the hub (runners.analysis.hub: config, index and
safetensors headers only; HF_ENDPOINT / HF_TOKEN / HF_HUB_OFFLINE as huggingface_hub reads them).
Exit 0 when analysed (even with problems), 1 when it cannot analyse, 2 for an unusable MODEL.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

HELP = "Analyse a checkpoint without loading weights (config, index, safetensors headers, registries)."

EXIT_OK = 0
EXIT_CANNOT_ANALYSE = 1
EXIT_BAD_MODEL = 2


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "model", metavar="MODEL", help="checkpoint directory, hub id, hub URL or /models/<name>"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    parser.add_argument(
        "--vllm", type=Path, default=None, metavar="PATH", help="vLLM checkout (or its registry.py)"
    )
    parser.add_argument("--vllm-ascend", type=Path, default=None, metavar="PATH", help="vllm-ascend checkout")
    parser.add_argument(
        "--models-root",
        type=Path,
        default=None,
        metavar="DIR",
        help="where hub ids resolve (default $ADAPT_BOT_MODELS_ROOT or /models)",
    )
    parser.add_argument(
        "--vllm-python",
        type=Path,
        default=None,
        metavar="PATH",
        help="python of an environment with vllm installed (default $ADAPT_BOT_CPU_VLLM)",
    )


def resolve_model(text: str, models_root: Path | None) -> Path | str:
    """An existing directory is taken as is; anything else must be a valid model reference.

    Returns the local checkout, or the hub id (`org/name`) when there is none: the caller then
    runs the hub pre-flight. A flat `<root>/<name>` counts for `org/name` only when its
    provenance names that repo (runners.model_ref.local_checkout).
    """
    from runners.model_ref import local_checkout, parse_model_ref

    candidate = Path(text)
    if candidate.is_dir():
        return candidate.resolve()
    root = models_root or Path(os.environ.get("ADAPT_BOT_MODELS_ROOT", "/models"))
    ref = parse_model_ref(text)
    found = local_checkout(ref, root)
    if found is not None and found.path.is_dir():
        return found.path
    if ref.hub_id:
        return ref.display  # `org/name`, or `modelscope:org/name`: the hub is part of the identity
    raise FileNotFoundError(
        f"{ref.display} is not downloaded: no directory {root}/{ref.name}"
        " (use --models-root DIR or pass the checkout directory)"
    )


def _fail(code: int, message: str) -> int:
    print(f"adapt-bot analyze: {message.splitlines()[0] if message else 'failed'}", file=sys.stderr)
    return code


def main(args: argparse.Namespace) -> int:
    from runners.analysis import AnalysisError, analyze
    from runners.model_ref import ModelRefError

    try:
        model_dir = resolve_model(args.model, args.models_root)
    except ModelRefError as exc:
        return _fail(EXIT_BAD_MODEL, str(exc))
    except (FileNotFoundError, OSError) as exc:
        return _fail(EXIT_CANNOT_ANALYSE, str(exc))
    try:
        if isinstance(model_dir, str):
            from runners.analysis.hub import HubError, hub_preflight
            from runners.analysis.modelscope_hub import modelscope_preflight
            from runners.model_ref import parse_model_ref

            ref = parse_model_ref(model_dir)
            preflight = modelscope_preflight if ref.source == "modelscope" else hub_preflight
            try:
                result = preflight(
                    str(ref.hub_id),
                    vllm_root=args.vllm,
                    vllm_ascend_root=args.vllm_ascend,
                    vllm_python=args.vllm_python,
                )
            except HubError as exc:
                root = args.models_root or os.environ.get("ADAPT_BOT_MODELS_ROOT", "/models")
                message = f"{model_dir} is not downloaded under {root}; {exc.message}"
                return _fail(EXIT_CANNOT_ANALYSE, message)
        else:
            result = analyze(
                model_dir,
                vllm_root=args.vllm,
                vllm_ascend_root=args.vllm_ascend,
                vllm_python=args.vllm_python,
            )
    except AnalysisError as exc:
        return _fail(EXIT_CANNOT_ANALYSE, exc.message)
    if args.json:
        print(json.dumps(result.model_dump(mode="json"), ensure_ascii=False, indent=2))
    else:
        from runners.stages.analyze import summary

        sys.stdout.write(summary(result))
    return EXIT_OK
