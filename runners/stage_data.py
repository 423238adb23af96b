"""The typed `StageResult.data` of each stage, declared once for the stages and the artifact builders.

A stage that assembles its data in one place builds it through its model here; every reader
(runners.artifacts.facts) parses it back with `stage_data()`. A runner is untrusted and stored results
outlive code changes, so: extra keys are kept (a stage may carry more than the readers know), each fact
has ONE key name (an older run's other name is mapped in a `mode="before"` validator, so stored results
still parse), and data that does not validate is an unknown fact: `stage_data()` returns None and the
reason is logged and kept (`parse_stage_data`), never an exception in a report.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from runners.contracts import RUNNER_STAGES, StageResult

log = logging.getLogger(__name__)

#: how much of a validation error a log line / report keeps (the data itself is never echoed)
MAX_PROBLEM_CHARS = 300


def _renamed(data: Any, canonical: str, *old: str) -> Any:
    """Move the first present old key to `canonical` when `canonical` is absent (older runs' names)."""
    if not isinstance(data, dict) or data.get(canonical) is not None:
        return data
    for key in old:
        if data.get(key) is not None:
            data = {**data, canonical: data[key]}
            break
    return data


class StageData(BaseModel):
    """What every stage's data may carry: extra keys kept, and the pipeline's own additions."""

    model_config = ConfigDict(extra="allow")

    #: the versions that ran (runners.versions, added by runners.pipeline); a non-string value is
    #: an unknown version, not a reason to drop the stage's other facts
    versions: dict[str, str | None] | None = None
    #: devices x seconds of the stage's processes (runners.accounting, added by runners.pipeline);
    #: a malformed or negative figure is unknown
    device_seconds: float | None = None

    @field_validator("versions", mode="before")
    @classmethod
    def _versions(cls, value: Any) -> Any:
        if isinstance(value, Mapping):
            return {str(k): v if isinstance(v, str) else None for k, v in value.items()}
        return None

    @field_validator("device_seconds", mode="before")
    @classmethod
    def _device_seconds(cls, value: Any) -> Any:
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            return None
        return value


# ------------------------------------------------------------------------------------------- analyze


class Problem(BaseModel):
    model_config = ConfigDict(extra="allow")

    code: str | None = None
    message: str = ""
    blocking: bool = False

    @model_validator(mode="before")
    @classmethod
    def _names(cls, data: Any) -> Any:
        if isinstance(data, str):
            return {"message": data}
        return _renamed(data, "message", "text")


class Support(BaseModel):
    model_config = ConfigDict(extra="allow")

    verdict: str | None = None
    source: str | None = None
    reason: str | None = None


class PlannedFeature(BaseModel):
    """What the analysis decided about a feature before any probe (applicable, not-applicable, ...)."""

    model_config = ConfigDict(extra="allow")

    status: str | None = None
    reason: str = ""

    @model_validator(mode="before")
    @classmethod
    def _names(cls, data: Any) -> Any:
        return _renamed(data, "status", "verdict")


class SuggestedTp(BaseModel):
    """Tensor parallel size per hardware (None: does not fit one node); older runs wrote one int."""

    model_config = ConfigDict(extra="allow")

    a2: int | None = None
    a3: int | None = None

    @model_validator(mode="before")
    @classmethod
    def _one_int(cls, data: Any) -> Any:
        if isinstance(data, int) and not isinstance(data, bool):
            return {"a2": data, "a3": data}
        return data


class AnalyzeData(StageData):
    """runners.analysis.AnalysisResult as the analyze stage records it (plus the candidate)."""

    architecture: str | None = None
    model_type: str | None = None
    multimodal: bool = False
    moe: dict[str, Any] | None = None
    mtp_layers: int = 0
    attention: str | None = None
    quantization: dict[str, Any] | None = None
    max_position_embeddings: int | None = None
    parameter_bytes: int | None = None
    #: the repository ships Python code
    remote_code: bool | None = None
    #: serving needs that code (runners.analysis.remote_code); what the artifacts report
    remote_code_required: bool | None = None
    suggested_tp: SuggestedTp | None = None
    support: Support | str | None = None
    features: dict[str, PlannedFeature] = Field(default_factory=dict)
    problems: list[Problem] = Field(default_factory=list)
    candidate: dict[str, Any] | None = None


# ---------------------------------------------------------------------------------------------- gates


class Smoke(BaseModel):
    """The chat request a gate sent once the server was ready, and the reply."""

    model_config = ConfigDict(extra="allow")

    request: Any = None
    status: int | None = None
    content: str | None = None
    ok: bool | None = None
    error: str | None = None
    #: the raw body when the reply was not a completion
    response_excerpt: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _names(cls, data: Any) -> Any:
        if isinstance(data, str):
            return {"content": data}
        return _renamed(data, "content", "response", "excerpt")


class ImageSmoke(BaseModel):
    model_config = ConfigDict(extra="allow")

    ok: bool | None = None


class Rung(BaseModel):
    """One fallback-ladder rung as it ran (runners.gates.ladder.RungRecord, older shapes mapped)."""

    model_config = ConfigDict(extra="allow")

    rung: str = "?"
    status: str = "?"
    note: str = ""
    reason: str | None = None
    signature: str | None = None
    #: the change the rung made, as shell words; None: the ladder's own (facts.RUNG_FLAGS)
    flags: str | None = None
    argv: list[str] = Field(default_factory=list)
    env: dict[str, str] = Field(default_factory=dict)
    log_path: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _names(cls, data: Any) -> Any:
        data = _renamed(data, "rung", "step", "name")
        data = _renamed(data, "status", "outcome", "result")
        data = _renamed(data, "signature", "error", "first_error")
        data = _renamed(data, "flags", "change", "extra_args")
        data = _renamed(data, "log_path", "log")
        if isinstance(data, dict) and isinstance(data.get("flags"), list | tuple):
            data = {**data, "flags": " ".join(str(f) for f in data["flags"])}
        return data


class LoadFinding(BaseModel):
    model_config = ConfigDict(extra="allow")

    kind: str = "?"
    text: str = ""
    line: int | None = None


class FullSize(BaseModel):
    """One feature of the probes' set on the full-size real-weight start."""

    model_config = ConfigDict(extra="allow")

    status: Literal["confirmed", "refuted"]
    line: int | None = None
    text: str | None = None
    why: str | None = None


class GateData(StageData):
    """The dummy and the real gate (runners.gates.gate: Attempt.data() plus the ladder). Typed: what
    the readers need; the rest (command line, load format, parity and quality for runners.verdict,
    the zero-code recipe for runners.recipe) is kept as the gate wrote it."""

    #: the `vllm serve` argv of the first start
    argv: list[str] | None = None
    env: dict[str, str] | None = None
    log_path: str | None = None
    ready_after_s: float | None = None
    smoke: Smoke | None = None
    image_smoke: ImageSmoke | None = None
    image_ok: bool | None = None
    #: the first error signature in the serve log (runners.gates.evidence)
    signature: str | None = None
    ladder: list[Rung] = Field(default_factory=list)
    load_findings: list[LoadFinding] = Field(default_factory=list)
    #: the real gate: each probed feature confirmed or refuted at full size (runners.gates.gate)
    features_at_full_size: dict[str, FullSize] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _names(cls, data: Any) -> Any:
        data = _renamed(data, "argv", "serve_argv")
        data = _renamed(data, "env", "serve_env")
        data = _renamed(data, "log_path", "serve_log", "log")
        data = _renamed(data, "ready_after_s", "ready_s", "ready_time_s", "time_to_ready_s")
        data = _renamed(data, "signature", "first_error", "error_signature")
        data = _renamed(data, "image_ok", "multimodal_ok")
        data = _renamed(data, "ladder", "rungs")
        if not isinstance(data, dict):
            return data
        if isinstance(data.get("argv"), str):
            data = {**data, "argv": data["argv"].split()}
        ladder = data.get("ladder")
        if isinstance(ladder, Mapping):  # {rung: status | record}
            data = {
                **data,
                "ladder": [
                    {"rung": k, **(v if isinstance(v, Mapping) else {"status": v})} for k, v in ladder.items()
                ],
            }
        smoke = data.get("smoke")
        loose = {k: data[k] for k in ("smoke_request", "smoke_response", "smoke_excerpt") if k in data}
        if loose and (smoke is None or isinstance(smoke, Mapping)):
            merged = dict(smoke or {})
            merged.setdefault("request", loose.get("smoke_request"))
            merged.setdefault("content", loose.get("smoke_response") or loose.get("smoke_excerpt"))
            data = {**data, "smoke": merged}
        return data


# ------------------------------------------------------------------------------------------- features


class EvidenceItem(BaseModel):
    """contracts.Evidence, read leniently (a feature row's proof may be a bare line)."""

    model_config = ConfigDict(extra="allow")

    kind: str | None = None
    text: str | None = None
    log_path: str | None = None
    line: int | None = None

    @model_validator(mode="before")
    @classmethod
    def _bare(cls, data: Any) -> Any:
        return {"text": data} if isinstance(data, str) else data


class FeatureRow(BaseModel):
    """contracts.FeatureResult as dumped; the status is kept verbatim (a FeatureStatus value)."""

    model_config = ConfigDict(extra="allow")

    feature: str | None = None
    status: str = "not run"
    reason: str = ""
    evidence: list[EvidenceItem] = Field(default_factory=list)

    @model_validator(mode="before")
    @classmethod
    def _bare(cls, data: Any) -> Any:
        return {"status": data} if isinstance(data, str) else data


class FeaturesData(StageData):
    """The feature matrix (runners.stages.features). Only what the readers need is typed: the stage
    owns its other keys (probes, load formats, waves) and changes them freely."""

    features: dict[str, FeatureRow] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _names(cls, data: Any) -> Any:
        data = _renamed(data, "features", "matrix")
        if isinstance(data, dict):
            inner = data.get("features")
            if isinstance(inner, Mapping) and isinstance(inner.get("features"), Mapping):
                data = {**data, "features": inner["features"]}  # a dumped FeatureMatrix
        return data


# ------------------------------------------------------------------------------------------- capacity


def _ttft_s(data: Any) -> Any:
    """TTFT in seconds under one key; older summaries gave milliseconds or a mean."""
    if not isinstance(data, dict) or data.get("ttft_p50_s") is not None:
        return data
    for key in ("ttft_ms", "mean_ttft_ms", "ttft_p50_ms"):
        value = data.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool):
            return {**data, "ttft_p50_s": value / 1000}
    return _renamed(data, "ttft_p50_s", "ttft_s", "mean_ttft_s")


class CapacityRun(BaseModel):
    """One server start of the capacity stage (runners.stages.capacity.record)."""

    model_config = ConfigDict(extra="allow")

    kind: str | None = None
    max_model_len: int | None = None
    max_num_seqs: int | None = None
    status: str = "?"
    #: requests that succeeded out of `requests`
    success: int | None = None
    requests: int | None = None
    ttft_p50_s: float | None = None
    throughput_tok_s: float | None = None
    #: a label for a row that is not a (length, sequences) setting
    setting: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _names(cls, data: Any) -> Any:
        data = _renamed(data, "status", "outcome")
        data = _renamed(data, "setting", "name")
        data = _renamed(data, "success", "successes", "success_count", "ok_requests")
        data = _renamed(data, "requests", "total_requests", "request_count")
        data = _renamed(data, "max_num_seqs", "concurrency")
        return _ttft_s(data)


class CapacityData(StageData):
    """The capacity search: practical vs theoretical length, every start, the KV prediction."""

    theoretical_max_len: int | None = None
    practical_max_len: int | None = None
    baseline: dict[str, Any] | None = None
    seq_steps: list[int] | None = None
    kv_prediction: dict[str, Any] | None = None
    kv_measured: dict[str, Any] | None = None
    kv_max_abs_error: float | None = None
    starts: int | None = None
    runs: list[CapacityRun] = Field(default_factory=list)
    search: list[CapacityRun] = Field(default_factory=list)
    load_format: str | None = None
    profile: str | None = None
    note: str | None = None
    # a summary of the practical setting (older runs; now read from its row in `runs`)
    max_num_seqs: int | None = None
    success: int | None = None
    requests: int | None = None
    ttft_p50_s: float | None = None
    throughput_tok_s: float | None = None

    @model_validator(mode="before")
    @classmethod
    def _names(cls, data: Any) -> Any:
        data = _renamed(data, "theoretical_max_len", "theoretical")
        data = _renamed(data, "practical_max_len", "practical", "max_len_ok")
        data = _renamed(data, "runs", "rungs", "attempts")
        data = _renamed(data, "success", "successes", "success_count", "ok_requests")
        data = _renamed(data, "requests", "total_requests", "request_count")
        data = _renamed(data, "max_num_seqs", "concurrency")
        data = _renamed(data, "throughput_tok_s", "output_throughput", "throughput")
        return _ttft_s(data)


# ------------------------------------------------------------------------------------------- accuracy


class Metric(BaseModel):
    model_config = ConfigDict(extra="allow")

    name: str
    value: float
    stderr: float | None = None
    implausible: bool | None = None
    why: str | None = None
    reference: float | None = None


class Task(BaseModel):
    """One lm-eval task in e2e-config form (runners.accuracy.results)."""

    model_config = ConfigDict(extra="allow")

    name: str
    metrics: list[Metric] = Field(default_factory=list)


class AccuracyData(StageData):
    """The accuracy run: plan (runners.accuracy.plan.AccuracyPlan.record), server, lm-eval, checks.
    The stage builds its data through this model (runners.stages.accuracy.stage_record). Kept as the
    stage wrote them, untyped: `transformers_reference` and `reference_sources` (no artifact reads
    them; the verdict reads `references` / `plausibility`, typed as mappings here)."""

    task_names: list[str] | None = None
    task_source: str | None = None  # "registry" (real tasks) or "local" (offline test tasks)
    num_fewshot: int | None = None
    limit: int | None = None
    apply_chat_template: bool | None = None
    fewshot_as_multiturn: bool | None = None
    batch_size: int | str | None = None
    lm_eval_model: str | None = None  # local-completions / local-chat-completions
    #: the tasks whose values reach the e2e config (only those a second measurement did not contradict)
    tasks: list[Task] = Field(default_factory=list)
    settings: dict[str, Any] | None = None
    #: the lm-eval log
    log_path: str | None = None
    lm_eval_env: dict[str, Any] | None = None
    datasets: dict[str, Any] | None = None
    check: str | None = None
    serve_argv: list[str] | None = None
    env: dict[str, str] | None = None
    serve_log: str | None = None
    ready_s: float | None = None
    #: the job's shared real-weight start, or why this run had its own
    server: dict[str, Any] | None = None
    lm_eval_argv: list[str] | None = None
    #: one shell line, when a run recorded it
    command_line: str | None = None
    lm_eval_version: str | None = None
    measurements: list[dict[str, Any]] | None = None
    results_path: str | None = None
    reproducibility: dict[str, Any] | None = None
    references: dict[str, Any] | None = None
    plausibility: dict[str, Any] | None = None
    withheld_tasks: list[Task] | None = None
    missing_dataset: str | None = None
    chat_template_kwargs: dict[str, Any] | None = None

    @model_validator(mode="before")
    @classmethod
    def _names(cls, data: Any) -> Any:
        data = _renamed(data, "serve_argv", "argv")
        data = _renamed(data, "lm_eval_model", "model_backend")
        data = _renamed(data, "command_line", "lm_eval_command")
        return data


# ------------------------------------------------------------------------------------------- registry


def _registry(models: dict[str, type[StageData]]) -> dict[str, type[StageData]]:
    unknown = set(models) - set(RUNNER_STAGES)
    if unknown:  # the stage vocabulary is runners.contracts'; this only maps it to models
        raise ValueError(f"not stages: {sorted(unknown)}")
    return models


MODELS: dict[str, type[StageData]] = _registry(
    {
        "analyze": AnalyzeData,
        "dummy-gate": GateData,
        "real-gate": GateData,
        "features": FeaturesData,
        "capacity": CapacityData,
        "accuracy": AccuracyData,
    }
)


@dataclass(frozen=True)
class Parsed:
    data: StageData | None
    #: why the data did not parse (None: it did, or the stage has no model)
    problem: str | None = None


def _problem(exc: ValidationError) -> str:
    # locations and messages only: the values are untrusted and may be huge
    parts = [
        f"{'.'.join(str(p) for p in e['loc']) or '(data)'}: {e['msg']}"
        for e in exc.errors(include_input=False, include_url=False)
    ]
    text = "; ".join(parts[:5]) + (f"; and {len(parts) - 5} more" if len(parts) > 5 else "")
    return text[:MAX_PROBLEM_CHARS]


def parse_stage_data(result: StageResult) -> Parsed:
    """`result.data` as its stage's model, or None with the reason (logged) when it does not validate."""
    model = MODELS.get(result.stage)
    if model is None:
        return Parsed(None)
    try:
        return Parsed(model.model_validate(result.data))
    except ValidationError as exc:
        problem = _problem(exc)
        log.warning("%s data does not validate (its facts are unknown): %s", result.stage, problem)
        return Parsed(None, problem)


def stage_data(result: StageResult) -> StageData | None:
    """The typed data of `result` (None: no model for its stage, or bad data — an unknown fact)."""
    return parse_stage_data(result).data


def wire(model: BaseModel) -> dict[str, Any]:
    """A model as `StageResult.data`: JSON types, only the keys a stage set (absent stays absent)."""
    return model.model_dump(mode="json", exclude_unset=True)
