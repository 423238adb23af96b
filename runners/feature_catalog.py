"""The features a job probes, declared once as data: name, title, whether the baseline includes it,
and in which versions of which package it exists. Pure.

The baseline is the skill's default expected set (ACLGraph, expert parallel, flashcomm1 — or what
replaced it —, MTP, multimodal). `/adapt run --features X` EXTENDS it: X is probed in addition to
the baseline, never instead of it ("user requirements extend this baseline, not replace it").
Whether a feature applies to the checkpoint is the analysis's call (runners/analysis/features.py);
how to switch it on and what proves it is the runner profile's (runners/profiles/*.yaml, with
version-ranged switches). This module only says whether the feature EXISTS in the versions that
actually run, which the features stage reads from the runner's own environment
(runners/versions.py: installed vllm / vllm-ascend), not from a profile's hard-coded target.

Version bounds are data to update when upstream moves:
- flashcomm1 was removed from vllm-ascend main in PR #13946 (Aug 2026; after it, both switches only
  log "FlashComm is deprecated"). The shared reference (adaptation.md §3) records the switch in
  releases up to v0.26rc; the first release without it is taken to be 0.27.0
  (`FLASHCOMM1_REMOVED_IN`). Replace that bound with the release notes' version once one ships.
- upstream sequence parallelism (vLLM's MoE sequence-parallel path: expert parallel with TP>1 and
  DP>1) is what replaced it on vllm-ascend from that same version.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

#: First vllm-ascend release without flashcomm1 (see the module docstring: an assumed bound).
FLASHCOMM1_REMOVED_IN = "0.27.0"
FLASHCOMM1_SOURCE = (
    "vllm-ascend PR #13946 removed flashcomm1 from main (Aug 2026); releases up to v0.26rc still have "
    f"it, so {FLASHCOMM1_REMOVED_IN} is the assumed first release without it (runners/feature_catalog.py)"
)


@dataclass(frozen=True)
class Exists:
    """The feature exists in `package` for versions in [since, before); None bounds are open."""

    package: str  # "vllm-ascend" | "vllm"
    since: str | None = None
    before: str | None = None

    def covers(self, version: str) -> bool:
        from runners.profile import Version  # late: runners.contracts imports this module

        v = Version(version)
        if self.since is not None and v < Version(self.since):
            return False
        return self.before is None or v < Version(self.before)

    def describe(self) -> str:
        if self.since and self.before:
            return f"{self.package} {self.since} to before {self.before}"
        if self.before:
            return f"{self.package} before {self.before}"
        if self.since:
            return f"{self.package} {self.since} and later"
        return self.package


@dataclass(frozen=True)
class FeatureDecl:
    name: str
    title: str
    #: Part of the baseline every job probes (when it applies); others only on `--features`.
    baseline: bool = True
    #: Where it exists; empty = wherever the profile can run it (the profile decides).
    exists: tuple[Exists, ...] = ()
    #: Where the bound comes from (shown in the N/A reason).
    source: str = ""
    replaces: str | None = None
    replaced_by: str | None = None
    #: The analysis verdict this feature follows (a replacement applies where its predecessor did).
    applicability_from: str | None = None
    #: Needs a deployment with TP>1 (the job's `--tp`).
    needs_tp: bool = False


CATALOG: tuple[FeatureDecl, ...] = (
    FeatureDecl("aclgraph", "ACLGraph"),
    FeatureDecl("expert_parallel", "Expert parallel (EP)"),
    FeatureDecl(
        "flashcomm1",
        "flashcomm1",
        exists=(Exists("vllm-ascend", before=FLASHCOMM1_REMOVED_IN),),
        source=FLASHCOMM1_SOURCE,
        replaced_by="sequence_parallel",
        needs_tp=True,
    ),
    FeatureDecl(
        "sequence_parallel",
        "Sequence parallel (upstream)",
        exists=(Exists("vllm-ascend", since=FLASHCOMM1_REMOVED_IN),),
        source=f"replaces flashcomm1 on vllm-ascend from {FLASHCOMM1_REMOVED_IN} (PR #13946)",
        replaces="flashcomm1",
        applicability_from="flashcomm1",
        needs_tp=True,
    ),
    FeatureDecl("mtp", "MTP"),
    FeatureDecl("multimodal", "Multimodal"),
)
BY_NAME: dict[str, FeatureDecl] = {d.name: d for d in CATALOG}
#: The feature vocabulary (runners.contracts.FEATURES re-exports it).
FEATURES: tuple[str, ...] = tuple(d.name for d in CATALOG)
TITLES: dict[str, str] = {d.name: d.title for d in CATALOG}


@dataclass(frozen=True)
class Planned:
    """One feature for one job: probe it (then applicability and the profile decide), or N/A why."""

    feature: str
    probe: bool
    requested: bool
    reason: str | None = None


def existence(decl: FeatureDecl, versions: Mapping[str, str | None]) -> str | None:
    """None when the feature exists in the versions that run, else why not (for the N/A reason)."""
    if not decl.exists:
        return None
    for rng in decl.exists:
        version = versions.get(rng.package)
        if version is not None and rng.covers(version):
            return None
    ran = ", ".join(f"{r.package} {versions.get(r.package) or 'not installed'}" for r in decl.exists)
    where = "; ".join(r.describe() for r in decl.exists)
    why = f"{decl.title} exists only in {where}; this runner has {ran}"
    if decl.replaced_by:
        why += f"; {TITLES[decl.replaced_by]} replaces it"
    if decl.source:
        why += f" ({decl.source})"
    return why


def plan(
    versions: Mapping[str, str | None],
    requested: Iterable[str] | None,
    catalog: Iterable[FeatureDecl] = CATALOG,
) -> dict[str, Planned]:
    """Every feature of the catalog for one job: the baseline plus what `--features` asked for,
    each only where it exists in `versions` (package -> installed version, None = not installed)."""
    asked = set(requested or ())
    out: dict[str, Planned] = {}
    for decl in catalog:
        wanted = decl.name in asked
        missing = existence(decl, versions)
        if missing is not None:
            out[decl.name] = Planned(decl.name, False, wanted, missing)
        elif not (decl.baseline or wanted):
            reason = f"not in the baseline; add it with `--features {decl.name}`"
            out[decl.name] = Planned(decl.name, False, wanted, reason)
        else:
            out[decl.name] = Planned(decl.name, True, wanted)
    return out
