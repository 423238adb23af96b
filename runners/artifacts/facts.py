"""The view-model every artifact renders from: what the runs established, and nothing else.

Stages are written by different people and evolve; this module is the one place that turns their
`StageResult.data`, parsed by the stage's model in runners.stage_data, into the facts the artifacts
state. A missing key, or data that does not validate, is an unknown fact: never a crash, never a
guess. Templates only see these dataclasses.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from runners.contracts import FEATURES, STAGES, FeatureStatus, JobOptions, StageResult
from runners.feature_catalog import TITLES
from runners.model_ref import ModelRefError, parse_model_ref
from runners.stage_data import (
    AccuracyData,
    AnalyzeData,
    CapacityData,
    CapacityRun,
    FeaturesData,
    GateData,
    Parsed,
    Rung,
    Smoke,
    StageData,
    Support,
    parse_stage_data,
    stage_data,
)
from runners.verdict import TARGET_HARDWARE, Verdict, judge, parity_state, quality_state

#: the features' display names: one declaration, runners.feature_catalog
FEATURE_TITLES = TITLES
GATE_STAGES = ("dummy-gate", "real-gate")
#: what each fallback-ladder rung changes (runners.gates.ladder names); env changes are added from the record
RUNG_FLAGS = {
    "reproduce": "",
    "enforce-eager": "--enforce-eager",
    "torchdynamo-disable": "",
    "text-only": '--limit-mm-per-prompt \'{"image":0,"video":0,"audio":0}\'',
}


# ---------------------------------------------------------------------------------------------- names


@dataclass(frozen=True)
class ModelNames:
    """How the model is named in each artifact."""

    #: hub id (`Qwen/Qwen3-8B`) or `/models/<name>` when no hub id is known
    ref: str
    hub_id: str | None
    #: file stem in the target repo: `tests/e2e/models/configs/<name>.yaml`, tutorial `<name>.md`
    name: str
    #: lower-case, branch-safe
    slug: str
    served_name: str


_SAFE_STEM = re.compile(r"[^A-Za-z0-9._-]+")


def model_names(options: JobOptions) -> ModelNames:
    try:
        ref = parse_model_ref(options.model)
        hub_id, name, slug, shown = ref.hub_id, ref.name, ref.slug, ref.display
    except ModelRefError:
        # a local directory run (`adapt-bot run DIR`): name it after the directory
        raw = (options.local_path or options.model).rstrip("/").rsplit("/", 1)[-1]
        name = _SAFE_STEM.sub("-", raw).strip("-.") or "model"
        hub_id, shown = None, options.model
        slug = re.sub(r"[^a-z0-9.-]+", "-", name.lower()).strip("-.") or "model"
    name = _SAFE_STEM.sub("-", name).strip("-.") or "model"
    served = options.served_model_name or slug
    return ModelNames(ref=shown, hub_id=hub_id, name=name, slug=slug, served_name=served)


def branch_name(names: ModelNames, issue: int | None) -> str:
    return f"adapt/{names.slug}-{issue}" if issue is not None else f"adapt/{names.slug}"


# ---------------------------------------------------------------------------------------- serve argv


def _int_arg(value: str | None) -> int | None:
    """A CLI flag's value as an int (None: absent or not a plain number)."""
    return int(value) if value is not None and re.fullmatch(r"\s*[0-9]+\s*", value) else None


@dataclass(frozen=True)
class ServeFlags:
    """The `vllm serve` flags a run used (parsed from its argv)."""

    argv: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()

    def value(self, flag: str) -> str | None:
        args = self.argv
        for i, arg in enumerate(args):
            if arg == flag and i + 1 < len(args):
                return args[i + 1]
            if arg.startswith(flag + "="):
                return arg.split("=", 1)[1]
        return None

    def has(self, flag: str) -> bool:
        return any(a == flag or a.startswith(flag + "=") for a in self.argv)

    @property
    def tp(self) -> int | None:
        return _int_arg(self.value("--tensor-parallel-size") or self.value("-tp"))

    @property
    def max_model_len(self) -> int | None:
        return _int_arg(self.value("--max-model-len"))

    @property
    def model_arg(self) -> str | None:
        """The positional model argument of `vllm serve MODEL` (or `--model`)."""
        if (v := self.value("--model")) is not None:
            return v
        args = list(self.argv)
        if "serve" in args:
            i = args.index("serve")
            if i + 1 < len(args) and not args[i + 1].startswith("-"):
                return args[i + 1]
        return None


# ------------------------------------------------------------------------------------------ sections


@dataclass(frozen=True)
class GateFacts:
    stage: str  # dummy-gate | real-gate
    weights: str  # dummy | real
    status: str  # passed | failed | skipped | error | not run
    reason: str | None
    diagnosis: str | None
    next_step: str | None
    serve: ServeFlags
    ready_s: float | None
    smoke_request: str | None
    smoke_response: str | None
    image_ok: bool | None
    log_path: str | None
    first_error: str | None
    evidence: tuple[tuple[str, str, str | None], ...]  # (kind, text, log path)
    ladder: tuple[LadderRung, ...]
    #: reference parity: passed | skipped | failed | unchecked (runners.verdict.parity_state)
    parity: str = "unchecked"
    parity_detail: str | None = None
    #: output quality: ok | degenerate | unchecked (runners.verdict.quality_state)
    quality: str = "unchecked"
    quality_detail: str | None = None
    #: load findings parsed from the serve log (runners.gates.findings): (kind, text, line)
    load_findings: tuple[tuple[str, str, int | None], ...] = ()

    @property
    def ran(self) -> bool:
        return self.status != "not run"

    @property
    def passed(self) -> bool:
        return self.status == "passed"


@dataclass(frozen=True)
class LadderRung:
    step: str
    flags: str
    status: str
    signature: str | None
    log_path: str | None


@dataclass(frozen=True)
class FeatureFacts:
    key: str
    title: str
    status: str  # a FeatureStatus value, verbatim, or "not run"
    reason: str
    evidence: str | None
    log_path: str | None

    @property
    def verified(self) -> bool:
        return self.status == FeatureStatus.SUPPORTED.value


@dataclass(frozen=True)
class CapacityFacts:
    ran: bool
    status: str
    theoretical_max_len: int | None
    practical_max_len: int | None
    max_num_seqs: int | None
    successes: int | None
    requests: int | None
    ttft_ms: float | None
    throughput_tok_s: float | None
    note: str | None
    rungs: tuple[tuple[str, str], ...]  # (setting, outcome)


@dataclass(frozen=True)
class MetricValue:
    name: str
    value: float
    stderr: float | None = None


@dataclass(frozen=True)
class TaskResult:
    name: str
    metrics: tuple[MetricValue, ...]


@dataclass(frozen=True)
class AccuracyFacts:
    ran: bool
    status: str
    tasks: tuple[TaskResult, ...]
    num_fewshot: int | None
    limit: int | None
    apply_chat_template: bool | None
    fewshot_as_multiturn: bool | None
    batch_size: int | str | None
    lm_eval_model: str | None  # local-completions / local-chat-completions
    command: str | None
    serve: ServeFlags
    task_source: str | None  # "registry" (real tasks) or "local" (offline test tasks)
    log_path: str | None
    #: chat template switches the run used (e.g. {"enable_thinking": False} for Qwen3)
    chat_template_kwargs: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class AnalysisFacts:
    architecture: str | None
    model_type: str | None
    multimodal: bool
    moe: Mapping[str, Any] | None
    mtp_layers: int
    attention: str | None
    quantization: Mapping[str, Any] | None
    max_position_embeddings: int | None
    parameter_bytes: int | None
    remote_code: bool
    suggested_tp: int | None
    support: str | None
    problems: tuple[str, ...]


@dataclass(frozen=True)
class ZeroCodeFacts:
    """The model runs through a zero-code rung (runners.recipe), not a native vLLM implementation."""

    rung: str
    args: tuple[str, ...]
    runs_through: str
    basis: tuple[str, ...]
    architecture: str | None


def _zero_code(results: Mapping[str, StageResult]) -> ZeroCodeFacts | None:
    from runners.recipe import serve_recipe

    recipe = serve_recipe(results)
    if recipe is None:
        return None
    arch = recipe.get("architecture")
    return ZeroCodeFacts(
        rung=str(recipe.get("rung") or "?"),
        args=tuple(str(a) for a in recipe.get("args") or ()),
        runs_through=str(recipe.get("runs_through") or ""),
        basis=tuple(str(b) for b in recipe.get("basis") or ()),
        architecture=arch if isinstance(arch, str) else None,
    )


@dataclass
class JobFacts:
    """Everything the artifacts say about one job."""

    options: JobOptions
    names: ModelNames
    #: the hardware the job is FOR (its `--hardware`); what actually ran is `verdict.profile` /
    #: `verdict.hardware` — only that may be claimed as verified
    target_hardware: str
    verdict: Verdict
    analysis: AnalysisFacts
    gates: tuple[GateFacts, ...]
    features: tuple[FeatureFacts, ...]
    capacity: CapacityFacts
    accuracy: AccuracyFacts
    profile: str
    #: code changes that came with the job (paths), if any
    code_changes: tuple[str, ...] = ()
    #: why the code changed (from the adapt step / candidate), if known
    code_rationale: str | None = None
    stage_status: dict[str, str] = field(default_factory=dict)
    #: devices × seconds of every server and reference process, per stage (runners.accounting,
    #: each result's `data.device_seconds`; stages that started none have 0)
    device_seconds: dict[str, float] = field(default_factory=dict)
    #: set when the gates passed only through a zero-code rung (an override / the Transformers backend)
    zero_code: ZeroCodeFacts | None = None
    #: the versions that ran (runners.versions: vLLM, vllm-ascend, torch, torch-npu, transformers, CANN,
    #: image digest, model revision; None = unknown / not installed), from `versions_stage`'s result
    versions: dict[str, str | None] = field(default_factory=dict)
    versions_stage: str | None = None
    #: stage -> why its data did not validate (runners.stage_data): its facts are unknown
    unparsed: dict[str, str] = field(default_factory=dict)
    #: the probes' feature set on the full-size real-weight start: (feature, confirmed|refuted, text)
    full_size: tuple[tuple[str, str, str], ...] = ()

    @property
    def device_seconds_total(self) -> float:
        return round(sum(self.device_seconds.values()), 2)

    @property
    def on_ascend(self) -> bool:
        """The runs happened on an Ascend profile (the only case a text may name Ascend as verified)."""
        return self.verdict.on_ascend

    @property
    def real_gate(self) -> GateFacts | None:
        return next((g for g in self.gates if g.stage == "real-gate"), None)

    @property
    def real_gate_passed(self) -> bool:
        g = self.real_gate
        return bool(g and g.passed)

    @property
    def false_ready(self) -> list[GateFacts]:
        return [g for g in self.gates if g.reason == "false-ready"]

    @property
    def root_causes(self) -> list[str]:
        out = list(self.analysis.problems)
        for g in self.gates:
            if g.status in ("failed", "error") and (g.diagnosis or g.reason):
                out.append(f"{g.stage}: {g.diagnosis or g.reason}")
        for f in self.features:
            if f.status == FeatureStatus.UNSUPPORTED.value:
                out.append(f"{f.title}: {f.reason}")
        return out

    @property
    def serve(self) -> ServeFlags:
        """The serve flags to publish: those of the real gate (the configuration proven on real
        weights), else the accuracy run, else the dummy gate."""
        g = self.real_gate
        if g and g.serve.argv:
            return g.serve
        if self.accuracy.serve.argv:
            return self.accuracy.serve
        for g in self.gates:
            if g.serve.argv:
                return g.serve
        return ServeFlags()

    @property
    def tp(self) -> int:
        return self.serve.tp or self.options.tp or self.analysis.suggested_tp or 1

    @property
    def max_model_len(self) -> int | None:
        return self.serve.max_model_len or self.options.max_model_len


# -------------------------------------------------------------------------------------------- build

M = TypeVar("M", bound=StageData)


def _typed(result: StageResult | None, model: type[M]) -> M | None:
    """The result's data as `model` (None: no result, or data that did not validate)."""
    if result is None:
        return None
    data = stage_data(result)
    return data if isinstance(data, model) else None


def _serve_flags(argv: Sequence[str] | None, env: Mapping[str, str] | None) -> ServeFlags:
    return ServeFlags(tuple(argv or ()), tuple(sorted((env or {}).items())))


def _evidence(result: StageResult) -> tuple[tuple[str, str, str | None], ...]:
    return tuple((e.kind, e.text, e.log_path) for e in result.evidence)


def _ladder(rungs: Sequence[Rung]) -> tuple[LadderRung, ...]:
    out: list[LadderRung] = []
    for r in rungs:
        flags = r.flags if r.flags is not None else RUNG_FLAGS.get(r.rung, "")
        if r.env:
            flags = " ".join([*(f"{k}={v}" for k, v in r.env.items()), flags]).strip()
        out.append(LadderRung(r.rung, flags, r.status, r.signature or r.reason or r.note or None, r.log_path))
    return tuple(out)


def _text(value: Any) -> str | None:
    if value is None or value == "":
        return None
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False)


def _gate(stage: str, result: StageResult | None) -> GateFacts:
    weights = "dummy" if stage == "dummy-gate" else "real"
    if result is None:
        return GateFacts(
            stage,
            weights,
            "not run",
            None,
            None,
            None,
            ServeFlags(),
            None,
            None,
            None,
            None,
            None,
            None,
            (),
            (),
        )
    d = _typed(result, GateData) or GateData()
    smoke = d.smoke or Smoke()
    image_ok = d.image_ok
    if image_ok is None and d.image_smoke is not None:
        image_ok = bool(d.image_smoke.ok)
    # parity and quality are runners.verdict's to read (the same rules decide the verdict)
    parity, quality = parity_state(result.data), quality_state(result.data)
    log_path = d.log_path or next((e.log_path for e in result.evidence if e.log_path), None)
    return GateFacts(
        stage=stage,
        weights=weights,
        status=result.status,
        reason=result.reason,
        diagnosis=result.diagnosis,
        next_step=result.next_step,
        serve=_serve_flags(d.argv, d.env),
        ready_s=d.ready_after_s,
        smoke_request=_text(smoke.request),
        smoke_response=_text(smoke.content if smoke.content is not None else smoke.response_excerpt),
        image_ok=image_ok,
        log_path=log_path,
        first_error=d.signature,
        evidence=_evidence(result),
        ladder=_ladder(d.ladder),
        parity=parity[0],
        parity_detail=parity[1],
        quality=quality[0],
        quality_detail=quality[1],
        load_findings=tuple((f.kind, f.text, f.line) for f in d.load_findings if f.text),
    )


def _title(key: str) -> str:
    return FEATURE_TITLES.get(key) or str(key)


def _features(result: StageResult | None, analysis: AnalyzeData) -> tuple[FeatureFacts, ...]:
    rows = (_typed(result, FeaturesData) or FeaturesData()).features
    out: list[FeatureFacts] = []
    for key in [*FEATURES, *(k for k in rows if k not in FEATURES)]:
        row = rows.get(key)
        if row is not None:
            first = row.evidence[0] if row.evidence else None
            text = first.text if first else None
            out.append(
                FeatureFacts(
                    key, _title(key), row.status, row.reason, text, first.log_path if first else None
                )
            )
            continue
        plan = analysis.features.get(key)
        reason = plan.reason if plan else ""
        status = {
            "not-applicable": FeatureStatus.NOT_APPLICABLE.value,
            "checkpoint-missing": FeatureStatus.CHECKPOINT_MISSING.value,
        }.get(plan.status or "" if plan else "")
        if status is not None:
            out.append(FeatureFacts(key, _title(key), status, reason, None, None))
        else:
            out.append(
                FeatureFacts(
                    key, _title(key), "not run", reason or "the feature stage did not run", None, None
                )
            )
    return tuple(out)


def _capacity(result: StageResult | None, analysis: AnalyzeData) -> CapacityFacts:
    d = _typed(result, CapacityData) or CapacityData()
    theoretical = d.theoretical_max_len or analysis.max_position_embeddings
    practical = d.practical_max_len
    served = [r for r in d.runs if r.status in ("served", "passed")]
    best = next((r for r in served if r.max_model_len == practical), served[0] if served else CapacityRun())
    rungs: list[tuple[str, str]] = []
    for r in [*d.runs, *d.search]:
        setting = " ".join(
            f"{k}={v}"
            for k, v in (("max_model_len", r.max_model_len), ("max_num_seqs", r.max_num_seqs))
            if v is not None
        )
        rungs.append((setting or r.setting or "?", r.status))

    def first(own: Any, row: Any) -> Any:
        return own if own is not None else row

    ttft_s = first(d.ttft_p50_s, best.ttft_p50_s)
    return CapacityFacts(
        ran=result is not None,
        status=result.status if result else "not run",
        theoretical_max_len=theoretical,
        practical_max_len=practical,
        max_num_seqs=first(d.max_num_seqs, best.max_num_seqs),
        successes=first(d.success, best.success),
        requests=first(d.requests, best.requests),
        ttft_ms=round(ttft_s * 1000, 6) if ttft_s is not None else None,
        throughput_tok_s=d.throughput_tok_s or best.throughput_tok_s,
        note=(result.diagnosis if result else None) or d.note,
        rungs=tuple(rungs),
    )


def _accuracy(result: StageResult | None) -> AccuracyFacts:
    d = _typed(result, AccuracyData) or AccuracyData()
    tasks = tuple(
        TaskResult(t.name, tuple(MetricValue(m.name, m.value, m.stderr) for m in t.metrics))
        for t in d.tasks
        if t.name and t.metrics
    )
    return AccuracyFacts(
        ran=result is not None,
        status=result.status if result else "not run",
        tasks=tasks,
        num_fewshot=d.num_fewshot,
        limit=d.limit,
        apply_chat_template=d.apply_chat_template,
        fewshot_as_multiturn=d.fewshot_as_multiturn,
        batch_size=d.batch_size,
        lm_eval_model=d.lm_eval_model,
        command=d.command_line,
        serve=_serve_flags(d.serve_argv, d.env),
        task_source=d.task_source,
        log_path=d.log_path,
        chat_template_kwargs=dict(d.chat_template_kwargs or {}),
    )


def _analysis(d: AnalyzeData, hardware: str = "a2") -> AnalysisFacts:
    support = d.support
    if isinstance(support, Support):
        support = " — ".join(v for v in (support.verdict, support.source) if v)
    tp = d.suggested_tp
    return AnalysisFacts(
        architecture=d.architecture,
        model_type=d.model_type,
        multimodal=d.multimodal,
        moe=d.moe,
        mtp_layers=d.mtp_layers,
        attention=d.attention,
        quantization=d.quantization,
        max_position_embeddings=d.max_position_embeddings,
        parameter_bytes=d.parameter_bytes,
        # what serving needs (runners.analysis.remote_code), not whether the repo ships code
        remote_code=bool(d.remote_code_required if d.remote_code_required is not None else d.remote_code),
        suggested_tp=getattr(tp, hardware, None) if tp is not None else None,
        support=support or None,
        problems=tuple(p.message for p in d.problems),
    )


def collect(
    options: JobOptions,
    results: Mapping[str, StageResult],
    *,
    code_changes: Iterable[str] = (),
    code_rationale: str | None = None,
) -> JobFacts:
    """Build the facts of one job from its stage results (any subset of them)."""
    analysis = _typed(results.get("analyze"), AnalyzeData) or AnalyzeData()
    profile = options.profile
    parsed = {stage: parse_stage_data(r) for stage, r in results.items()}
    return JobFacts(
        options=options,
        names=model_names(options),
        target_hardware=TARGET_HARDWARE.get(options.hardware, options.hardware),
        verdict=judge(results, profile),
        analysis=_analysis(analysis, options.hardware),
        gates=tuple(_gate(s, results.get(s)) for s in GATE_STAGES),
        features=_features(results.get("features"), analysis),
        capacity=_capacity(results.get("capacity"), analysis),
        accuracy=_accuracy(results.get("accuracy")),
        profile=profile,
        code_changes=tuple(code_changes),
        code_rationale=code_rationale,
        stage_status={k: v.status for k, v in results.items()},
        device_seconds=_device_seconds(parsed),
        zero_code=_zero_code(results),
        unparsed={s: p.problem for s, p in parsed.items() if p.problem is not None},
        full_size=_full_size(results.get("real-gate")),
        **_versions(parsed),
    )


def _full_size(result: StageResult | None) -> tuple[tuple[str, str, str], ...]:
    gate = _typed(result, GateData)
    if gate is None:
        return ()
    return tuple((f, row.status, row.text or row.why or "") for f, row in gate.features_at_full_size.items())


#: whose recorded versions the documents cite: the run that proved the published serve flags first
VERSION_SOURCES = ("real-gate", "accuracy", "capacity", "features", "dummy-gate", "analyze")
VERSION_KEYS = (
    "vllm", "vllm-ascend", "torch", "torch-npu", "transformers", "cann", "image_digest", "base_image",
    "adapt_bot_revision", "model_revision",
)  # fmt: skip


def _versions(parsed: Mapping[str, Parsed]) -> dict[str, Any]:
    """`data.versions` of the first stage in VERSION_SOURCES that recorded them (non-strings: None)."""
    for stage in VERSION_SOURCES:
        data = parsed[stage].data if stage in parsed else None
        if data is not None and data.versions is not None:
            return {"versions": {k: data.versions.get(k) for k in VERSION_KEYS}, "versions_stage": stage}
    return {}


def _device_seconds(parsed: Mapping[str, Parsed]) -> dict[str, float]:
    """Per stage, in pipeline order, the device-seconds its result reports (malformed: left out)."""
    out: dict[str, float] = {}
    for stage in sorted(parsed, key=lambda s: STAGES.index(s) if s in STAGES else len(STAGES)):
        data = parsed[stage].data
        if data is not None and data.device_seconds is not None:
            out[stage] = round(data.device_seconds, 2)
    return out


def human_bytes(n: int | None) -> str:
    if n is None:
        return "?"
    size = float(n)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if size < 1024 or unit == "TB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


def shell_join(argv: Sequence[str]) -> str:
    """Render argv as a copy-pasteable shell command (quoting every unsafe part)."""
    import shlex

    return " ".join(shlex.quote(a) for a in argv)
