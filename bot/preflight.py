"""The pre-flight comment: the first useful answer on an issue, before any runner time is spent.

Pure: `preflight_view(analysis)` turns the AnalysisResult of the hub pre-flight
(runners.analysis.hub.hub_preflight) into what the comment says, and `render_preflight` renders
templates/comments/preflight.md.j2. The figures come from the runners' pure contracts: the KV
layout (runners.analysis.kv), the Ascend profiles' capacity settings and the start-cost estimate
(runners.accounting.estimate_job). Every Ascend figure is a documented ASSUMPTION of those
profiles (64 GB per NPU, load bandwidth, compile time), not a measurement; the comment says so.

The control plane calls `render_preflight(result)` when a job starts from a hub id and posts it;
`stops_job(result)` says whether blocking defects end the job there. `estimate_for` estimates THIS
job on its own profile and `BudgetVerdict.over` holds it to the repository's
`budget.device_hours_per_job` before any device time (bot.tasks.preflight for hub ids; and when
its dummy gate, the first stage that holds devices, is about to be sent: bot.intents.enqueue_stage).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from runners.analysis.model import AnalysisResult, Problem
from runners.render import render

log = logging.getLogger(__name__)

#: The capacity baseline every job measures: max_model_len × max_num_seqs.
BASELINE_LEN = 131_072
BASELINE_SEQS = 16
#: hardware -> runner profile whose capacity settings (device memory, block size) apply
HARDWARE_PROFILES = {"a2": "ascend-a2", "a3": "ascend-a3"}
#: Seconds the servers are busy after READY, per stage (ESTIMATES: smoke requests, the capacity
#: load test, lm-eval gsm8k on 1319 questions). Added to the start costs of the profile.
SERVE_S = {"real-gate": 60.0, "capacity": 900.0, "accuracy": 2400.0}
#: servers a healthy job starts with real weights: ONE, shared by the real gate, the capacity
#: baseline and accuracy (runners/shared_start.py). Not counted: the capacity search's other
#: lengths, ladder rungs, reruns (each re-measures with its own start).
REAL_STARTS = 1


@dataclass(frozen=True)
class HardwareFit:
    hardware: str
    profile: str
    tp: int | None
    #: the baseline length after the model's limit (runners.serve clamps to it)
    length: int
    fits: bool | None
    starts: bool | None
    kv_tokens: int | None
    max_len_all_seqs: int | None
    device_hours: float | None
    reason: str


@dataclass(frozen=True)
class PreflightView:
    model: str
    revision: str | None
    architecture: str | None
    model_type: str | None
    verdict: str
    verdict_reason: str
    applies: list[tuple[str, str]]
    not_applicable: list[tuple[str, str]]
    blocking: list[Problem]
    warnings: list[Problem]
    kv_bytes_per_token: int | None
    parameter_bytes: int | None
    parameter_source: str | None
    max_position_embeddings: int | None
    model_limit_note: str | None
    hardware: list[HardwareFit] = field(default_factory=list)
    #: the hub it was read from (runners.model_ref.Source)
    source: str = "huggingface"

    @property
    def stops(self) -> bool:
        return bool(self.blocking)

    @property
    def hub_name(self) -> str:
        from runners.model_ref import HUB_NAMES

        return HUB_NAMES.get(self.source, self.source)

    @property
    def shown(self) -> str:
        """The model as the job names it (`modelscope:` kept, so it is never taken for HF's)."""
        from runners.model_ref import hub_display

        return hub_display(self.model, self.source)


def _model_limit(result: AnalysisResult) -> int | None:
    """The longest context the model allows (max_position_embeddings already carries rope scaling
    where the config states it; see runners.analysis.config)."""
    return result.max_position_embeddings


def _layout(result: AnalysisResult) -> Any | None:
    kv_cache = getattr(result, "kv_cache", None)
    if not kv_cache:
        return None
    try:
        from runners.analysis.kv import KvLayout

        return KvLayout(**kv_cache)
    except Exception:  # an older analysis without a usable layout: no KV figures, said so
        return None


def _fit(result: AnalysisResult, hardware: str, features: int) -> HardwareFit:
    from runners import accounting
    from runners.analysis import kv
    from runners.profile import load_profile

    profile_name = HARDWARE_PROFILES[hardware]
    spec = load_profile(profile_name).capacity
    tp = getattr(result.suggested_tp, hardware)
    limit = _model_limit(result)
    length = min(BASELINE_LEN, limit) if limit else BASELINE_LEN
    if tp is None:
        return HardwareFit(
            hardware,
            profile_name,
            None,
            length,
            False,
            False,
            None,
            None,
            None,
            "the weights do not fit one node at 70 % of 64 GB per NPU: quantize or go multi-node",
        )
    est = accounting.estimate_job(
        result.parameter_bytes,
        tp,
        spec,
        real_starts=REAL_STARTS,
        dummy_starts=1,
        probe_starts=features,
        serve_s=sum(SERVE_S.values()),
    )
    lay = _layout(result)
    if lay is None:
        return HardwareFit(
            hardware,
            profile_name,
            tp,
            length,
            None,
            None,
            None,
            None,
            est["device_hours"],
            "no KV layout from the config: the capacity stage measures it",
        )
    fit = kv.predict_fits(
        lay,
        tps=[tp],
        max_model_len=length,
        max_num_seqs=BASELINE_SEQS,
        dtype=None,
        block_size=int(spec.kv_block_size),
        parameter_bytes=result.parameter_bytes,
        device_memory_bytes=int(spec.device_memory_gib * kv.GIB) if spec.device_memory_gib else None,
        memory_utilization=float(spec.memory_utilization),
        reserve_bytes=int(float(spec.reserve_gib) * kv.GIB),
        fixed_kv_bytes=None,
        cap=length,
    )[0]
    larger = [
        t
        for t in spec.tp_choices
        if t > tp and (not result.num_attention_heads or result.num_attention_heads % t == 0)
    ]
    fits_at = next(
        (
            f.tp
            for f in kv.predict_fits(
                lay,
                tps=larger,
                max_model_len=length,
                max_num_seqs=BASELINE_SEQS,
                dtype=None,
                block_size=int(spec.kv_block_size),
                parameter_bytes=result.parameter_bytes,
                device_memory_bytes=int(spec.device_memory_gib * kv.GIB) if spec.device_memory_gib else None,
                memory_utilization=float(spec.memory_utilization),
                reserve_bytes=int(float(spec.reserve_gib) * kv.GIB),
                fixed_kv_bytes=None,
                cap=length,
            )
            if f.fits
        ),
        None,
    )
    more = f"; fits at TP {fits_at}" if fits_at else ""
    if fit.fits:
        reason = f"{length} × {BASELINE_SEQS} fits ({fit.kv_tokens} KV tokens per rank at TP {tp})"
    elif fit.starts:
        reason = (
            f"{length} × {BASELINE_SEQS} does not fit at TP {tp}: {fit.kv_tokens} KV tokens; all "
            f"{BASELINE_SEQS} fit up to {fit.max_len_all_seqs} tokens each{more}"
        )
    else:
        reason = f"not even one {length}-token request fits at TP {tp}: the server would not start{more}"
    return HardwareFit(
        hardware,
        profile_name,
        tp,
        length,
        fit.fits,
        fit.starts,
        fit.kv_tokens,
        fit.max_len_all_seqs,
        est["device_hours"],
        reason,
    )


def preflight_view(result: AnalysisResult, source: str = "huggingface") -> PreflightView:
    applies = [(n, f.reason) for n, f in result.features.items() if f.status == "applicable"]
    rest = [(n, f"{f.status}: {f.reason}") for n, f in result.features.items() if f.status != "applicable"]
    limit = _model_limit(result)
    note = None
    if limit and limit < BASELINE_LEN:
        note = (
            f"the model allows {limit} tokens (max_position_embeddings): the {BASELINE_LEN}-token "
            f"baseline runs at {limit} instead"
        )
    return PreflightView(
        model=result.hub_id or result.served_model_name,
        revision=result.revision,
        architecture=result.architecture,
        model_type=result.model_type,
        verdict=result.support.verdict,
        verdict_reason=result.support.reason,
        applies=applies,
        not_applicable=rest,
        blocking=[p for p in result.problems if p.blocking],
        warnings=[p for p in result.problems if not p.blocking],
        kv_bytes_per_token=getattr(result, "kv_bytes_per_token", None),
        parameter_bytes=result.parameter_bytes,
        parameter_source=result.parameter_source,
        max_position_embeddings=limit,
        model_limit_note=note,
        hardware=[_fit(result, hw, len(applies)) for hw in HARDWARE_PROFILES],
        source=source,
    )


@dataclass(frozen=True)
class JobPlan:
    """What the job asks for, so the pre-flight can estimate THIS job and hold it to the budget."""

    profile: str
    hardware: str
    tp: int | None = None
    #: the repository's `budget.device_hours_per_job` (None: no budget)
    budget_hours: float | None = None


@dataclass(frozen=True)
class BudgetVerdict:
    """The job's estimated device-hours against the repository's budget (pure data)."""

    estimate_hours: float
    estimate_seconds: float
    budget_hours: float | None
    profile: str
    tp: int
    devices: int
    starts: dict[str, int]

    @property
    def over(self) -> bool:
        return self.budget_hours is not None and self.estimate_hours > self.budget_hours

    def explain(self) -> str:
        """One line for the failure's diagnosis (the reply templates say how to raise it)."""
        return (
            f"the estimate is {self.estimate_hours:g} device-hours ({self.devices} device"
            f"{'s' if self.devices != 1 else ''} × {self.starts['real']} real-weight and "
            f"{self.starts['dummy'] + self.starts['probe']} dummy starts plus serving, profile "
            f"{self.profile}, TP {self.tp}), over this repository's budget of {self.budget_hours:g} "
            "device-hours per job"
        )


#: what a repository changes to let a job over its budget run (shown in every budget stop)
BUDGET_HOWTO = (
    "Raise `budget: {device_hours_per_job: N}` in `.github/adapt-bot.yml` on the default branch "
    "(or remove it), or make the job cheaper (`--tp`, `--features`); the config is re-read within "
    "a minute"
)


def estimate_for(result: AnalysisResult, plan: JobPlan) -> BudgetVerdict:
    """Pure: the device-hours this job is estimated to spend on its own profile (the same formula
    as the pre-flight table: runners.accounting.estimate_job with REAL_STARTS real-weight starts,
    one dummy start, one probe start per applicable feature, SERVE_S of serving)."""
    from runners import accounting
    from runners.profile import load_profile

    prof = load_profile(plan.profile)
    suggested = getattr(result.suggested_tp, plan.hardware, None) if result.suggested_tp else None
    tp = int(plan.tp or suggested or 1)
    # a server holds TP devices on Ascend; on the cpu profile a server is one slot
    devices = tp if prof.platform == "ascend" else max(1, int(prof.devices.per_job))
    probes = sum(1 for f in result.features.values() if f.status == "applicable")
    est = accounting.estimate_job(
        result.parameter_bytes,
        devices,
        prof.capacity,
        real_starts=REAL_STARTS,
        dummy_starts=1,
        probe_starts=probes,
        serve_s=sum(SERVE_S.values()),
    )
    return BudgetVerdict(
        estimate_hours=float(est["device_hours"]),
        estimate_seconds=float(est["device_seconds"]),
        budget_hours=plan.budget_hours,
        profile=plan.profile,
        tp=tp,
        devices=devices,
        starts=dict(est["starts"]),
    )


def budget_verdict(analysis: Any, plan: JobPlan) -> BudgetVerdict | None:
    """`estimate_for` from a stored analysis (AnalysisResult or its JSON dump from the runner's
    analyze stage); None when it cannot be read (then no estimate is claimed and nothing stops)."""
    try:
        result = analysis if isinstance(analysis, AnalysisResult) else AnalysisResult.model_validate(analysis)
        return estimate_for(result, plan)
    except Exception:  # an analysis without the fields: the budget cannot be judged, say nothing
        return None


def stops_job(result: AnalysisResult) -> bool:
    """Blocking defects found before any runner time: the job ends with the pre-flight comment."""
    return bool(result.blocking_problems)


def render_preflight(
    result: AnalysisResult, budget: BudgetVerdict | None = None, *, source: str = "huggingface"
) -> str:
    """The pre-flight comment (Markdown) for `result`; pure. `budget`: this job's estimate on its
    own profile against the repository's budget (`estimate_for`); `source`: the hub it was read
    from, named in the comment."""
    view = preflight_view(result, source)
    return render(
        "comments/preflight.md.j2",
        v=view,
        baseline_len=BASELINE_LEN,
        baseline_seqs=BASELINE_SEQS,
        serve_s=SERVE_S,
        budget=budget,
        budget_howto=BUDGET_HOWTO,
    )


@dataclass(frozen=True)
class PreflightOutcome:
    """What the control plane does with a hub id at job start (see `run_preflight`)."""

    #: the comment to post (the analysis, or why the hub could not be read)
    body: str
    #: the commit SHA every later stage uses (JobOptions.revision); None when not read
    revision: str | None
    #: end the job here: blocking defects, or the hub refused for a reason a retry cannot fix
    stops: bool
    #: the hub was down or slow: try the pre-flight again later (the job is not started)
    retryable: bool
    result: AnalysisResult | None = None
    error_code: str | None = None
    #: this job's estimate against the repository's budget (when a JobPlan was given)
    budget: BudgetVerdict | None = None
    #: published scores the model card (README.md) gives, {task: {"*": fraction}}; {} = none
    card_references: dict[str, dict[str, float]] = field(default_factory=dict)


#: bytes of README.md read for the model card's scores (its front matter comes first)
CARD_BYTES = 256 * 1024


def card_references(
    hub_id: str,
    revision: str,
    *,
    endpoint: str | None,
    token: str | bool | None,
    timeout: float,
    source: str = "huggingface",
) -> dict[str, dict[str, float]]:
    """The model card's published scores (runners.accuracy.model_card) at the pinned revision.
    One bounded range read (retried once); no card, a hub error or a card we cannot read is {}
    (a reference only ever adds a flag, so it never holds up a job)."""
    from runners.accuracy.model_card import parse_model_card
    from runners.analysis.hub import HubError, HubReader
    from runners.analysis.modelscope_hub import ModelScopeReader

    kind = ModelScopeReader if source == "modelscope" else HubReader
    reader = kind(hub_id, endpoint=endpoint, token=token, timeout=timeout, max_retries=1)
    try:
        body, _ = reader.get(reader.url("README.md", revision), (0, CARD_BYTES - 1))
    except HubError as exc:
        if exc.code != "entry-not-found":  # no card is normal; anything else, an operator may ask
            log.info(
                "model card of %s@%s not read (%s): no published scores", hub_id, revision[:12], exc.code
            )
        return {}
    return parse_model_card(body[:CARD_BYTES])


def run_preflight(
    hub_id: str,
    *,
    revision: str | None = None,
    vllm_root: Any = None,
    vllm_ascend_root: Any = None,
    endpoint: str | None = None,
    token: str | bool | None = None,
    timeout: float = 10.0,
    registries: Any = None,
    plan: JobPlan | None = None,
    source: str = "huggingface",
) -> PreflightOutcome:
    """Read `hub_id` from the hub (runners.analysis.hub; `source="modelscope"`:
    runners.analysis.modelscope_hub, whose endpoint and token are the SDK's own settings, so the
    HF `endpoint` / `token` given here are not used) and render the pre-flight comment.

    Never raises for the hub or the checkpoint: a gated / missing repo, an outage or an
    unanalysable config becomes a comment saying so, with `stops` / `retryable` set."""
    from runners.analysis import AnalysisError
    from runners.analysis.hub import HubError, hub_preflight
    from runners.analysis.modelscope_hub import modelscope_preflight

    preflight: Any = hub_preflight
    if source == "modelscope":
        preflight, endpoint, token = modelscope_preflight, None, None
    try:
        result = preflight(
            hub_id,
            revision=revision,
            endpoint=endpoint,
            token=token,
            vllm_root=vllm_root,
            vllm_ascend_root=vllm_ascend_root,
            timeout=timeout,
            registries=registries,
        )
    except HubError as exc:
        body = render(
            "comments/preflight_error.md.j2",
            model=hub_id,
            code=exc.code,
            message=exc.message,
            retryable=exc.retryable,
        )
        return PreflightOutcome(body, None, not exc.retryable, exc.retryable, None, exc.code)
    except AnalysisError as exc:
        body = render(
            "comments/preflight_error.md.j2",
            model=hub_id,
            code=exc.code,
            message=exc.message,
            retryable=False,
        )
        return PreflightOutcome(body, None, True, False, None, exc.code)
    budget = budget_verdict(result, plan) if plan is not None else None
    card = (
        card_references(
            hub_id, result.revision, endpoint=endpoint, token=token, timeout=timeout, source=source
        )
        if result.revision
        else {}
    )
    return PreflightOutcome(
        render_preflight(result, budget, source=source),
        result.revision,
        stops_job(result),
        False,
        result,
        budget=budget,
        card_references=card,
    )
