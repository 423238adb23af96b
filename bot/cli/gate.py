"""`adapt-bot gate MODEL --profile NAME --stage dummy-gate|real-gate|features|capacity [--json]`.

Runs ONE gate stage on this machine through the same pipeline entry the Celery task uses
(runners.pipeline.execute_stage), so local and queued runs behave the same. Progress goes to
stderr ("waiting for /v1/models… 12 s"); the stage result goes to stdout (JSON with --json, a
readable summary otherwise). Exit 0 = passed, 1 = failed/error, 2 = unusable input.
Ctrl-C / SIGTERM set the job's cancel flag: the server is torn down before exiting.

Before the first server start the analysis check runs (runners.analysis.preflight, inside
execute_stage): a blocking defect (a tensor shape config.json contradicts, missing shards, a
checkpoint that needs its own code without `--trust-remote-code`) fails the stage with nothing
started. `--trust-remote-code` is the explicit opt-in for a checkpoint's own Python.
"""

from __future__ import annotations

import argparse
import hashlib
import signal
import sys
import time
from pathlib import Path
from types import FrameType

from bot.options import GATE_OPTIONS
from bot.options import add_arguments as add_job_options

HELP = "Run one gate stage (dummy-gate, real-gate, features, capacity) against a real vllm serve."

GATE_STAGES = ("dummy-gate", "real-gate", "features", "capacity")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "model", metavar="MODEL", help="checkpoint directory, hub id, hub URL or /models/<name>"
    )
    parser.add_argument(
        "--profile", default="cpu", help="runner profile (runners/profiles/*.yaml); default cpu"
    )
    parser.add_argument("--stage", required=True, choices=GATE_STAGES)
    parser.add_argument("--json", action="store_true", help="print the stage-result JSON on stdout")
    parser.add_argument("--work", type=Path, default=None, metavar="DIR", help="job workspace directory")
    add_job_options(parser, GATE_OPTIONS)  # same converters and limits as `/adapt run`
    parser.add_argument("--served-model-name", default=None)
    parser.add_argument("--models-root", type=Path, default=None, metavar="DIR")
    parser.add_argument(
        "--trust-remote-code",
        action="store_true",
        help="allow the checkpoint's own Python (auto_map) to run when vLLM cannot serve it natively",
    )


def _job_dir(args: argparse.Namespace, model: str) -> tuple[str, Path | None]:
    if args.work is not None:
        work = args.work.resolve()
        return work.name, work.parent
    digest = hashlib.sha256(f"{model}|{args.profile}".encode()).hexdigest()[:10]
    return f"gate-{digest}", None


def main(args: argparse.Namespace) -> int:
    from runners.context import LocalCancel
    from runners.contracts import JobOptions
    from runners.model_ref import ModelRefError, parse_model_ref
    from runners.pipeline import execute_stage
    from runners.profile import ProfileError, load_profile
    from runners.render import render

    try:
        load_profile(args.profile)
    except ProfileError as exc:
        print(f"adapt-bot gate: {exc}", file=sys.stderr)
        return 2
    local = Path(args.model)
    if local.is_dir():
        options = JobOptions(
            model=local.resolve().name, local_path=str(local.resolve()), profile=args.profile
        )
    else:
        try:
            parse_model_ref(args.model)
        except ModelRefError as exc:
            print(f"adapt-bot gate: {exc}", file=sys.stderr)
            return 2
        options = JobOptions(model=args.model, profile=args.profile)
    options.tp = args.tp
    options.max_model_len = args.max_model_len
    options.capacity_steps = args.capacity_steps
    options.served_model_name = args.served_model_name
    options.trust_remote_code = args.trust_remote_code
    job_id, work_root = _job_dir(args, str(options.local_path or options.model))

    cancel = LocalCancel()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        print(f"adapt-bot gate: signal {signum}: stopping the server…", file=sys.stderr)
        cancel.set()

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    t0 = time.monotonic()

    def progress(line: str) -> None:
        print(f"[{time.monotonic() - t0:6.1f} s] {line}", file=sys.stderr, flush=True)

    try:
        result = execute_stage(
            job_id,
            args.stage,
            options,
            cancel=cancel,
            progress=progress,
            work_root=work_root,
            models_root=args.models_root,
        )
    finally:
        for s, h in old.items():
            signal.signal(s, h)
    from runners.workspace import Workspace

    result_path = Workspace.for_job(job_id, work_root).results / f"{result.stage}.json"
    if args.json:
        print(result.model_dump_json(indent=2))
    else:
        print(
            render("gates/summary.txt.j2", result=result, data=result.data, result_path=result_path), end=""
        )
    return 0 if result.status == "passed" else 1
