"""`adapt-bot run MODEL --repo REPO`: the whole job locally, no GitHub, no external Redis."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from bot.options import ADAPTER_CLI_OPTIONS, CANDIDATE_CLI, RUN_OPTIONS, OptionError, adapter_spec
from bot.options import add_arguments as add_job_options
from runners.contracts import RUNNER_STAGES, ArtifactOptions, Candidate, JobOptions
from runners.model_ref import ModelRefError, parse_model_ref

HELP = "Run the whole adaptation job locally: analysis, gates, features, capacity, accuracy, one commit."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="checkpoint directory, hub id (org/name), hub URL or /models/<name>")
    parser.add_argument("--repo", required=True, type=Path, help="target checkout (vllm-ascend layout)")
    parser.add_argument("--profile", default="cpu", help="runner profile (cpu, ascend-a2, ascend-a3)")
    parser.add_argument("--out", type=Path, default=Path("adapt-out"), help="report, runbook, results, logs")
    parser.add_argument("--issue", type=int, default=None, help="issue number (names the branch)")
    # the grammar of `/adapt run`, limits included (bot/options.py); `--candidate` also takes a local path
    add_job_options(parser, tuple(CANDIDATE_CLI if o.dest == "candidate" else o for o in RUN_OPTIONS))
    add_job_options(parser, ADAPTER_CLI_OPTIONS)  # the adapter step: CLI only (GitHub: repo config)
    parser.add_argument("--models-root", type=Path, default=None, help="root for hub ids (/models)")
    parser.add_argument("--signoff", default=None, help='"Name <email>" for the Signed-off-by trailer')
    parser.add_argument("--vllm", type=Path, default=None, help="vLLM checkout for the registry verdict")
    parser.add_argument("--vllm-ascend", type=Path, default=None, help="vllm-ascend checkout")
    parser.add_argument(
        "--trust-remote-code",
        action="store_true",
        help="allow the checkpoint's own Python (auto_map) to run when vLLM cannot serve it natively",
    )
    parser.add_argument(
        "--stop-after", choices=RUNNER_STAGES, default=None, help="stop after STAGE (no commit)"
    )


def options_from_args(args: argparse.Namespace) -> JobOptions:
    """Validate CLI input into JobOptions; raises ValueError with a one-line reason."""
    model = str(args.model)
    local_path: str | None = None
    if Path(model).is_dir() and not model.startswith("/models/"):
        local_path = str(Path(model).resolve())
        ref = f"local/{Path(local_path).name}"
    else:
        ref = parse_model_ref(model).display
    # option values were checked by argparse with the converters `/adapt run` uses
    return JobOptions(
        model=ref,
        local_path=local_path,
        profile=args.profile,
        hardware=args.hardware or "a2",
        tp=args.tp,
        max_model_len=args.max_model_len,
        features=args.features,
        capacity_steps=args.capacity_steps,
        candidate=pin_candidate(getattr(args, "candidate", None)),
        adapter=_adapter(args),
        issue=args.issue,
        trust_remote_code=bool(getattr(args, "trust_remote_code", False)),
    )


def _adapter(args: argparse.Namespace) -> Any:
    try:
        return adapter_spec(
            getattr(args, "adapter_command", None),
            getattr(args, "adapter_attempts", None),
            getattr(args, "adapter_timeout", None),
            getattr(args, "adapter_device_hours", None),
        )
    except OptionError as exc:
        raise ValueError(str(exc).replace("`", "")) from None


def pin_candidate(spec: dict[str, Any] | None) -> Candidate | None:
    """`--candidate` pinned to a commit with git (a local path: `rev-parse`; `owner/repo`: `ls-remote`
    of the URL the settings build, `ADAPT_BOT_CANDIDATE_GIT_URL`); ValueError with the reason."""
    if not spec:
        return None
    from bot.config import Settings
    from runners.candidate import CandidateFailed, resolve_local, resolve_remote

    try:
        if spec.get("local"):
            return resolve_local(str(spec["repo"]), str(spec["ref"]))
        url = Settings().candidate_git_url.format(repo=spec["repo"])
        return resolve_remote(str(spec["repo"]), str(spec["ref"]), url)
    except CandidateFailed as exc:
        raise ValueError(f"--candidate: {exc}") from None


def repo_artifacts(repo: Path) -> ArtifactOptions:
    """The checkout's `.github/adapt-bot.yml` `artifacts:` section, read by the same parser the
    App uses on the default branch (bot.repo_config); a broken file is an error, not a default."""
    from bot.config import Settings
    from bot.repo_config import PATH, parse

    path = repo / PATH
    loaded = parse(path.read_text(encoding="utf-8") if path.is_file() else None, Settings())
    if loaded.error:
        raise ValueError(loaded.error)
    return loaded.config.artifacts


def main(args: argparse.Namespace) -> int:
    from bot.local_run import DEFAULT_SIGNOFF, LocalRunConfig, print_outcome, run_local

    try:
        options = options_from_args(args)
    except (ValueError, ModelRefError) as exc:
        print(f"adapt-bot run: {exc}", file=sys.stderr)
        return 2
    repo: Path = args.repo
    if not (repo / ".git").exists():
        print(f"adapt-bot run: {repo} is not a git checkout", file=sys.stderr)
        return 2
    try:
        options = options.model_copy(update={"artifacts": repo_artifacts(repo)})
    except ValueError as exc:
        print(f"adapt-bot run: {exc}", file=sys.stderr)
        return 2
    cfg = LocalRunConfig(
        options=options,
        repo=repo.resolve(),
        out=args.out,
        models_root=args.models_root,
        signoff=args.signoff or DEFAULT_SIGNOFF,
        vllm_root=args.vllm,
        vllm_ascend_root=args.vllm_ascend,
        stop_after=args.stop_after,
    )
    outcome = run_local(cfg)
    return print_outcome(outcome, cfg.repo)
