"""runners.stage_data: the typed data of each stage parses what the real stages write (unchanged on the
wire), maps older key names, and turns forged data into unknown facts while every artifact still renders."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from runners.accuracy import checks
from runners.accuracy.plan import make_plan
from runners.accuracy.results import parse_results
from runners.artifacts import collect, pr_body, render_final_comment, render_report, render_runbook
from runners.artifacts.builders import Delivery
from runners.contracts import RUNNER_STAGES, FeatureResult, FeatureStatus, StageResult
from runners.gates.gate import Attempt
from runners.gates.ladder import RungRecord
from runners.stage_data import (
    MAX_PROBLEM_CHARS,
    MODELS,
    AccuracyData,
    CapacityData,
    FeaturesData,
    GateData,
    parse_stage_data,
    stage_data,
    wire,
)
from runners.stages.accuracy import CPU_DEFAULT, Measurement, _reproducibility, stage_record
from tests.artifacts import builders as b

DATA = Path(__file__).parent / "data"
FIXTURES = Path(__file__).parents[1] / "fixtures"
REAL_RUN = [*sorted((DATA / "real-run").glob("*.json")), DATA / "real-gate-parity" / "real-gate.json"]


def _stored(path: Path) -> StageResult:
    return StageResult.model_validate_json(path.read_text(encoding="utf-8"))


@pytest.mark.parametrize("path", REAL_RUN, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_stored_real_results_parse_and_round_trip_unchanged(path: Path) -> None:
    result = _stored(path)
    parsed = parse_stage_data(result)
    assert parsed.problem is None
    assert isinstance(parsed.data, MODELS[result.stage])
    assert wire(parsed.data) == result.data  # the JSON on the wire is what the stage wrote


def test_real_run_facts_come_from_the_models() -> None:
    results = {p.stem: _stored(p) for p in sorted((DATA / "real-run").glob("*.json"))}
    facts = collect(b.options("org/Tiny-Llama-1B"), results)
    assert facts.unparsed == {}
    real = facts.real_gate
    assert real is not None and real.ready_s == 50.38 and real.serve.argv[1] == "serve"
    assert real.smoke_request is not None and '"say hi"' in real.smoke_request
    assert facts.capacity.practical_max_len == 512 and facts.capacity.max_num_seqs == 2
    assert facts.accuracy.tasks[0].name == "adapt_gsm8k_local" and facts.accuracy.limit == 8
    assert facts.analysis.architecture == "LlamaForCausalLM" and facts.analysis.suggested_tp == 1


def test_gate_data_from_the_gates_own_records() -> None:
    att = Attempt(
        ok=False,
        log_name="real-gate",
        argv=["vllm", "serve", "/m", "--max-model-len", "4096"],
        command="vllm serve /m --max-model-len 4096",
        log_path="/logs/real-gate.log",
        signature="aclgraph-capture",
        smoke={"request": {"messages": []}, "status": 500, "content": "", "ok": False, "error": "boom"},
    )
    rungs = [
        RungRecord(rung="enforce-eager", status="passed", argv=["vllm", "serve", "/m", "--enforce-eager"]),
        RungRecord(rung="torchdynamo-disable", status="skipped", env={"TORCHDYNAMO_DISABLE": "1"}, note="n"),
    ]
    data = {**att.data(), "ladder": [r.model_dump() for r in rungs]}
    result = StageResult(stage="real-gate", status="passed", data=data)
    parsed = stage_data(result)
    assert isinstance(parsed, GateData) and wire(parsed) == json.loads(json.dumps(data))
    gate = collect(b.options(), {"real-gate": result}).real_gate
    assert gate is not None and gate.first_error == "aclgraph-capture" and gate.serve.max_model_len == 4096
    assert [(r.step, r.flags, r.signature) for r in gate.ladder] == [
        ("enforce-eager", "--enforce-eager", None),
        ("torchdynamo-disable", "TORCHDYNAMO_DISABLE=1", "n"),
    ]


def test_features_and_accuracy_data_from_their_own_shapes() -> None:
    row = FeatureResult(feature="aclgraph", status=FeatureStatus.SUPPORTED, reason="replay seen")
    features = StageResult(
        stage="features", status="passed", data={"features": {"aclgraph": row.model_dump(mode="json")}}
    )
    assert isinstance(stage_data(features), FeaturesData)
    doc = json.loads((FIXTURES / "lm-eval" / "results_vllm_offline_tiny_llama.json").read_text())
    tasks = parse_results(doc, list(doc["results"]))
    assert tasks, "the lm-eval fixture has metrics"
    accuracy = StageResult(stage="accuracy", status="passed", data={"tasks": tasks, "limit": 4})
    parsed = stage_data(accuracy)
    assert isinstance(parsed, AccuracyData) and wire(parsed) == {"tasks": tasks, "limit": 4}
    facts = collect(b.options(), {"features": features, "accuracy": accuracy})
    assert facts.features[0].status == FeatureStatus.SUPPORTED.value
    assert [m.name for m in facts.accuracy.tasks[0].metrics] == [m["name"] for m in tasks[0]["metrics"]]


def test_older_key_names_map_to_the_one_name() -> None:
    gate = GateData.model_validate(
        {"serve_argv": ["vllm", "serve", "m"], "ready_s": 3.5, "first_error": "E", "serve_log": "/l"}
    )
    assert (gate.argv, gate.ready_after_s, gate.signature, gate.log_path) == (
        ["vllm", "serve", "m"],
        3.5,
        "E",
        "/l",
    )
    assert GateData.model_validate({"smoke": "hi"}).smoke.content == "hi"  # type: ignore[union-attr]
    cap = CapacityData.model_validate(
        {"practical": 2048, "successes": 3, "ttft_ms": 250, "rungs": [{"status": "x"}]}
    )
    assert (cap.practical_max_len, cap.success, cap.ttft_p50_s, cap.runs[0].status) == (2048, 3, 0.25, "x")
    assert (
        FeaturesData.model_validate({"matrix": {"features": {"mtp": "N/A"}}}).features["mtp"].status == "N/A"
    )


def test_the_registry_uses_the_contract_stage_names() -> None:
    assert set(MODELS) <= set(RUNNER_STAGES)
    assert parse_stage_data(StageResult(stage="artifacts", status="passed", data={"x": 1})).data is None


HUGE = "9" * 2_000_000

FORGED: dict[str, dict[str, Any]] = {
    "analyze": {"architecture": ["not", "a", "name"], "mtp_layers": HUGE + "x", "problems": "many"},
    "dummy-gate": {"argv": 5, "ready_after_s": "fast", "ladder": [1, 2], "smoke": 7},
    "real-gate": {"argv": {"a": 1}, "load_findings": "lots", "env": [1]},
    "features": {"features": ["aclgraph"], "probes": 3},
    "capacity": {"practical_max_len": "long", "runs": {"x": 1}, "theoretical_max_len": HUGE + "z"},
    "accuracy": {"tasks": "gsm8k=1.0", "limit": [], "serve_argv": "vllm serve"},
}


@pytest.mark.parametrize("stage", list(FORGED))
def test_forged_data_is_none_with_a_bounded_reason(stage: str) -> None:
    parsed = parse_stage_data(StageResult(stage=stage, status="passed", data=FORGED[stage]))
    assert parsed.data is None and parsed.problem
    assert len(parsed.problem) <= MAX_PROBLEM_CHARS and "999" not in parsed.problem  # never echoes the data


def test_forged_results_give_unknown_facts_and_every_artifact_renders() -> None:
    good = b.full_results()
    results = {s: r.model_copy(update={"data": FORGED[s]}) for s, r in good.items()}
    facts = collect(b.options(), results)
    assert set(facts.unparsed) == set(FORGED)
    assert facts.analysis.architecture is None and facts.capacity.practical_max_len is None
    assert all(not g.serve.argv and g.ready_s is None for g in facts.gates)
    assert facts.accuracy.tasks == () and all(f.status == "not run" for f in facts.features)
    assert facts.gates[1].status == "passed"  # the result's own fields are still known
    report = render_report(b.options(), results, Delivery(commit_sha="a" * 40, branch="adapt/x"))
    assert "## 特性状态矩阵" in report and HUGE not in report
    render_runbook(b.options(), results, Delivery(commit_sha="a" * 40, branch="adapt/x"))
    body = pr_body(b.options(), results, job_id="j1", files=[])
    assert HUGE[:1000] not in body
    comment = render_final_comment(
        b.options(), results, Delivery(commit_sha="a" * 40, branch="b"), job_id="j1"
    )
    assert comment


def test_the_report_and_the_pr_body_say_which_figures_are_unknown_and_why() -> None:
    good = b.full_results()
    results = {**good, "capacity": good["capacity"].model_copy(update={"data": FORGED["capacity"]})}
    results["accuracy"] = good["accuracy"].model_copy(update={"data": FORGED["accuracy"]})
    facts = collect(b.options(), results)
    assert list(facts.unparsed) == ["capacity", "accuracy"]
    report = render_report(b.options(), results, Delivery(commit_sha="a" * 40, branch="adapt/x"))
    body = pr_body(b.options(), results, job_id="j1", files=[])
    for stage, why in facts.unparsed.items():
        zh = [ln for ln in report.splitlines() if f"`{stage}` 阶段的数值未知" in ln]
        en = [ln for ln in body.splitlines() if f"`{stage}`: its figures are unknown" in ln]
        assert len(zh) == 1 and "未通过校验" in zh[0] and why[:40] in zh[0]
        assert len(en) == 1 and "did not validate" in en[0] and why[:40] in en[0]
    assert HUGE[:1000] not in report + body
    # the stages that parsed say nothing of the kind
    assert "`real-gate` 阶段的数值未知" not in report and "`analyze`: its figures" not in body
    clean = render_report(b.options(), good, Delivery(commit_sha="a" * 40, branch="adapt/x"))
    assert "数值未知" not in clean and "did not validate" not in pr_body(
        b.options(), good, job_id="j1", files=[]
    )


def _accuracy_data_as_the_stage_writes_it(stored: dict[str, Any]) -> dict[str, Any]:
    """The stored real run's accuracy data with the keys the stage adds today, in the order `run` sets
    them (plan record, settings, server, measurements, reproducibility, references, plausibility)."""
    plan = make_plan(CPU_DEFAULT, multimodal=False, chat=True)
    tasks = stored["tasks"]
    first = Measurement("live-server", stored["lm_eval_argv"], Path(stored["log_path"]), Path("/out/live"))
    first.code, first.outcome, first.tasks = 0, "finished", tasks
    refs = {tasks[0]["name"]: {tasks[0]["metrics"][0]["name"]: 0.41}}
    sources = {tasks[0]["name"]: "transformers"}
    return {
        **plan.record(),
        "tasks": tasks,
        "settings": plan.settings(),
        "log_path": stored["log_path"],
        "lm_eval_env": {"HF_DATASETS_OFFLINE": "1"},
        "datasets": {"offline": True, "offline_source": "profile", "cache_dir": None},
        "check": "none",
        "serve_argv": stored["serve_argv"],
        "env": stored["env"],
        "serve_log": stored["serve_log"],
        "ready_s": stored["ready_s"],
        "server": {"shared": True, "stage": "real-gate"},
        "lm_eval_argv": stored["lm_eval_argv"],
        "lm_eval_version": stored["lm_eval_version"],
        "measurements": [first.record()],
        "results_path": stored["results_path"],
        "reproducibility": _reproducibility("none", first, None),
        "transformers_reference": {"ran": True, "samples": 8, "references": refs},
        "reference_sources": sources,
        "references": refs,
        "plausibility": checks.plausibility(
            tasks, {(t, m): v for t, ms in refs.items() for m, v in ms.items()}, sources
        ),
    }


def test_the_accuracy_stage_data_through_its_model_is_byte_identical() -> None:
    path = DATA / "real-run" / "accuracy.json"
    stored = _stored(path)
    # the stored real result, as the stage now records it: the same bytes in result.json
    again = stored.model_copy(update={"data": stage_record(stored.data)})
    assert again.model_dump_json(indent=2) == path.read_text(encoding="utf-8")
    # and today's full shape, recently added keys included (two of them untyped extras)
    data = json.loads(json.dumps(_accuracy_data_as_the_stage_writes_it(stored.data)))
    assert {"transformers_reference", "reference_sources"}.isdisjoint(AccuracyData.model_fields)
    assert json.dumps(stage_record(data)) == json.dumps(data)
    facts = collect(b.options(), {"accuracy": StageResult(stage="accuracy", status="passed", data=data)})
    assert facts.unparsed == {} and facts.accuracy.tasks[0].name == "adapt_gsm8k_local"


def test_the_accuracy_stage_refuses_to_write_data_its_readers_cannot_parse() -> None:
    with pytest.raises(ValidationError):
        stage_record({"tasks": [{"name": "gsm8k", "metrics": [{"name": "acc", "value": "high"}]}]})
    with pytest.raises(ValidationError):
        stage_record({"serve_argv": "vllm serve /m"})


def test_missing_keys_are_unknown_not_guessed() -> None:
    results = {s: r.model_copy(update={"data": {}}) for s, r in b.full_results().items()}
    facts = collect(b.options(), results)
    assert facts.unparsed == {}
    assert facts.capacity.practical_max_len is None and facts.capacity.successes is None
    assert (
        facts.accuracy.num_fewshot is None and facts.real_gate is not None and facts.real_gate.ready_s is None
    )
    assert render_report(b.options(), results, Delivery(commit_sha="a" * 40, branch="adapt/x"))


def test_keys_the_readers_do_not_need_may_change_shape() -> None:
    # the features stage moved load_format from one string to one per probe: not a fact the artifacts
    # read, so its shape is the stage's business (a whole matrix lost to it would hide every probe)
    stored = _stored(DATA / "real-run" / "features.json")
    data = {**stored.data, "load_format": {"aclgraph": "dummy"}, "probe_model": {}}
    parsed = stage_data(stored.model_copy(update={"data": data}))
    assert isinstance(parsed, FeaturesData) and parsed.features and wire(parsed) == data
    gate = _stored(DATA / "real-run" / "real-gate.json")
    gate_data = {**gate.data, "load_format": ["auto"], "command": None, "duration_s": "n/a"}
    assert isinstance(stage_data(gate.model_copy(update={"data": gate_data})), GateData)
