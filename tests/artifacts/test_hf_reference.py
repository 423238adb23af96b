"""Issue 10: when neither the issue nor the model card gives a reference, the checkpoint run by
transformers (lm-eval model=hf, the serving environment's python, CPU) on the same first N
documents is the reference the served metric is judged against. One real run through the whole
accuracy stage (vllm serve on the tiny model, then the transformers run); the budget rule and the
issue/card precedence need no process."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from runners.accuracy import checks, hf_reference
from runners.accuracy.plan import make_plan
from runners.accuracy.references import ANY_METRIC, SOURCE_CARD, SOURCE_TRANSFORMERS
from runners.context import StageContext
from runners.contracts import JobOptions, StageResult
from runners.profile import load_profile
from runners.stages.accuracy import LOCAL_TASK, accuracy_spec, run
from runners.workspace import Workspace


def _ctx(
    tmp_path: Path,
    model: Path,
    refs: dict[str, dict[str, float]] | None = None,
    sources: dict[str, str] | None = None,
) -> StageContext:
    opts = JobOptions(
        model="org/Tiny-Llama",
        local_path=str(model),
        accuracy_references=refs,
        accuracy_reference_sources=sources,
    )
    return StageContext(
        job_id="acc-hf",
        options=opts,
        model_path=model,
        workspace=Workspace.for_job("acc-hf", tmp_path / "work"),
        profile=load_profile("cpu"),
        previous={
            "analyze": StageResult(
                stage="analyze", status="passed", data={"multimodal": False, "max_position_embeddings": 512}
            )
        },
    )


def test_over_the_budget_the_reference_is_skipped_with_the_sentence(tmp_path: Path) -> None:
    from tests.analysis.ckpt import dense_layer, write_config, write_shard

    model = tmp_path / "m"
    model.mkdir()
    write_config(model)
    write_shard(model / "model.safetensors", dense_layer(0))
    prof = load_profile("cpu")
    out = hf_reference.transformers_reference(
        model_dir=model,
        plan=make_plan(accuracy_spec(prof), multimodal=False, chat=False),
        tasks=[LOCAL_TASK],
        profile=prof,
        env={},
        cwd=tmp_path,
        output=tmp_path / "out",
        log=tmp_path / "log",
        environ={"ADAPT_BOT_REFERENCE_BUDGET_GB": "0.5"},
    )
    assert out.references == {}
    assert out.record["skip_reason"] == "reference skipped: needs 1.0 GB, budget 0.5 GB"
    assert not (tmp_path / "out").exists()  # nothing was started


def test_published_references_mean_no_transformers_run(tmp_path: Path) -> None:
    ctx = _ctx(tmp_path, tmp_path / "no-model", {"mmlu": {ANY_METRIC: 0.6}}, {"mmlu": SOURCE_CARD})
    tasks = [{"name": "mmlu", "metrics": [{"name": "acc,none", "value": 0.2}]}]
    plan = make_plan(accuracy_spec(ctx.profile), multimodal=False, chat=False)
    refs, sources, record = hf_reference.complete(
        ctx,
        dict(ctx.options.accuracy_references or {}),
        tasks,
        plan,
        env={},
        cwd=tmp_path,
        served_output=None,
    )
    assert refs == {"mmlu": {ANY_METRIC: 0.6}} and sources == {"mmlu": SOURCE_CARD}
    assert record == {"ran": False, "why": "every measured task has a published reference"}


def test_far_below_the_transformers_reference_is_flagged_and_says_so() -> None:
    tasks = [
        {"name": "gsm8k", "metrics": [{"name": "exact_match,strict-match", "value": 0.1, "stderr": 0.02}]}
    ]
    judged = checks.plausibility(
        tasks, {("gsm8k", "exact_match,strict-match"): 0.7}, {"gsm8k": SOURCE_TRANSFORMERS}
    )
    assert judged["metrics"][0]["reference_source"] == SOURCE_TRANSFORMERS
    assert judged["why"] == (
        "gsm8k exact_match,strict-match: 0.1000 is far below the reference 0.7000 "
        "(transformers on the same samples)"
    )


@pytest.mark.slow
def test_the_transformers_reference_runs_on_the_served_samples(
    tiny_model: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The accuracy stage with no published reference: vllm serve + lm-eval, then lm-eval model=hf
    on the same task, settings and first `limit` documents; its metrics are the references the
    plausibility check used, recorded with source "transformers" and the sample count."""
    monkeypatch.setenv("ADAPT_BOT_ACCURACY_CHECK", "none")
    model = tiny_model("llama")
    ctx = _ctx(tmp_path, model)
    result = run(ctx)
    assert result.status == "passed", (result.reason, result.diagnosis)
    data = result.data
    served = {m["name"]: m["value"] for m in data["tasks"][0]["metrics"]}
    ref = data["transformers_reference"]
    assert ref["ran"] is True, ref.get("skip_reason")
    assert data["reference_sources"] == {LOCAL_TASK: SOURCE_TRANSFORMERS}
    limit = data["settings"]["limit"]
    argv = ref["argv"]
    assert argv[argv.index("--model") + 1] == "hf" and argv[argv.index("--limit") + 1] == str(limit)
    assert argv[argv.index("--tasks") + 1] == LOCAL_TASK
    # the same documents: every metric on `limit` samples, all of them also answered by the server
    assert ref["samples"] == limit == 8
    for row in ref["metrics"]:
        assert row["samples"] == limit and row["compared_samples"] == limit, row
        assert row["served_same_samples"] == served[row["metric"]]  # the served run had these 8
    assert ref["compared_responses"] == limit
    # its metrics are what plausibility compared with, per metric, named by their source
    assert data["references"] == {LOCAL_TASK: {r["metric"]: r["value"] for r in ref["metrics"]}}
    for row in data["plausibility"]["metrics"]:
        assert row["reference"] == data["references"][LOCAL_TASK][row["metric"]]
        assert row["reference_source"] == SOURCE_TRANSFORMERS
    assert Path(ref["log_path"]).is_file() and ref["peak_group_rss_gb"] < ref["budget_gb"]
