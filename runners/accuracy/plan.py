"""One accuracy plan per job: the e2e YAML's settings and the lm-eval argv are both derived from it.

The target repo's CI check (`tests/e2e/models/test_lm_eval_correctness.py`) re-measures the YAML's
values with `lm_eval.simple_evaluate(model="vllm", tasks, num_fewshot, limit, apply_chat_template,
fewshot_as_multiturn, batch_size)` and compares with `np.isclose(rtol=0.05)`. A baseline is only
reproducible when we measured with exactly those settings, so `AccuracyPlan.settings()` is the one
dict both the YAML (runners/artifacts/e2e_config.py) and `settings_argv()` (every lm-eval run) use.

What CI does NOT pass is not ours to pass either: no `--gen_kwargs` (the local task carries its
generation length in the task file, where CI would see it too) and no `--seed` (the CLI's default
seeds are simple_evaluate's defaults; `--seed 0` would change the few-shot sampling seed).

Live-server runs use `local-completions` with client-side tokenization (`tokenized_requests=True`,
the model's own HF tokenizer): the chat template is rendered by the tokenizer exactly as lm-eval's
`vllm` backend renders it, instead of by the server's chat endpoint. BOS: the `vllm` backend adds the
tokenizer's special tokens unless the (chat-templated) text already starts with BOS; the API backend
adds them only with `add_bos_token=True` - so that is set for plain prompts and left unset for
chat-templated ones. Multimodal tasks need the chat endpoint (images), so they use
`local-chat-completions`, which lm-eval runs one request at a time.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, Field

LOCAL_TASK = "adapt_gsm8k_local"
LOCAL_DATA = Path(__file__).resolve().parent.parent / "accuracy_tasks" / f"{LOCAL_TASK}.jsonl"
#: generation length of the local task (tiny models ramble; 32 tokens hold a `#### n` answer)
LOCAL_MAX_GEN_TOKS = 32
#: real task defaults (production)
TEXT_TASK, TEXT_FEWSHOT = "gsm8k", 5
VL_TASK, VL_FEWSHOT = "mmmu_val", 0
DEFAULT_BATCH_SIZE = "auto"


class AccuracySpec(BaseModel):
    """The `accuracy:` section of a runner profile."""

    #: "registry": lm-eval's own tasks (gsm8k / mmmu_val, datasets from the hub or a cache);
    #: "local": the offline gsm8k-shaped task shipped in runners/accuracy_tasks/
    task_source: Literal["registry", "local"] = "registry"
    #: force HF libraries offline for lm-eval (the operator's choice; ADAPT_BOT_LMEVAL_OFFLINE=1 too)
    offline: bool = False
    #: dataset cache dir (HF_HOME for lm-eval); ADAPT_BOT_DATASET_CACHE overrides
    dataset_cache: str | None = None
    num_fewshot: int | None = None  # None: the task default of the plan (5 text, 0 VL)
    limit: int | None = None
    timeout_s: float = 6 * 3600
    #: the second measurement: "repeat" = the live run again on the first `repeat_limit` documents;
    #: "offline-engine" = the target CI's own path (`simple_evaluate(model="vllm")`) after the server
    #: stopped (needs the devices free: cpu profile); "none" = one measurement, reported as unchecked
    check: Literal["repeat", "offline-engine", "none"] = "repeat"
    repeat_limit: int = Field(default=50, ge=1)
    check_timeout_s: float = 3600


@dataclass(frozen=True)
class AccuracyPlan:
    tasks: tuple[str, ...]
    num_fewshot: int | None
    limit: int | None
    apply_chat_template: bool
    fewshot_as_multiturn: bool
    batch_size: int | str
    task_source: str  # "registry" | "local"
    timeout_s: float
    #: lm-eval model for the live-server run: local-completions | local-chat-completions
    backend: str = "local-completions"
    include_path: Path | None = None

    def settings(self) -> dict[str, Any]:
        """The evaluation settings as the e2e YAML records them (and CI passes them on)."""
        return eval_settings(
            num_fewshot=self.num_fewshot,
            limit=self.limit,
            apply_chat_template=self.apply_chat_template,
            fewshot_as_multiturn=self.fewshot_as_multiturn,
            batch_size=self.batch_size,
        )

    def record(self) -> dict[str, Any]:
        """What the stage data carries (facts and the e2e config read these keys)."""
        return {
            "task_names": list(self.tasks),
            "task_source": self.task_source,
            "num_fewshot": self.num_fewshot,
            "limit": self.limit,
            "apply_chat_template": self.apply_chat_template,
            "fewshot_as_multiturn": self.fewshot_as_multiturn,
            "batch_size": self.batch_size,
            "lm_eval_model": self.backend,
        }

    def with_limit(self, limit: int) -> AccuracyPlan:
        return replace(self, limit=limit if self.limit is None else min(limit, self.limit))


def eval_settings(
    *,
    num_fewshot: int | None,
    limit: int | None,
    apply_chat_template: bool | None,
    fewshot_as_multiturn: bool | None,
    batch_size: int | str | None,
) -> dict[str, Any]:
    """The e2e YAML's evaluation keys, in the order of the hand-written configs. An unknown few-shot
    count or limit stays unsaid (CI then uses the task default / all documents, as we did)."""
    out: dict[str, Any] = {}
    if num_fewshot is not None:
        out["num_fewshot"] = num_fewshot
    if limit is not None:
        out["limit"] = limit  # measured on a subset: CI must compare on the same subset
    out["apply_chat_template"] = bool(apply_chat_template)
    out["fewshot_as_multiturn"] = bool(fewshot_as_multiturn)
    out["batch_size"] = batch_size if batch_size is not None else DEFAULT_BATCH_SIZE
    return out


def settings_argv(tasks: Sequence[str], settings: Mapping[str, Any]) -> list[str]:
    """lm-eval CLI flags for exactly these settings (each always explicit: no CLI default decides)."""
    argv = ["--tasks", ",".join(tasks), "--batch_size", str(settings.get("batch_size", DEFAULT_BATCH_SIZE))]
    if settings.get("num_fewshot") is not None:
        argv += ["--num_fewshot", str(settings["num_fewshot"])]
    if settings.get("limit") is not None:
        argv += ["--limit", str(settings["limit"])]
    if settings.get("apply_chat_template"):
        argv.append("--apply_chat_template")
    argv += ["--fewshot_as_multiturn", "true" if settings.get("fewshot_as_multiturn") else "false"]
    return argv


def has_chat_template(model_dir: Path) -> bool:
    if (model_dir / "chat_template.jinja").is_file() or (model_dir / "chat_template.json").is_file():
        return True
    cfg = model_dir / "tokenizer_config.json"
    try:
        return bool(json.loads(cfg.read_text(encoding="utf-8")).get("chat_template"))
    except (OSError, ValueError, AttributeError):
        return False


def make_plan(
    spec: AccuracySpec,
    *,
    multimodal: bool,
    chat: bool,
    tasks_override: Sequence[str] | None = None,
    limit_override: int | None = None,
    fewshot_override: int | None = None,
) -> AccuracyPlan:
    """Pure: the profile's section, the model's facts and the operator's overrides -> the plan."""
    if spec.task_source == "local":
        tasks: tuple[str, ...] = (LOCAL_TASK,)
        fewshot: int | None = 1
    elif multimodal:
        tasks, fewshot = (VL_TASK,), VL_FEWSHOT
    else:
        tasks, fewshot = (TEXT_TASK,), TEXT_FEWSHOT
    source: str = spec.task_source
    if spec.num_fewshot is not None:
        fewshot = spec.num_fewshot
    limit = spec.limit
    if tasks_override:
        tasks = tuple(tasks_override)
        source = "local" if tasks == (LOCAL_TASK,) else "registry"
    if limit_override is not None:
        limit = limit_override
    if fewshot_override is not None:
        fewshot = fewshot_override
    use_chat = chat or (multimodal and source == "registry")
    return AccuracyPlan(
        tasks=tasks,
        num_fewshot=fewshot,
        limit=limit,
        apply_chat_template=use_chat,
        fewshot_as_multiturn=use_chat and bool(fewshot),
        batch_size=DEFAULT_BATCH_SIZE,
        task_source=source,
        timeout_s=spec.timeout_s,
        backend="local-chat-completions" if multimodal and source == "registry" else "local-completions",
    )


def request_format_args(backend: str, apply_chat_template: bool | None) -> dict[str, str]:
    """How prompts reach the server (tokenization, BOS) - the part of `--model_args` that decides
    what the model sees; the tutorial's command uses it too (runners/artifacts/docs.py)."""
    if backend == "local-chat-completions":
        return {"tokenizer_backend": "huggingface", "tokenized_requests": "False"}
    out = {"tokenizer_backend": "huggingface", "tokenized_requests": "True"}
    if not apply_chat_template:
        out["add_bos_token"] = "True"  # noqa: S105 - not a secret
    return out


def live_argv(
    lm_eval: Sequence[str],
    plan: AccuracyPlan,
    *,
    base_url: str,
    served_name: str,
    tokenizer: str,
    output_path: Path,
    max_length: int | None = None,
    trust_remote_code: bool = False,
) -> list[str]:
    """lm-eval against the live OpenAI server, with the plan's settings (see the module docstring)."""
    chat_endpoint = plan.backend == "local-chat-completions"
    model_args: dict[str, str] = {
        "model": served_name,
        "base_url": f"{base_url.rstrip('/')}/v1/{'chat/completions' if chat_endpoint else 'completions'}",
        "tokenizer": tokenizer,
        **request_format_args(plan.backend, plan.apply_chat_template),
        "num_concurrent": "1",
        "max_retries": "2",
        "timeout": "600",
    }
    if max_length:
        model_args["max_length"] = str(max_length)
    if trust_remote_code:
        model_args["trust_remote_code"] = "True"
    argv = [
        *lm_eval,
        "run",
        "--model",
        plan.backend,
        "--model_args",
        ",".join(f"{k}={v}" for k, v in model_args.items()),
        *settings_argv(plan.tasks, plan.settings()),
        "--output_path",
        str(output_path),
        "--log_samples",
    ]
    if plan.include_path is not None:
        argv += ["--include_path", str(plan.include_path)]
    return argv


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
            "max_gen_toks": LOCAL_MAX_GEN_TOKS,
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
