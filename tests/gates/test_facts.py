"""Model facts for the gates: config-only fallback (pure) and the capacity search (pure)."""

from __future__ import annotations

import json
import struct
from pathlib import Path

from runners.contracts import FeatureResult, FeatureStatus
from runners.gates.gate import Attempt, facts_from_config, has_weights, weight_names_of
from runners.profile import CapacitySpec, load_profile
from runners.stages.capacity import baseline_len, next_search_len
from runners.stages.features import Probe, decide_static, judge

DSV3 = {
    "architectures": ["DeepseekV3ForCausalLM"],
    "model_type": "deepseek_v3",
    "n_routed_experts": 4,
    "num_experts_per_tok": 2,
    "n_shared_experts": 1,
    "num_hidden_layers": 2,
    "num_nextn_predict_layers": 1,
    "max_position_embeddings": 512,
}


def test_moe_mtp_with_weights() -> None:
    f = facts_from_config(DSV3, ["model.layers.0.x", "model.layers.2.eh_proj.weight"])
    assert f["moe"] == {"experts": 4, "experts_per_token": 2, "shared_experts": 1}
    assert f["mtp_layers"] == 1 and f["mtp_weights"] is True
    assert f["features"]["mtp"]["status"] == "applicable"
    assert f["features"]["expert_parallel"]["status"] == "applicable"
    assert f["max_position_embeddings"] == 512


def test_mtp_config_without_weights_is_checkpoint_missing() -> None:
    f = facts_from_config(DSV3, ["model.layers.0.x", "model.layers.1.y"])
    assert f["mtp_weights"] is False
    assert f["features"]["mtp"]["status"] == "checkpoint-missing"


def test_layer_index_past_last_counts_as_mtp() -> None:
    assert facts_from_config(DSV3, ["model.layers.2.self_attn.q_proj.weight"])["mtp_weights"] is True


def test_dense_text_model_and_nested_vl_config() -> None:
    dense = facts_from_config({"architectures": ["LlamaForCausalLM"], "num_hidden_layers": 2}, None)
    assert dense["moe"] is None and dense["features"]["expert_parallel"]["status"] == "not-applicable"
    assert dense["features"]["mtp"]["status"] == "not-applicable"
    vl = facts_from_config(
        {"architectures": ["X"], "vision_config": {}, "text_config": {"num_experts": 8}}, None
    )
    assert vl["multimodal"] and vl["moe"]["experts"] == 8


def test_weight_names_from_index_and_headers(tmp_path: Path) -> None:
    assert weight_names_of(tmp_path) is None and not has_weights(tmp_path)
    header = json.dumps(
        {"a.weight": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}, "__metadata__": {}}
    )
    (tmp_path / "model.safetensors").write_bytes(struct.pack("<Q", len(header)) + header.encode() + b"\0" * 4)
    assert weight_names_of(tmp_path) == ["a.weight"] and has_weights(tmp_path)
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {"b": "x"}}))
    assert weight_names_of(tmp_path) == ["b"]


def test_capacity_search_steps() -> None:
    spec = CapacitySpec(max_model_len=131072, min_model_len=4096, granularity=1024)
    assert baseline_len(spec, 262144, None) == 131072
    assert baseline_len(spec, 32768, None) == 32768  # clamped to the config
    assert baseline_len(spec, 32768, 8192) == 8192
    assert next_search_len(None, 131072, spec) == 4096  # floor first
    assert next_search_len(4096, 131072, spec) == 67584
    assert next_search_len(65536, 66560, spec) is None  # narrower than the granularity
    assert next_search_len(None, 2048, spec) is None  # even the floor is above the failure


def test_feature_decisions_by_profile_and_version() -> None:
    a2 = load_profile("ascend-a2", version="v0.18.0")
    moe = {"status": "applicable", "reason": "MoE"}
    sw = decide_static("flashcomm1", moe, a2.features["flashcomm1"], a2, tp=2, requested=None)
    assert not isinstance(sw, FeatureResult) and sw.env == {"VLLM_ASCEND_ENABLE_FLASHCOMM1": "1"}
    tp1 = decide_static("flashcomm1", moe, a2.features["flashcomm1"], a2, tp=1, requested=None)
    assert (
        isinstance(tp1, FeatureResult) and tp1.status == FeatureStatus.NOT_APPLICABLE and "TP>1" in tp1.reason
    )
    main = load_profile("ascend-a2")
    gone = decide_static("flashcomm1", moe, main.features["flashcomm1"], main, tp=4, requested=None)
    assert (
        isinstance(gone, FeatureResult)
        and "removed" in gone.reason
        and gone.status == FeatureStatus.NOT_APPLICABLE
    )
    missing = decide_static(
        "mtp", {"status": "checkpoint-missing", "reason": "no MTP tensors"}, None, main, tp=1, requested=None
    )
    assert isinstance(missing, FeatureResult) and missing.status == FeatureStatus.CHECKPOINT_MISSING
    # `--features aclgraph` extends the baseline: MTP is still probed (runners/feature_catalog.py)
    kept = decide_static("mtp", moe, main.features["mtp"], main, tp=1, requested=["aclgraph"])
    assert not isinstance(kept, FeatureResult) and "--speculative-config" in kept.args


def test_judge_needs_a_log_line_and_honours_negative_evidence() -> None:
    a2 = load_profile("ascend-a2")
    spec = a2.features["aclgraph"]
    probe = Probe("aclgraph", spec, spec.switch_for(a2.target_version), devices=1)  # type: ignore[arg-type]
    ok = Attempt(ok=True, log_name="x", log_path="/l", smoke={"status": 200, "content": "hi"})
    proven = judge(probe, ok, ["INFO Capturing CUDA graphs (mixed prefill-decode, PIECEWISE): 100%", "x"])
    assert proven.status == FeatureStatus.SUPPORTED and proven.evidence[0].line == 1
    eager = judge(probe, ok, ["Capturing CUDA graphs", "Compilation disabled, using eager mode by default"])
    assert eager.status == FeatureStatus.UNSUPPORTED and "off" in eager.reason
    assert judge(probe, ok, ["nothing"]).status == FeatureStatus.UNSUPPORTED
    failed = Attempt(
        ok=False, log_name="x", reason="crashed", diagnosis="boom", signature="mtp-weights-missing"
    )
    assert judge(probe, failed, []).status == FeatureStatus.CHECKPOINT_MISSING
