"""lm-eval's environment: where its datasets come from.

Online by default, so `gsm8k` / `mmmu_val` load from the hub (or the mirror in HF_ENDPOINT) on an
Ascend runner. Offline only when the operator says so: `ADAPT_BOT_LMEVAL_OFFLINE=1` or the profile's
`accuracy.offline: true` (the cpu profile, whose task is local). A configured dataset cache
(`ADAPT_BOT_DATASET_CACHE`, else the profile's `accuracy.dataset_cache`) becomes HF_HOME with
HF_DATASETS_CACHE=<cache>/datasets, the hub's own layout, so a cache filled once by
`datasets.load_dataset` on any host serves every later job. ModelScope switches
(VLLM_USE_MODELSCOPE, MODELSCOPE_CACHE, ...) and proxies are passed through when set; tokens are not
(the public evaluation datasets need none, and lm-eval's log would be one more place to leak one).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from runners.accuracy.plan import AccuracySpec

BASE_VARS = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
#: passed through when set: hub mirror, ModelScope, proxies, an operator's own HF cache
PASS_THROUGH = (
    "HF_ENDPOINT",
    "HF_HOME",
    "HF_DATASETS_CACHE",
    "HF_HUB_CACHE",
    "VLLM_USE_MODELSCOPE",
    "MODELSCOPE_CACHE",
    "MODELSCOPE_DOMAIN",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "http_proxy",
    "https_proxy",
    "no_proxy",
)
#: recorded in the stage data (no proxies: they may carry credentials)
RECORDED = ("HF_DATASETS_OFFLINE", "HF_HUB_OFFLINE", "HF_HOME", "HF_DATASETS_CACHE", "HF_ENDPOINT",
            "VLLM_USE_MODELSCOPE", "MODELSCOPE_CACHE")  # fmt: skip
_TRUE = {"1", "true", "yes", "on"}


@dataclass(frozen=True)
class DatasetAccess:
    offline: bool
    offline_source: str | None  # "ADAPT_BOT_LMEVAL_OFFLINE" | "profile" | None
    cache_dir: str | None  # where datasets are looked up / stored (HF_DATASETS_CACHE)


def dataset_access(spec: AccuracySpec, environ: Mapping[str, str], scratch: Path) -> DatasetAccess:
    flag = environ.get("ADAPT_BOT_LMEVAL_OFFLINE", "").strip().lower()
    if flag in _TRUE:
        offline, source = True, "ADAPT_BOT_LMEVAL_OFFLINE"
    elif flag in {"0", "false", "no", "off"}:
        offline, source = False, None
    else:
        offline, source = spec.offline, ("profile" if spec.offline else None)
    root = environ.get("ADAPT_BOT_DATASET_CACHE") or spec.dataset_cache
    if root:
        cache: str | None = str(Path(root).expanduser() / "datasets")
    elif spec.task_source == "local":
        cache = str(scratch / "hf-home" / "datasets")  # nothing to cache: the task file is local
    else:
        cache = environ.get("HF_DATASETS_CACHE") or (
            str(Path(environ["HF_HOME"]) / "datasets") if environ.get("HF_HOME") else None
        )
    return DatasetAccess(offline=offline, offline_source=source, cache_dir=cache)


def lm_eval_env(spec: AccuracySpec, environ: Mapping[str, str], scratch: Path) -> dict[str, str]:
    """The whole environment of an lm-eval subprocess (nothing else from the worker leaks in)."""
    env = {k: environ[k] for k in BASE_VARS if k in environ}
    env.update({k: environ[k] for k in PASS_THROUGH if environ.get(k)})
    access = dataset_access(spec, environ, scratch)
    root = environ.get("ADAPT_BOT_DATASET_CACHE") or spec.dataset_cache
    if root:
        env["HF_HOME"] = str(Path(root).expanduser())
        env["HF_DATASETS_CACHE"] = str(Path(root).expanduser() / "datasets")
    elif spec.task_source == "local":
        env["HF_HOME"] = str(scratch / "hf-home")
        env["HF_DATASETS_CACHE"] = str(scratch / "hf-home" / "datasets")
    if access.offline:
        env.update({"HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"})
    env.update(
        {
            "TOKENIZERS_PARALLELISM": "false",
            "OPENAI_API_KEY": "EMPTY",  # the local server needs none; the client library wants one
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env


def recorded_env(env: Mapping[str, str]) -> dict[str, str]:
    return {k: env[k] for k in RECORDED if k in env}


# -- a dataset that could not be loaded ------------------------------------------------------------

_DATASET_PATTERNS = (
    # datasets: "Couldn't reach 'openai/gsm8k' on the Hub (LocalEntryNotFoundError)"
    re.compile(r"Couldn't reach '(?P<ds>[^']+)' on the Hub"),
    # datasets: "Couldn't find cache for openai/gsm8k for config 'main'" / "... a dataset script at"
    re.compile(
        r"Couldn't find (?:cache for|a dataset script at|any data file at) "
        r"'?(?P<ds>[\w./-]+?)'?(?: for|[,\s]|$)"
    ),
    re.compile(r"Dataset '(?P<ds>[^']+)' doesn't exist on the Hub"),
    re.compile(r"DatasetNotFoundError: .*?'(?P<ds>[^']+)'"),
)
_OFFLINE_HINTS = ("HF_DATASETS_OFFLINE", "offline mode", "LocalEntryNotFoundError", "OfflineModeIsEnabled")
_NETWORK_HINTS = ("ConnectionError", "Max retries exceeded", "Temporary failure in name resolution",
                  "Network is unreachable", "ConnectTimeout", "ReadTimeout")  # fmt: skip


def missing_dataset(log_text: str) -> str | None:
    """The dataset lm-eval could not load, from its log; None when the failure was something else."""
    for pattern in _DATASET_PATTERNS:
        found = list(pattern.finditer(log_text))
        if found:
            return found[-1].group("ds")
    return None


def dataset_diagnosis(dataset: str, tasks: str, access: DatasetAccess, log_text: str) -> tuple[str, str]:
    """(diagnosis, next step) for a dataset that could not be loaded."""
    where = access.cache_dir or "the default HF cache (~/.cache/huggingface/datasets)"
    if access.offline:
        why = (
            "ADAPT_BOT_LMEVAL_OFFLINE=1" if access.offline_source == "ADAPT_BOT_LMEVAL_OFFLINE"
            else "the runner profile's `accuracy.offline: true`"
        )  # fmt: skip
        return (
            f"lm-eval could not load dataset {dataset} (task {tasks}): offline mode is set ({why}) and "
            f"the dataset is not in the cache {where}.",
            f"Fill the cache on a host with network: HF_HOME={Path(where).parent} python -c "
            f"\"import datasets; datasets.load_dataset('{dataset}')\" (with the task's config name), or "
            "unset ADAPT_BOT_LMEVAL_OFFLINE so lm-eval may download it; then `/adapt rerun accuracy`.",
        )
    network = any(h in log_text for h in _NETWORK_HINTS)
    return (
        f"lm-eval could not load dataset {dataset} (task {tasks})"
        + (" - the hub was unreachable from the runner" if network else "")
        + f"; cache {where}.",
        "Give the runner network access to the hub (or a mirror via HF_ENDPOINT), or fill a dataset "
        "cache and point ADAPT_BOT_DATASET_CACHE at it (with ADAPT_BOT_LMEVAL_OFFLINE=1); then "
        "`/adapt rerun accuracy`.",
    )
