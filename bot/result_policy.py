"""What the control plane accepts from a runner's `result` event (pure).

A runner is untrusted, so its result is data to check, not instructions: the stage and attempt
must be the ones sent, and the files it offers for the commit must be exactly the kinds the job
expects — the e2e config, the tutorial, the docs registration and the CI list entries the repo's
config turned on, at the paths the control plane computes from the job's own options — each
bounded, text, and of the right shape (YAML that parses to the e2e config's keys, a nav file that
parses, JSON that parses). Anything else is refused, and the refusal is reported on the issue.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import yaml

from runners.artifacts.docs import tutorial_path_for
from runners.artifacts.e2e_config import config_path_for
from runners.artifacts.facts import model_names
from runners.artifacts.target import MODEL_LIST, NIGHTLY_CONFIG, TUTORIAL_INDEX
from runners.contracts import MAX_FILE_BYTES, MAX_FILES, JobOptions, RunnerEvent
from runners.host.logs import LOG_NAME, decode

#: Reports the artifacts stage previews (the control plane re-renders the final ones at delivery).
REPORT_NAMES = frozenset({"report.zh.md", "runbook.zh.md"})
NAV_FILES = frozenset({"mkdocs.yml", "mkdocs.yaml", TUTORIAL_INDEX})
#: Top-level keys of vllm-ascend's e2e accuracy configs (tests/e2e/models/configs/*.yaml).
E2E_KEYS = frozenset(
    {
        "model_name",
        "hardware",
        "model_type",
        "tasks",
        "num_fewshot",
        "apply_chat_template",
        "fewshot_as_multiturn",
        "batch_size",
        "limit",
        "serve",
        "gpu_memory_utilization",
        "max_model_len",
        "tensor_parallel_size",
        "trust_remote_code",
        "enforce_eager",
        "enable_expert_parallel",
        "quantization",
        "max_images",
        "dtype",
        "runner",
    }
)


@dataclass(frozen=True)
class Expected:
    """The files a job may commit, computed on the control plane from the job's options."""

    e2e_config: str | None
    tutorial: str | None
    hub_id: str | None
    nightly: bool = False
    model_list: bool = False

    @classmethod
    def for_job(cls, options: JobOptions) -> Expected:
        names = model_names(options)
        wanted = options.artifacts
        return cls(
            e2e_config=config_path_for(names.name) if wanted.e2e_config else None,
            tutorial=tutorial_path_for(names.name) if wanted.tutorial else None,
            hub_id=names.hub_id,
            nightly=wanted.nightly_section is not None,
            model_list=wanted.model_list,
        )

    def allowed(self) -> frozenset[str]:
        paths = {self.e2e_config, self.tutorial, NIGHTLY_CONFIG if self.nightly else None}
        paths.add(MODEL_LIST if self.model_list else None)
        registration = NAV_FILES if self.tutorial else set()
        return frozenset({p for p in paths if p} | registration)


def _text_problem(path: str, text: str) -> str | None:
    size = len(text.encode("utf-8"))
    if size > MAX_FILE_BYTES:
        return f"{path}: {size} bytes, over the {MAX_FILE_BYTES}-byte limit"
    if "\x00" in text:
        return f"{path}: contains NUL bytes (not a text file)"
    return None


def _shape_problem(path: str, text: str, expected: Expected) -> str | None:
    try:
        if path == expected.e2e_config:
            doc = yaml.safe_load(text)
            if not isinstance(doc, dict):
                return f"{path}: not a YAML mapping"
            unknown = sorted(set(doc) - E2E_KEYS)
            if unknown:
                return f"{path}: unexpected keys {', '.join(map(str, unknown))}"
            if expected.hub_id and doc.get("model_name") != expected.hub_id:
                return f"{path}: model_name is {doc.get('model_name')!r}, the job is for {expected.hub_id!r}"
        elif path.endswith((".yml", ".yaml")):
            yaml.load(text, Loader=_LenientLoader)  # noqa: S506  (a loader that builds no objects)
        elif path.endswith(".json"):
            json.loads(text)
    except (yaml.YAMLError, ValueError) as exc:
        return f"{path}: does not parse ({type(exc).__name__})"
    return None


class _LenientLoader(yaml.SafeLoader):
    """mkdocs.yml uses `!!python/name:` tags: accept any tag as plain data, construct nothing."""


def _any_tag(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> object:
    if isinstance(node, yaml.MappingNode):
        return loader.construct_mapping(node)
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node)
    return loader.construct_scalar(node)  # type: ignore[arg-type]


_LenientLoader.add_multi_constructor("", _any_tag)


def refusals(event: RunnerEvent, expected: Expected) -> list[str]:
    """Why a `result` event cannot be accepted as it is (empty: accept)."""
    out: list[str] = []
    result = event.result
    if result is None:
        return ["the result event carries no result"]
    if result.stage != event.stage:
        out.append(f"the result is for stage {result.stage!r}, the attempt ran {event.stage!r}")
    if event.files and event.stage != "artifacts":
        out.append(f"stage {event.stage} may not send files to commit")
    if len(event.files) > MAX_FILES:
        out.append(f"{len(event.files)} files, more than {MAX_FILES}")
    allowed = expected.allowed()
    for path, text in sorted(event.files.items()):
        if path not in allowed:
            out.append(f"unexpected file {path!r} (a job commits only {', '.join(sorted(allowed))})")
            continue
        problem = _text_problem(path, text) or _shape_problem(path, text, expected)
        if problem:
            out.append(problem)
    for name, blob in sorted(event.logs.items()):
        if not LOG_NAME.match(name):
            out.append(f"unexpected log name {name[:80]!r}")
            continue
        try:
            decode(blob)
        except (ValueError, OSError, EOFError) as exc:
            out.append(f"log {name}: not a bounded gzip+base64 text ({type(exc).__name__})")
    for name, text in sorted(event.reports.items()):
        if name not in REPORT_NAMES:
            out.append(f"unexpected report {name!r}")
        elif problem := _text_problem(name, text):
            out.append(problem)
    return out
