"""The view-model every artifact renders from: what the runs established, and nothing else.

Stages are written by different people and evolve; this module is the one place that reads their
`StageResult.data` (defensively: a missing key is an unknown fact, never a crash and never a guess)
and turns it into typed facts. Templates only see these dataclasses.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from runners.contracts import FEATURES, STAGES, FeatureStatus, JobOptions, StageResult
from runners.feature_catalog import TITLES
from runners.model_ref import ModelRefError, parse_model_ref
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


def pick(data: Mapping[str, Any] | None, *keys: str, default: Any = None) -> Any:
    """First present, non-None value among `keys` (stages name the same fact differently)."""
    if not data:
        return default
    for key in keys:
        value = data.get(key)
        if value is not None:
            return value
    return default


def _as_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and re.fullmatch(r"\s*\d+\s*", value):
        return int(value)
    return None


def _as_float(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


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
        return _as_int(self.value("--tensor-parallel-size") or self.value("-tp"))

    @property
    def max_model_len(self) -> int | None:
        return _as_int(self.value("--max-model-len"))

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


def serve_flags(data: Mapping[str, Any] | None) -> ServeFlags:
    argv = pick(data, "serve_argv", "argv", "command", "serve_command", default=())
    if isinstance(argv, str):
        argv = argv.split()
    env = pick(data, "env", "serve_env", default={}) or {}
    env_items = tuple(sorted((str(k), str(v)) for k, v in env.items())) if isinstance(env, Mapping) else ()
    return ServeFlags(tuple(str(a) for a in argv), env_items)


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


def _evidence(result: StageResult) -> tuple[tuple[str, str, str | None], ...]:
    return tuple((e.kind, e.text, e.log_path) for e in result.evidence)


def _ladder(data: Mapping[str, Any]) -> tuple[LadderRung, ...]:
    raw = pick(data, "ladder", "rungs", "fallback", default=[]) or []
    rungs: list[LadderRung] = []
    if isinstance(raw, Mapping):
        raw = [{"step": k, **(v if isinstance(v, Mapping) else {"status": v})} for k, v in raw.items()]
    for item in raw if isinstance(raw, list) else []:
        if not isinstance(item, Mapping):
            continue
        step = str(pick(item, "step", "name", "rung", default="?"))
        flags = pick(item, "flags", "change", "extra_args")
        if flags is None:
            flags = RUNG_FLAGS.get(step, "")
        if isinstance(flags, list | tuple):
            flags = " ".join(str(f) for f in flags)
        env = item.get("env")
        if isinstance(env, Mapping) and env:
            flags = " ".join([*(f"{k}={v}" for k, v in env.items()), str(flags)]).strip()
        rungs.append(
            LadderRung(
                step=step,
                flags=str(flags),
                status=str(pick(item, "status", "outcome", "result", default="?")),
                signature=pick(item, "signature", "error", "first_error", "reason")
                or (item.get("note") or None),
                log_path=pick(item, "log_path", "log"),
            )
        )
    return tuple(rungs)


def _text(value: Any) -> str | None:
    if value is None or value == "":
        return None
    if isinstance(value, str):
        return value
    import json

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
    d = result.data
    smoke = pick(d, "smoke", default={})
    smoke = smoke if isinstance(smoke, Mapping) else {"response": smoke}
    image = d.get("image_smoke")
    image_ok = pick(d, "image_ok", "multimodal_ok")
    if image_ok is None and isinstance(image, Mapping):
        image_ok = bool(image.get("ok"))
    parity, quality = parity_state(d), quality_state(d)
    log_path = pick(d, "log_path", "serve_log", "log")
    if log_path is None:
        log_path = next((e.log_path for e in result.evidence if e.log_path), None)
    return GateFacts(
        stage=stage,
        weights=weights,
        status=result.status,
        reason=result.reason,
        diagnosis=result.diagnosis,
        next_step=result.next_step,
        serve=serve_flags(d),
        ready_s=_as_float(pick(d, "ready_s", "ready_after_s", "ready_time_s", "time_to_ready_s")),
        smoke_request=_text(pick(smoke, "request") or pick(d, "smoke_request")),
        smoke_response=_text(
            pick(smoke, "response", "content", "response_excerpt", "excerpt")
            or pick(d, "smoke_excerpt", "smoke_response")
        ),
        image_ok=image_ok if isinstance(image_ok, bool) else None,
        log_path=str(log_path) if log_path else None,
        first_error=pick(d, "first_error", "signature", "error_signature"),
        evidence=_evidence(result),
        ladder=_ladder(d),
        parity=parity[0],
        parity_detail=parity[1],
        quality=quality[0],
        quality_detail=quality[1],
        load_findings=_load_findings(d.get("load_findings")),
    )


def _load_findings(raw: Any) -> tuple[tuple[str, str, int | None], ...]:
    if not isinstance(raw, list):
        return ()
    return tuple(
        (str(f.get("kind") or "?"), str(f.get("text") or ""), _as_int(f.get("line")))
        for f in raw
        if isinstance(f, Mapping) and f.get("text")
    )


def _title(key: str) -> str:
    return FEATURE_TITLES.get(key) or str(key)


def _features(result: StageResult | None, analysis: Mapping[str, Any]) -> tuple[FeatureFacts, ...]:
    raw: Any = {}
    if result is not None:
        raw = pick(result.data, "matrix", "features", default={}) or {}
        if isinstance(raw, Mapping) and isinstance(raw.get("features"), Mapping):
            raw = raw["features"]  # a dumped FeatureMatrix
    planned = analysis.get("features") if isinstance(analysis.get("features"), Mapping) else {}
    out: list[FeatureFacts] = []
    keys = list(FEATURES) + [k for k in (raw if isinstance(raw, Mapping) else {}) if k not in FEATURES]
    for key in keys:
        item = raw.get(key) if isinstance(raw, Mapping) else None
        if isinstance(item, Mapping):
            ev = item.get("evidence") or []
            first = ev[0] if isinstance(ev, list) and ev else None
            text = first.get("text") if isinstance(first, Mapping) else (str(first) if first else None)
            path = first.get("log_path") if isinstance(first, Mapping) else None
            out.append(
                FeatureFacts(
                    key,
                    _title(key),
                    str(item.get("status", "not run")),
                    str(item.get("reason", "")),
                    text,
                    path,
                )
            )
        elif isinstance(item, str):
            out.append(FeatureFacts(key, _title(key), item, "", None, None))
        else:
            plan = planned.get(key) if isinstance(planned, Mapping) else None
            reason = ""
            if isinstance(plan, Mapping):
                reason = str(pick(plan, "reason", default=""))
                verdict = str(pick(plan, "status", "verdict", default=""))
                if verdict == "not-applicable":
                    out.append(
                        FeatureFacts(
                            key,
                            _title(key),
                            FeatureStatus.NOT_APPLICABLE.value,
                            reason,
                            None,
                            None,
                        )
                    )
                    continue
                if verdict == "checkpoint-missing":
                    out.append(
                        FeatureFacts(
                            key,
                            _title(key),
                            FeatureStatus.CHECKPOINT_MISSING.value,
                            reason,
                            None,
                            None,
                        )
                    )
                    continue
            out.append(
                FeatureFacts(
                    key,
                    _title(key),
                    "not run",
                    reason or "the feature stage did not run",
                    None,
                    None,
                )
            )
    return tuple(out)


def _ms(d: Mapping[str, Any]) -> float | None:
    ms = _as_float(pick(d, "ttft_ms", "mean_ttft_ms", "ttft_p50_ms"))
    if ms is not None:
        return ms
    sec = _as_float(pick(d, "ttft_s", "mean_ttft_s", "ttft_p50_s"))
    return sec * 1000 if sec is not None else None


def _capacity(result: StageResult | None, analysis: Mapping[str, Any]) -> CapacityFacts:
    d = result.data if result else {}
    theoretical = _as_int(pick(d, "theoretical_max_len", "theoretical")) or _as_int(
        analysis.get("max_position_embeddings")
    )
    practical = _as_int(pick(d, "practical_max_len", "practical", "max_len_ok"))
    runs = [r for r in (d.get("runs") or []) if isinstance(r, Mapping)]
    served = [r for r in runs if r.get("status") in ("served", "passed")]
    best: Mapping[str, Any] = next(
        (r for r in served if _as_int(r.get("max_model_len")) == practical), served[0] if served else {}
    )
    raw_rungs = pick(d, "rungs", "attempts", default=None) or [*runs, *(d.get("search") or [])]
    rungs: list[tuple[str, str]] = []
    for r in raw_rungs if isinstance(raw_rungs, list) else []:
        if isinstance(r, Mapping):
            setting = " ".join(
                f"{k}={r[k]}" for k in ("max_model_len", "max_num_seqs") if r.get(k) is not None
            ) or str(pick(r, "setting", "name", default="?"))
            rungs.append((setting, str(pick(r, "status", "outcome", default="?"))))

    def first_int(*keys: str) -> int | None:
        v = _as_int(pick(d, *keys))
        return v if v is not None else _as_int(pick(best, *keys))

    return CapacityFacts(
        ran=result is not None,
        status=result.status if result else "not run",
        theoretical_max_len=theoretical,
        practical_max_len=practical,
        max_num_seqs=first_int("max_num_seqs", "concurrency"),
        successes=first_int("successes", "success_count", "success", "ok_requests"),
        requests=first_int("requests", "total_requests", "request_count"),
        ttft_ms=_ms(d) if _ms(d) is not None else _ms(best),
        throughput_tok_s=_as_float(pick(d, "throughput_tok_s", "output_throughput", "throughput"))
        or _as_float(best.get("throughput_tok_s")),
        note=(result.diagnosis if result else None) or pick(d, "note"),
        rungs=tuple(rungs),
    )


def _accuracy(result: StageResult | None) -> AccuracyFacts:
    d = result.data if result else {}
    tasks: list[TaskResult] = []
    for t in pick(d, "tasks", default=[]) or []:
        if not isinstance(t, Mapping) or not t.get("name"):
            continue
        metrics: list[MetricValue] = []
        for m in t.get("metrics") or []:
            if isinstance(m, Mapping) and m.get("name") and _as_float(m.get("value")) is not None:
                metrics.append(MetricValue(str(m["name"]), float(m["value"]), _as_float(m.get("stderr"))))
        if metrics:
            tasks.append(TaskResult(str(t["name"]), tuple(metrics)))
    bs = d.get("batch_size")
    return AccuracyFacts(
        ran=result is not None,
        status=result.status if result else "not run",
        tasks=tuple(tasks),
        num_fewshot=_as_int(d.get("num_fewshot")),
        limit=_as_int(d.get("limit")),
        apply_chat_template=d.get("apply_chat_template")
        if isinstance(d.get("apply_chat_template"), bool)
        else None,
        fewshot_as_multiturn=d.get("fewshot_as_multiturn")
        if isinstance(d.get("fewshot_as_multiturn"), bool)
        else None,
        batch_size=bs if isinstance(bs, int | str) and not isinstance(bs, bool) else None,
        lm_eval_model=pick(d, "lm_eval_model", "model_backend"),
        command=pick(d, "command_line", "lm_eval_command"),
        serve=serve_flags(d),
        task_source=pick(d, "task_source"),
        log_path=pick(d, "log_path"),
        chat_template_kwargs=_mapping(d.get("chat_template_kwargs")),
    )


def _mapping(value: Any) -> dict[str, Any]:
    return dict(value) if isinstance(value, Mapping) else {}


def _suggested_tp(value: Any, hardware: str) -> int | None:
    """The analysis gives `{a2: n, a3: n, ...}` (null = does not fit one node); older shapes an int."""
    if isinstance(value, Mapping):
        return _as_int(value.get(hardware))
    return _as_int(value)


def _analysis(d: Mapping[str, Any], hardware: str = "a2") -> AnalysisFacts:
    moe = d.get("moe") if isinstance(d.get("moe"), Mapping) else None
    quant = d.get("quantization") if isinstance(d.get("quantization"), Mapping) else None
    support = d.get("support")
    if isinstance(support, Mapping):
        support = " — ".join(str(v) for v in (support.get("verdict"), support.get("source")) if v)
    problems = d.get("problems") or []
    return AnalysisFacts(
        architecture=pick(d, "architecture"),
        model_type=pick(d, "model_type"),
        multimodal=bool(d.get("multimodal")),
        moe=moe,
        mtp_layers=_as_int(d.get("mtp_layers")) or 0,
        attention=pick(d, "attention"),
        quantization=quant,
        max_position_embeddings=_as_int(d.get("max_position_embeddings")),
        parameter_bytes=_as_int(d.get("parameter_bytes")),
        # what serving needs (runners.analysis.remote_code), not whether the repo ships code
        remote_code=bool(d.get("remote_code_required"))
        if "remote_code_required" in d
        else bool(d.get("remote_code")),
        suggested_tp=_suggested_tp(d.get("suggested_tp"), hardware),
        support=str(support) if support else None,
        problems=tuple(
            str(p.get("message") or p.get("text") or p) if isinstance(p, Mapping) else str(p)
            for p in problems
        )
        if isinstance(problems, list)
        else (),
    )


def collect(
    options: JobOptions,
    results: Mapping[str, StageResult],
    *,
    code_changes: Iterable[str] = (),
    code_rationale: str | None = None,
) -> JobFacts:
    """Build the facts of one job from its stage results (any subset of them)."""
    analysis_data = results["analyze"].data if "analyze" in results else {}
    profile = options.profile
    return JobFacts(
        options=options,
        names=model_names(options),
        target_hardware=TARGET_HARDWARE.get(options.hardware, options.hardware),
        verdict=judge(results, profile),
        analysis=_analysis(analysis_data, options.hardware),
        gates=tuple(_gate(s, results.get(s)) for s in GATE_STAGES),
        features=_features(results.get("features"), analysis_data),
        capacity=_capacity(results.get("capacity"), analysis_data),
        accuracy=_accuracy(results.get("accuracy")),
        profile=profile,
        code_changes=tuple(code_changes),
        code_rationale=code_rationale,
        stage_status={k: v.status for k, v in results.items()},
        device_seconds=_device_seconds(results),
        zero_code=_zero_code(results),
        **_versions(results),
    )


#: whose recorded versions the documents cite: the run that proved the published serve flags first
VERSION_SOURCES = ("real-gate", "accuracy", "capacity", "features", "dummy-gate", "analyze")
VERSION_KEYS = (
    "vllm", "vllm-ascend", "torch", "torch-npu", "transformers", "cann", "image_digest", "model_revision",
)  # fmt: skip


def _versions(results: Mapping[str, StageResult]) -> dict[str, Any]:
    """`data.versions` of the first stage in VERSION_SOURCES that recorded them (non-strings: None)."""
    for stage in VERSION_SOURCES:
        raw = (results[stage].data or {}).get("versions") if stage in results else None
        if isinstance(raw, Mapping):
            found = {k: raw.get(k) if isinstance(raw.get(k), str) else None for k in VERSION_KEYS}
            return {"versions": found, "versions_stage": stage}
    return {}


def _device_seconds(results: Mapping[str, StageResult]) -> dict[str, float]:
    """Per stage, in pipeline order, the device-seconds its result reports (malformed: left out)."""
    out: dict[str, float] = {}
    for stage in sorted(results, key=lambda s: STAGES.index(s) if s in STAGES else len(STAGES)):
        value = _as_float((results[stage].data or {}).get("device_seconds"))
        if value is not None and value >= 0:
            out[stage] = round(value, 2)
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
