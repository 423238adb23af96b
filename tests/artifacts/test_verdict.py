"""runners.verdict: the verdict table (pure). Missing data claims less, never more."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from runners.contracts import StageResult
from runners.profile import available_profiles, load_profile
from runners.verdict import (
    ASCEND_PROFILE_HARDWARE,
    ORDER,
    REASON_CODES,
    WARNING_CODES,
    Verdict,
    accuracy_flags,
    codes,
    judge,
    parity_state,
    profile_hardware,
    quality_state,
)
from tests.artifacts import builders as b

M = "Qwen/Qwen3-8B"
REAL_RUN = Path(__file__).resolve().parent / "data" / "real-run"


def healthy() -> dict[str, StageResult]:
    return b.full_results(M)


def real_gate(**data: Any) -> StageResult:
    r = b.gate("real-gate", M)
    for key, value in data.items():
        if value is None:
            r.data.pop(key, None)
        else:
            r.data[key] = value
    return r


def acc(tasks: list[dict[str, Any]], **over: Any) -> StageResult:
    return b.accuracy(M, tasks=tasks, **over)


def metric(value: Any, name: str = "exact_match,strict-match", **kw: Any) -> dict[str, Any]:
    return {"name": name, "value": value, **kw}


# ------------------------------------------------------------------------------------------- levels


def test_everything_checked_is_validated_and_names_the_ascend_hardware() -> None:
    v = judge(healthy(), "ascend-a2")
    assert v.level == "validated" and v.validated and not v.failed
    assert v.reasons == [] and v.accuracy_flags == [] and v.warnings == []
    assert v.hardware == "Atlas A2 Series" and v.on_ascend and v.served == "real"
    assert judge(healthy(), "ascend-a3").hardware == "Atlas A3 Series"


def test_a_cpu_run_may_be_validated_but_never_names_ascend() -> None:
    v = judge(healthy(), "cpu")
    assert v.validated and v.hardware is None and not v.on_ascend and v.profile == "cpu"
    assert judge(healthy(), "my-lab-gpu").hardware is None  # unknown profiles are not Ascend either


def test_the_recorded_real_run_is_not_validated_and_says_why() -> None:
    """The real tiny-model run: 0.0 accuracy on the local task, no parity, no quality record."""
    results = {p.stem: StageResult.model_validate_json(p.read_text()) for p in REAL_RUN.glob("*.json")}
    v = judge(results, "cpu")
    assert v.level == "serves-not-validated" and v.served == "real"
    assert codes(v.reasons) == [
        "reference-unchecked",
        "quality-unchecked",
        "accuracy-implausible",
        "accuracy-unconfirmed",
        "accuracy-local-task",
    ]
    assert {(f.metric, f.value, f.chance) for f in v.accuracy_flags} == {
        ("exact_match,strict-match", 0.0, 0.0),
        ("exact_match,flexible-extract", 0.0, 0.0),
    }
    assert all("at chance level" in (f.why or "") for f in v.accuracy_flags)


@pytest.mark.parametrize("failing", ["analyze", "dummy-gate", "real-gate", "accuracy", "artifacts"])
@pytest.mark.parametrize("status", ["failed", "error"])
def test_a_failed_or_errored_stage_fails_the_job(failing: str, status: str) -> None:
    results = healthy()
    results["artifacts"] = StageResult(stage="artifacts", status="passed")
    results[failing] = StageResult(stage=failing, status=status, reason="crashed", diagnosis="it died")
    v = judge(results, "cpu")
    assert v.level == "failed" and v.failed and not v.validated
    assert (v.failed_stage, v.failed_reason, v.failed_diagnosis) == (failing, "crashed", "it died")
    assert codes(v.reasons) == ["stage-failed"]


def test_the_first_failure_in_pipeline_order_is_named_and_a_missing_reason_is_the_status() -> None:
    results = healthy()
    results["accuracy"] = StageResult(stage="accuracy", status="failed", reason="no-metrics")
    results["dummy-gate"] = StageResult(stage="dummy-gate", status="error")
    v = judge(results, "cpu")
    assert v.failed_stage == "dummy-gate" and v.failed_reason == "error"
    # a stage outside the pipeline vocabulary still counts, after the known ones
    v = judge({**healthy(), "custom": StageResult(stage="custom", status="failed")}, "cpu")
    assert v.failed_stage == "custom"
    assert ORDER.index("accuracy") < ORDER.index("artifacts") < ORDER.index("deliver")


@pytest.mark.parametrize(
    ("drop", "expected", "served"),
    [
        (["dummy-gate"], ["not-run"], "real"),
        (["real-gate"], ["not-run"], "dummy"),
        (["dummy-gate", "real-gate"], ["not-run", "not-run"], "none"),
        (["accuracy"], ["not-run"], "real"),
    ],
)
def test_a_stage_that_did_not_run_is_not_validated(drop: list[str], expected: list[str], served: str) -> None:
    results = healthy()
    for stage in drop:
        del results[stage]
    v = judge(results, "cpu")
    assert v.level == "serves-not-validated" and codes(v.reasons) == expected and v.served == served
    assert [r.stage for r in v.reasons] == drop


def test_a_skipped_gate_or_accuracy_is_not_validated_with_its_reason() -> None:
    results = healthy()
    results["real-gate"] = StageResult(stage="real-gate", status="skipped", reason="no real weights")
    results["accuracy"] = StageResult(stage="accuracy", status="skipped", diagnosis="asked not to")
    v = judge(results, "cpu")
    assert [(r.code, r.stage, r.detail) for r in v.reasons] == [
        ("skipped", "real-gate", "no real weights"),
        ("skipped", "accuracy", "asked not to"),
    ]
    assert v.served == "dummy"  # a skipped real gate proves nothing about real weights


# ------------------------------------------------------------------------------------------ parity


@pytest.mark.parametrize(
    ("parity", "code", "detail"),
    [
        (None, "reference-unchecked", None),
        ("not a mapping", "reference-unchecked", None),
        (
            {"status": "skipped", "reason": "needs 32 GB, budget 8 GB"},
            "reference-skipped",
            "needs 32 GB, budget 8 GB",
        ),
        ({"status": "skipped"}, "reference-skipped", None),
        ({"status": "failed", "diagnosis": "token 3 diverged"}, "reference-mismatch", "token 3 diverged"),
        ({"status": "running"}, "reference-unchecked", "running"),
        ({}, "reference-unchecked", None),
    ],
)
def test_reference_parity_must_have_passed(parity: Any, code: str, detail: str | None) -> None:
    results = healthy()
    results["real-gate"] = real_gate(parity=parity)
    v = judge(results, "ascend-a2")
    assert v.level == "serves-not-validated"
    assert [(r.code, r.stage, r.detail) for r in v.reasons] == [(code, "real-gate", detail)]


def test_parity_state_reads_the_gate_record() -> None:
    assert parity_state({"parity": {"status": "passed"}}) == ("passed", None)
    assert parity_state({"parity": {"status": "skipped", "detail": ["a", "b"]}}) == ("skipped", "a; b")
    assert parity_state({}) == ("unchecked", None)


# ----------------------------------------------------------------------------------------- quality


@pytest.mark.parametrize(
    ("quality", "expected"),
    [
        (None, ["quality-unchecked"]),
        ({"degenerate": True, "reason": "one token repeated"}, ["degenerate-output"]),
        ({"status": "degenerate", "kind": "replacement characters"}, ["degenerate-output"]),
        ({"status": "failed"}, ["degenerate-output"]),
        ({"flags": ["empty after stripping special tokens"]}, ["degenerate-output"]),
        ({"degenerate": False, "flags": []}, []),
        ({"status": "ok"}, []),
    ],
)
def test_degenerate_output_is_not_validated(quality: Any, expected: list[str]) -> None:
    results = healthy()
    results["real-gate"] = real_gate(quality=quality)
    v = judge(results, "cpu")
    assert codes(v.reasons) == expected
    assert v.validated is (expected == [])


def test_quality_state_details() -> None:
    assert quality_state({"quality": {"flags": ["a", "b"]}}) == ("degenerate", "a; b")
    assert quality_state({"quality": {"degenerate": True}}) == ("degenerate", None)
    assert quality_state({"quality": "x"}) == ("unchecked", None)


def test_a_wrong_known_answer_is_a_warning_not_a_lower_level() -> None:
    results = healthy()
    results["real-gate"] = real_gate(
        quality={
            "degenerate": False,
            "known_answers": [
                {"prompt": "What is 2+3?", "expected": "5", "answer": "5", "ok": True},
                {"prompt": "Capital of France?", "expected": "Paris", "answer": "Lyon", "ok": False},
                "not a mapping",
            ],
        }
    )
    v = judge(results, "ascend-a2")
    assert v.validated
    assert [(w.code, w.detail) for w in v.warnings] == [
        ("known-answer-wrong", "1 of 2 wrong: Capital of France? -> Lyon (expected Paris)")
    ]


# ---------------------------------------------------------------------------------------- accuracy


def test_zero_accuracy_is_flagged_and_not_validated() -> None:
    results = healthy()
    results["accuracy"] = acc(
        [{"name": "gsm8k", "metrics": [metric(0.0, stderr=0.0), metric(0.81, "other")]}]
    )
    v = judge(results, "ascend-a2")
    assert v.level == "serves-not-validated" and codes(v.reasons) == ["accuracy-implausible"]
    (flag,) = v.accuracy_flags
    assert (flag.task, flag.metric, flag.value, flag.chance) == (
        "gsm8k",
        "exact_match,strict-match",
        0.0,
        0.0,
    )
    assert flag.why == "0.0000 is at chance level (0.00: free-form numeric answer)"
    assert v.flag_for("gsm8k", "exact_match,strict-match") is flag and v.flag_for("gsm8k", "other") is None


@pytest.mark.parametrize(
    ("task", "m", "why"),
    [
        ("mmlu", metric(0.25, "acc,none"), "at chance level (0.25"),  # 4-choice at chance
        ("mmlu", metric(0.2, "acc,none"), "at chance level"),  # below chance
        ("mmlu", metric(0.28, "acc,none", stderr=0.02), "at chance level"),  # within 2 stderr of 0.25
        ("gsm8k", metric(0.125, stderr=0.125), "at chance level"),  # 1 of 8 right: not distinguishable
        ("gsm8k", metric(0.4, reference=0.85), "far below the reference 0.8500"),  # the model card's
        ("gsm8k", metric(0.7, implausible=True, why="transformers scores 0.80 here"), "transformers scores"),
        ("gsm8k", metric(0.7, flag="implausible"), None),
        ("unknown_task", metric(0.0), "0.0: no document scored"),  # unknown chance: only 0 is flagged
    ],
)
def test_implausible_metrics(task: str, m: dict[str, Any], why: str | None) -> None:
    (flag,) = accuracy_flags({"tasks": [{"name": task, "metrics": [m]}]})
    assert flag.task == task
    assert (why in (flag.why or "")) if why else flag.why is None


def test_plausible_metrics_are_not_flagged_and_the_stage_cannot_unflag() -> None:
    data = {
        "tasks": [
            {"name": "gsm8k", "metrics": [metric(0.765, stderr=0.011, reference=0.8)]},
            {"name": "mmlu", "metrics": [metric(0.6, "acc,none", stderr=0.01)]},
            {"name": "unknown_task", "metrics": [metric(0.01)]},
        ]
    }
    assert accuracy_flags(data) == []
    # a stage that says "plausible" about a zero score is overruled by the same rule applied here
    said_fine = {"tasks": [{"name": "gsm8k", "metrics": [metric(0.0, implausible=False)]}]}
    assert [f.value for f in accuracy_flags(said_fine)] == [0.0]


def test_references_may_come_from_the_task_or_the_stage() -> None:
    by_task = {"tasks": [{"name": "gsm8k", "reference": {"m": 0.9}, "metrics": [metric(0.4, "m")]}]}
    by_stage = {
        "tasks": [{"name": "gsm8k", "metrics": [metric(0.4, "m")]}],
        "references": {"gsm8k": {"m": 0.9}},
    }
    close = {"tasks": [{"name": "gsm8k", "metrics": [metric(0.8, "m")]}], "references": {"gsm8k": {"m": 0.9}}}
    assert [f.reference for f in accuracy_flags(by_task)] == [0.9]
    assert [f.reference for f in accuracy_flags(by_stage)] == [0.9]
    assert accuracy_flags(close) == []  # 11 % below: settings differ, the model is not broken


def test_the_stage_flag_is_kept_even_without_a_metric_to_tie_it_to() -> None:
    loose = accuracy_flags({"plausibility": {"implausible": True, "why": "below the transformers reference"}})
    assert [(f.task, f.value, f.why) for f in loose] == [("?", None, "below the transformers reference")]
    listed = accuracy_flags({"implausible": ["x", "y"], "tasks": []})
    assert [f.why for f in listed] == ["x; y"]
    tied = accuracy_flags(
        {
            "plausibility": {"implausible": True},
            "tasks": [{"name": "gsm8k", "metrics": [metric(0.0, why="r")]}],
        }
    )
    assert [(f.metric, f.why) for f in tied] == [("exact_match,strict-match", "r")]  # no extra flag
    assert (
        accuracy_flags({"implausible": False, "tasks": [{"name": "gsm8k", "metrics": [metric(0.7)]}]}) == []
    )


def test_malformed_accuracy_entries_are_ignored_not_trusted() -> None:
    data = {
        "tasks": [
            "not a task",
            {"metrics": [metric(0.0)]},  # no name
            {"name": "gsm8k", "metrics": ["x", {"value": 0.0}, metric("n/a"), metric(True), metric(None)]},
        ]
    }
    assert accuracy_flags(data) == []
    results = healthy()
    results["accuracy"] = acc(data["tasks"])
    # nothing measurable left: less is claimed
    assert codes(judge(results, "cpu").reasons) == ["accuracy-missing"]


@pytest.mark.parametrize(
    ("repro", "detail"),
    [
        (None, None),
        (
            {"agree": None, "summary": "one measurement only (check: none): reproducibility not checked"},
            "one",
        ),
        ({"agree": False, "summary": "the second measurement did not finish"}, "the second"),
    ],
)
def test_accuracy_must_be_confirmed_by_a_second_measurement(repro: Any, detail: str | None) -> None:
    results = healthy()
    results["accuracy"] = b.accuracy(M, reproducibility=repro)
    (reason,) = judge(results, "ascend-a2").reasons
    assert reason.code == "accuracy-unconfirmed"
    assert (reason.detail or "").startswith(detail) if detail else reason.detail is None


def test_no_metric_or_the_local_task_is_not_validated() -> None:
    results = healthy()
    results["accuracy"] = acc([])
    assert codes(judge(results, "cpu").reasons) == ["accuracy-missing"]
    results["accuracy"] = acc([{"name": "gsm8k", "metrics": []}, "x"])
    assert codes(judge(results, "cpu").reasons) == ["accuracy-missing"]
    results["accuracy"] = acc(
        [{"name": "adapt_gsm8k_local", "metrics": [metric(0.5, stderr=0.1)]}], task_source="local"
    )
    v = judge(results, "cpu")
    assert [(r.code, r.detail) for r in v.reasons] == [("accuracy-local-task", "adapt_gsm8k_local")]


def test_string_and_integer_values_are_read() -> None:
    assert [f.value for f in accuracy_flags({"tasks": [{"name": "gsm8k", "metrics": [metric("0")]}]})] == [
        0.0
    ]
    assert accuracy_flags({"tasks": [{"name": "gsm8k", "metrics": [metric(1)]}]}) == []
    assert accuracy_flags({"tasks": [{"name": "gsm8k", "metrics": [metric([1])]}]}) == []


# ------------------------------------------------------------------------------------- declaration


def test_ascend_profiles_are_declared_once_in_step_with_the_profile_files() -> None:
    declared = {}
    for name in available_profiles():
        hw = load_profile(name).hardware
        if hw:
            declared[name] = hw
    assert declared == ASCEND_PROFILE_HARDWARE
    assert profile_hardware("cpu") is None and profile_hardware("ascend-a2") == "Atlas A2 Series"


def test_every_reason_code_is_worded_in_both_languages() -> None:
    """The templates word every code (no code falls through to the generic fallback)."""
    from runners.render import render

    tpl = (Path(__file__).resolve().parents[2] / "templates" / "artifacts" / "_verdict.j2").read_text()
    for code in (*REASON_CODES, *WARNING_CODES):
        assert tpl.count(f'r.code == "{code}"') == 2, code  # once in reason_en, once in reason_zh
    v = Verdict(level="serves-not-validated", profile="cpu", reasons=[])
    assert (
        render("artifacts/verdict.txt.j2", v=v, part="headline").strip()
        == "⚠️ not validated: no gate has passed yet"
    )
