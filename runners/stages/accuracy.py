"""Stage `accuracy`: lm-eval against the served model's OpenAI endpoint; the values feed the e2e config.

The harness is the one vllm-ascend's e2e test uses (lm-evaluation-harness), run as a subprocess from
the vLLM environment (the bot never imports it). Production defaults are the real tasks: gsm8k
5-shot for text models, mmmu_val 0-shot for multimodal ones. Hub datasets are unreachable on the
test machines, so the cpu profile evaluates a local task with the same metric keys
(`exact_match,strict-match`, `exact_match,flexible-extract`) through lm-eval's `json` builder,
with the tokenizer read from the local checkpoint and every HF library forced offline.

Overrides (job options if present, else environment): tasks, limit, num_fewshot —
ADAPT_BOT_ACCURACY_TASKS (comma list), ADAPT_BOT_ACCURACY_LIMIT, ADAPT_BOT_ACCURACY_FEWSHOT.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from runners import accounting
from runners.context import StageContext
from runners.contracts import Evidence, StageResult, utcnow

LOCAL_TASK = "adapt_gsm8k_local"
LOCAL_DATA = Path(__file__).resolve().parent.parent / "accuracy_tasks" / f"{LOCAL_TASK}.jsonl"
#: real task defaults (production)
TEXT_TASK, TEXT_FEWSHOT = "gsm8k", 5
VL_TASK, VL_FEWSHOT = "mmmu_val", 0
DEFAULT_TIMEOUT_S = 6 * 3600
LOCAL_TIMEOUT_S = 900
_METRIC_KEY = re.compile(r"^(?P<metric>[A-Za-z0-9_]+),(?P<filter>[A-Za-z0-9_.-]+)$")


@dataclass(frozen=True)
class AccuracyPlan:
    tasks: tuple[str, ...]
    num_fewshot: int | None
    limit: int | None
    backend: str  # local-completions | local-chat-completions
    apply_chat_template: bool
    fewshot_as_multiturn: bool
    batch_size: int | str
    task_source: str  # "registry" | "local"
    timeout_s: float
    include_path: Path | None = None
    gen_kwargs: Mapping[str, Any] = field(default_factory=dict)


def has_chat_template(model_dir: Path) -> bool:
    if (model_dir / "chat_template.jinja").is_file() or (model_dir / "chat_template.json").is_file():
        return True
    cfg = model_dir / "tokenizer_config.json"
    try:
        return bool(json.loads(cfg.read_text(encoding="utf-8")).get("chat_template"))
    except (OSError, ValueError, AttributeError):
        return False


def _override(ctx: StageContext, attr: str, env: str) -> str | None:
    value = getattr(ctx.options, attr, None)
    if value is not None:
        return ",".join(value) if isinstance(value, list | tuple) else str(value)
    return os.environ.get(env) or None


def plan_for(ctx: StageContext, multimodal: bool) -> AccuracyPlan:
    """Tasks and settings for this job (real tasks on Ascend, the local task on the cpu profile)."""
    platform = getattr(ctx.profile, "platform", "cpu")
    chat = has_chat_template(ctx.model_path)
    tasks_override = _override(ctx, "accuracy_tasks", "ADAPT_BOT_ACCURACY_TASKS")
    limit_override = _override(ctx, "accuracy_limit", "ADAPT_BOT_ACCURACY_LIMIT")
    fewshot_override = _override(ctx, "accuracy_fewshot", "ADAPT_BOT_ACCURACY_FEWSHOT")
    if platform == "cpu":
        tasks: tuple[str, ...] = (LOCAL_TASK,)
        fewshot: int | None = 1
        limit: int | None = 8
        source = "local"
        timeout = LOCAL_TIMEOUT_S
    elif multimodal:
        tasks, fewshot, limit, source, timeout = (VL_TASK,), VL_FEWSHOT, None, "registry", DEFAULT_TIMEOUT_S
    else:
        tasks, fewshot, limit, source, timeout = (
            (TEXT_TASK,),
            TEXT_FEWSHOT,
            None,
            "registry",
            DEFAULT_TIMEOUT_S,
        )
    if tasks_override:
        tasks = tuple(t.strip() for t in tasks_override.split(",") if t.strip())
        source = "local" if tasks == (LOCAL_TASK,) else "registry"
    if limit_override and limit_override.isdigit():
        limit = int(limit_override)
    if fewshot_override and fewshot_override.isdigit():
        fewshot = int(fewshot_override)
    multimodal_chat = multimodal and source == "registry"
    use_chat = chat or multimodal_chat
    return AccuracyPlan(
        tasks=tasks,
        num_fewshot=fewshot,
        limit=limit,
        backend="local-chat-completions" if use_chat else "local-completions",
        apply_chat_template=use_chat,
        fewshot_as_multiturn=use_chat and bool(fewshot),
        # chat-completions requests carry one conversation each; completions can batch prompts
        batch_size=1 if use_chat else "auto",
        task_source=source,
        timeout_s=timeout,
        gen_kwargs={"max_gen_toks": 32} if source == "local" else {},
    )


def local_task_yaml(data_file: Path) -> dict[str, Any]:
    """A gsm8k-shaped task over a local jsonl file (same filters, so the same metric keys)."""
    return {
        "task": LOCAL_TASK,
        "dataset_path": "json",
        "dataset_kwargs": {"data_files": {"test": str(data_file)}},
        "output_type": "generate_until",
        "test_split": "test",
        "fewshot_split": "test",
        "doc_to_text": "Question: {{question}}\nAnswer:",
        "doc_to_target": "{{answer}}",
        "target_delimiter": " ",
        "fewshot_delimiter": "\n\n",
        "metric_list": [
            {
                "metric": "exact_match",
                "aggregation": "mean",
                "higher_is_better": True,
                "ignore_case": True,
                "ignore_punctuation": False,
                "regexes_to_ignore": [",", "\\$", "(?s).*#### ", "\\.$"],
            }
        ],
        "generation_kwargs": {
            "until": ["Question:", "</s>", "<|im_end|>"],
            "do_sample": False,
            "temperature": 0.0,
        },
        "filter_list": [
            {
                "name": "strict-match",
                "filter": [
                    {"function": "regex", "regex_pattern": "#### (\\-?[0-9\\.\\,]+)"},
                    {"function": "take_first"},
                ],
            },
            {
                "name": "flexible-extract",
                "filter": [
                    {"function": "regex", "group_select": -1, "regex_pattern": "(-?[$0-9.,]{2,})|(-?[0-9]+)"},
                    {"function": "take_first"},
                ],
            },
        ],
        "metadata": {"version": 1.0},
    }


def write_local_task(dest: Path, data: Path = LOCAL_DATA) -> Path:
    """Write the task YAML (with an absolute data path) into `dest`; returns the include dir."""
    dest.mkdir(parents=True, exist_ok=True)
    copy = dest / data.name
    shutil.copyfile(data, copy)
    (dest / f"{LOCAL_TASK}.yaml").write_text(yaml.safe_dump(local_task_yaml(copy), sort_keys=False), "utf-8")
    return dest


def lm_eval_argv(
    lm_eval: Sequence[str],
    plan: AccuracyPlan,
    *,
    base_url: str,
    served_name: str,
    tokenizer: str,
    output_path: Path,
) -> list[str]:
    endpoint = "chat/completions" if plan.backend == "local-chat-completions" else "completions"
    model_args = {
        "model": served_name,
        "base_url": f"{base_url.rstrip('/')}/v1/{endpoint}",
        "tokenizer": tokenizer,
        "tokenizer_backend": "huggingface",
        "tokenized_requests": "False",
        "num_concurrent": "1",
        "max_retries": "2",
        "timeout": "600",
    }
    argv = [
        *lm_eval,
        "run",
        "--model",
        plan.backend,
        "--model_args",
        ",".join(f"{k}={v}" for k, v in model_args.items()),
        "--tasks",
        ",".join(plan.tasks),
        "--batch_size",
        str(plan.batch_size),
        "--output_path",
        str(output_path),
        "--log_samples",
        "--seed",
        "0",
    ]
    if plan.num_fewshot is not None:
        argv += ["--num_fewshot", str(plan.num_fewshot)]
    if plan.limit is not None:
        argv += ["--limit", str(plan.limit)]
    if plan.apply_chat_template:
        argv.append("--apply_chat_template")
        argv += ["--fewshot_as_multiturn", "true" if plan.fewshot_as_multiturn else "false"]
    if plan.include_path is not None:
        argv += ["--include_path", str(plan.include_path)]
    if plan.gen_kwargs:
        argv += ["--gen_kwargs", ",".join(f"{k}={v}" for k, v in plan.gen_kwargs.items())]
    return argv


def parse_results(doc: Mapping[str, Any], tasks: Sequence[str]) -> list[dict[str, Any]]:
    """lm-eval's results JSON -> [{name, metrics: [{name, value, stderr}]}] in e2e-config form."""
    out: list[dict[str, Any]] = []
    results = doc.get("results") or {}
    for task in tasks:
        entry = results.get(task)
        if not isinstance(entry, Mapping):
            continue
        metrics = []
        for key, value in entry.items():
            m = _METRIC_KEY.match(str(key))
            if not m or m.group("metric").endswith("_stderr") or isinstance(value, bool):
                continue
            if not isinstance(value, int | float):
                continue
            stderr = entry.get(f"{m.group('metric')}_stderr,{m.group('filter')}")
            metrics.append(
                {
                    "name": key,
                    "value": float(value),
                    "stderr": float(stderr) if isinstance(stderr, int | float) else None,
                }
            )
        if metrics:
            out.append({"name": task, "metrics": metrics})
    return out


def find_results_file(output: Path) -> Path | None:
    found = sorted(output.rglob("results_*.json"), key=lambda p: p.stat().st_mtime)
    return found[-1] if found else None


def lm_eval_command(profile: Any) -> list[str]:
    """lm_eval from the same environment as vLLM (the cpu venv's bin/, or the image's PATH)."""
    try:
        first = Path(profile.vllm_command()[0])
        cand = first.parent / "lm_eval"
        if cand.is_file() and os.access(cand, os.X_OK):
            return [str(cand)]
    except Exception:  # noqa: S110 - a profile without a vllm locator falls back to PATH
        pass
    found = shutil.which("lm_eval")
    if found:
        return [found]
    raise FileNotFoundError(
        "lm_eval not found next to vLLM or on PATH: install lm-eval[api] in the vLLM environment"
    )


def lm_eval_env(workspace_tmp: Path) -> dict[str, str]:
    keep = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
    env = {k: os.environ[k] for k in keep if k in os.environ}
    env.update(
        {
            "HF_DATASETS_OFFLINE": "1",
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
            "HF_DATASETS_CACHE": str(workspace_tmp / "hf-datasets"),
            "HF_HOME": str(workspace_tmp / "hf-home"),
            "TOKENIZERS_PARALLELISM": "false",
            "OPENAI_API_KEY": "EMPTY",  # the local server needs none; the client library wants one
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env


def run_cancellable(
    argv: list[str], *, env: Mapping[str, str], cwd: Path, log_path: Path, timeout_s: float, cancel: Any
) -> tuple[int | None, str]:
    """Run in its own process group; poll the cancel flag every second; kill the group on exit."""
    with log_path.open("ab") as log, accounting.timed(log_path.parent, "lm_eval"):
        proc = subprocess.Popen(
            argv, cwd=cwd, env=dict(env), stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        deadline = time.monotonic() + timeout_s
        outcome = "finished"
        try:
            while proc.poll() is None:
                if cancel is not None and cancel.is_set():
                    outcome = "cancelled"
                    break
                if time.monotonic() > deadline:
                    outcome = "timeout"
                    break
                time.sleep(1.0)
        finally:
            if proc.poll() is None:
                for sig in (signal.SIGTERM, signal.SIGKILL):
                    try:
                        os.killpg(proc.pid, sig)
                    except ProcessLookupError:
                        break
                    try:
                        proc.wait(10)
                        break
                    except subprocess.TimeoutExpired:
                        continue
    return proc.returncode, outcome


_SECRETISH = re.compile(r"TOKEN|SECRET|PASSWORD|KEY|CREDENTIAL", re.I)
_HOST_VARS = {"PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "PYTHONPATH", "LD_LIBRARY_PATH", "LD_PRELOAD"}


def _publishable_env(env: Mapping[str, str]) -> dict[str, str]:
    """Serve env worth recording (runtime switches); host plumbing and anything secret-looking dropped."""
    return {
        k: v
        for k, v in env.items()
        if k not in _HOST_VARS and not _SECRETISH.search(k) and not k.startswith("ADAPT_BOT_")
    }


def _tail(path: Path, lines: int = 30) -> str:
    """Last lines of a log, without progress-bar redraws (carriage-return frames)."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    kept = [ln.rstrip("\r").rsplit("\r", 1)[-1] for ln in text.split("\n")]
    return "\n".join([ln for ln in kept if ln.strip()][-lines:])


#: few-shot prompts need room: gsm8k 5-shot is ~1k tokens with a real tokenizer
ACCURACY_MAX_MODEL_LEN = 4096


def serve_overrides(ctx: StageContext, analysis: Mapping[str, Any]) -> dict[str, Any]:
    """Serve settings for the accuracy run: the job's max length, else enough for few-shot prompts
    (capped by the model's own limit)."""
    if ctx.options.max_model_len:
        return {}
    mpe = analysis.get("max_position_embeddings")
    if isinstance(mpe, int) and not isinstance(mpe, bool) and mpe > 0:
        return {"max_model_len": min(mpe, ACCURACY_MAX_MODEL_LEN)}
    return {}


def run(ctx: StageContext) -> StageResult:
    from runners.serve import ServeError, served

    started = utcnow()
    analysis = ctx.previous.get("analyze")
    multimodal = bool(analysis and analysis.data.get("multimodal"))
    plan = plan_for(ctx, multimodal)
    out_dir = ctx.workspace.path / "accuracy"
    tmp = ctx.workspace.path / "tmp" / "accuracy"
    if out_dir.exists():
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True)
    tmp.mkdir(parents=True, exist_ok=True)
    if plan.task_source == "local":
        plan = AccuracyPlan(**{**plan.__dict__, "include_path": write_local_task(tmp / "tasks")})
    try:
        lm_eval = lm_eval_command(ctx.profile)
    except FileNotFoundError as exc:
        return StageResult(
            stage="accuracy",
            status="error",
            reason="lm-eval-missing",
            diagnosis=str(exc),
            next_step="pip install 'lm-eval[api]' in the vLLM environment",
            started_at=started,
        )
    log_path = ctx.workspace.log_path("lm-eval")
    data: dict[str, Any] = {
        "tasks": [],
        "task_source": plan.task_source,
        "num_fewshot": plan.num_fewshot,
        "limit": plan.limit,
        "apply_chat_template": plan.apply_chat_template,
        "fewshot_as_multiturn": plan.fewshot_as_multiturn,
        "batch_size": plan.batch_size,
        "lm_eval_model": plan.backend,
        "log_path": str(log_path),
    }
    overrides = serve_overrides(ctx, analysis.data if analysis else {})
    try:
        with served(ctx, log_name="accuracy", overrides=overrides) as server:
            data["serve_argv"] = list(server.argv)
            data["env"] = _publishable_env(server.env)
            data["serve_log"] = str(server.log_path)
            data["ready_s"] = server.ready_after_s
            argv = lm_eval_argv(
                lm_eval,
                plan,
                base_url=server.base_url,
                served_name=server.served_name,
                tokenizer=str(ctx.model_path),
                output_path=out_dir,
            )
            data["lm_eval_argv"] = argv
            ctx.progress(f"lm-eval {','.join(plan.tasks)} ({plan.backend})")
            code, outcome = run_cancellable(
                argv,
                env=lm_eval_env(tmp),
                cwd=tmp,
                log_path=log_path,
                timeout_s=plan.timeout_s,
                cancel=ctx.cancel,
            )
            alive = server.alive()
    except ServeError as exc:
        return StageResult(
            stage="accuracy",
            status="failed",
            reason=getattr(exc, "reason", None) or "serve-failed",
            diagnosis=f"the server for the accuracy run did not come up: {exc}",
            next_step="Check the real-weight gate first (`/adapt rerun real-gate`).",
            data=data,
            started_at=started,
        )
    evidence = [
        Evidence(kind="command", text=" ".join(argv)),
        Evidence(kind="log", text=_tail(log_path, 15), log_path=str(log_path)),
    ]
    if outcome != "finished":
        diagnosis = f"lm-eval hit its {plan.timeout_s:.0f} s limit" if outcome == "timeout" else "cancelled"
        return StageResult(
            stage="accuracy",
            status="failed",
            reason=outcome,
            diagnosis=diagnosis,
            evidence=evidence,
            data=data,
            started_at=started,
        )
    results_file = find_results_file(out_dir)
    if code != 0 or results_file is None:
        return StageResult(
            stage="accuracy",
            status="failed",
            reason="lm-eval-failed" if alive else "crashed",
            diagnosis=f"lm-eval exited with {code}" + ("" if alive else "; the server died during the run"),
            next_step="Read the lm-eval log; if the server died, the model fails under load (see serve log).",
            evidence=evidence,
            data=data,
            started_at=started,
        )
    doc = json.loads(results_file.read_text(encoding="utf-8"))
    data["results_path"] = str(results_file)
    data["tasks"] = parse_results(doc, plan.tasks)
    data["lm_eval_version"] = doc.get("lm_eval_version") or doc.get("git_hash")
    if not data["tasks"]:
        return StageResult(
            stage="accuracy",
            status="failed",
            reason="no-metrics",
            diagnosis="lm-eval finished but reported no metric for the requested tasks",
            evidence=evidence,
            data=data,
            started_at=started,
        )
    summary = "; ".join(
        f"{t['name']}: " + ", ".join(f"{m['name']}={m['value']:.4f}" for m in t["metrics"])
        for t in data["tasks"]
    )
    evidence.insert(0, Evidence(kind="result", text=summary, log_path=str(results_file)))
    return StageResult(stage="accuracy", status="passed", evidence=evidence, data=data, started_at=started)
