"""Device-seconds from logs/processes.jsonl (per stage by time window, per job) and the pre-flight
start-cost estimate."""

from __future__ import annotations

import datetime as dt
import json
import time
from pathlib import Path

import pytest

from runners import accounting
from runners.profile import load_profile


def write(logs: Path, lines: list[dict[str, object] | str]) -> None:
    logs.mkdir(parents=True, exist_ok=True)
    (logs / accounting.FILE_NAME).write_text(
        "".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines)
    )


T0 = 1_700_000_000.0


def test_device_seconds_per_stage_and_job(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    write(
        logs,
        [
            # dummy gate: 1 device, 30 s
            {"id": "a", "name": "vllm-serve:dummy-gate", "devices": ["0"], "started": T0, "ended": None},
            {"id": "a", "name": "vllm-serve:dummy-gate", "devices": ["0"], "started": T0, "ended": T0 + 30},
            # real gate on 8 devices for 100 s
            {
                "id": "b",
                "name": "vllm-serve:real-gate",
                "devices": [str(i) for i in range(8)],
                "started": T0 + 40,
                "ended": T0 + 140,
            },
            # two parallel probes on 2 + 2 devices, 50 s each, overlapping
            {
                "id": "c",
                "name": "vllm-serve:probe-ep",
                "devices": ["0", "1"],
                "started": T0 + 150,
                "ended": T0 + 200,
            },
            {
                "id": "d",
                "name": "vllm-serve:probe-mtp",
                "devices": ["2", "3"],
                "started": T0 + 160,
                "ended": T0 + 210,
            },
            # lm_eval: a client, no device
            {"id": "e", "name": "lm_eval", "devices": [], "started": T0 + 220, "ended": T0 + 260},
            # a torn line from a killed writer is skipped
            '{"id": "f", "name": "vllm-serve:x", "star',
        ],
    )
    windows = {
        "dummy-gate": (T0 - 1, T0 + 35),
        "real-gate": (T0 + 35, T0 + 145),
        "features": (T0 + 145, T0 + 215),
        "accuracy": (T0 + 215, T0 + 265),
    }
    job = accounting.job_device_seconds(logs, windows)
    assert job["by_stage"] == {"dummy-gate": 30.0, "real-gate": 800.0, "features": 200.0, "accuracy": 0.0}
    assert job["device_seconds"] == 1030.0
    assert job["processes"] == 5
    feats = accounting.stage_data(logs, *windows["features"])
    assert feats["device_seconds"] == 200.0
    assert feats["device_accounting"]["process_seconds"] == 60.0  # union of the overlapping probes
    assert [p["devices"] for p in feats["device_accounting"]["processes"]] == [2, 2]
    # the wall-time view (overhead figure) counts finished processes only, unchanged
    assert accounting.total_seconds(logs) == pytest.approx(30 + 100 + 60 + 40)


def test_windows_from_stored_stage_results(tmp_path: Path) -> None:
    from runners.contracts import StageResult

    start = dt.datetime.fromtimestamp(T0, dt.UTC)
    results = {
        "dummy-gate": StageResult(
            stage="dummy-gate",
            status="passed",
            started_at=start,
            finished_at=start + dt.timedelta(seconds=35),
        ),
        "real-gate": StageResult(stage="real-gate", status="failed", started_at=start),  # unfinished
    }
    logs = tmp_path / "logs"
    write(logs, [{"id": "a", "name": "x", "devices": ["0", "1"], "started": T0, "ended": T0 + 30}])
    job = accounting.job_device_seconds(logs, accounting.windows_of(results))
    assert job["by_stage"] == {"dummy-gate": 60.0} and job["device_seconds"] == 60.0


def test_a_server_still_running_is_charged_to_the_stage_window(tmp_path: Path) -> None:
    # the real-gate server lives on into capacity (one shared real-weight start); its closing line
    # comes later: each stage is charged for its own part
    logs = tmp_path / "logs"
    write(logs, [{"id": "s", "name": "vllm-serve:real", "devices": ["0", "1"], "started": T0, "ended": None}])
    assert accounting.stage_data(logs, T0, T0 + 10)["device_seconds"] == 20.0
    assert accounting.stage_data(logs, T0 + 10, T0 + 25)["device_seconds"] == 30.0
    start = dt.datetime.fromtimestamp(T0 + 10, dt.UTC)
    assert accounting.stage_data(logs, start, start + dt.timedelta(seconds=5))["device_seconds"] == 10.0


def test_timed_records_devices_of_a_real_lifetime(tmp_path: Path) -> None:
    t0 = time.time()
    with accounting.timed(tmp_path, "sleeper", devices=["npu4", "npu5"]):
        time.sleep(0.2)
    (rec,) = accounting.records(tmp_path)
    assert rec.devices == ["npu4", "npu5"] and rec.ended is not None
    d = accounting.stage_data(tmp_path, t0 - 1, time.time() + 1)
    assert d["device_seconds"] == pytest.approx(2 * (rec.ended - rec.started), abs=0.02)
    assert 0.38 <= d["device_seconds"] < 5


def test_preflight_estimate_from_checkpoint_bytes() -> None:
    spec = load_profile("ascend-a3").capacity
    # 688 GB (DeepSeek-V3 shaped) at the profile's assumed 2 GB/s, 600 s compile, 120 s start-up
    real = accounting.estimate_start_s(688_000_000_000, spec)
    assert real == pytest.approx(120 + 344 + 600)
    assert accounting.estimate_start_s(688_000_000_000, spec, real_weights=False) == pytest.approx(720)
    est = accounting.estimate_job(
        688_000_000_000, 16, spec, real_starts=1, dummy_starts=1, probe_starts=3, probe_devices=4
    )
    assert est["device_seconds"] == pytest.approx(16 * (1064 + 720) + 4 * 3 * 720)
    assert est["device_hours"] == pytest.approx(est["device_seconds"] / 3600, abs=0.01)
    assert est["basis"]["load_bandwidth_gbps"] == spec.load_bandwidth_gbps


def test_start_figures_from_a_recorded_log() -> None:
    from runners.serve import read_log_lines

    log = Path(__file__).resolve().parents[1] / "fixtures" / "vllm-logs" / "qwen3-moe-ep-cpu.log"
    fig = accounting.start_figures(read_log_lines(log), checkpoint_bytes=1_000_000)
    assert (fig["load_s"], fig["init_engine_s"], fig["compile_s"]) == (0.01, 0.31, None)  # eager: no capture
    assert fig["load_gbps"] is None  # a 0.01 s load says nothing about bandwidth
    npu = [
        "INFO Loading weights took 351.20 seconds",
        "INFO Graph capturing finished in 412 secs, took 1.2 GiB",
    ]
    fig = accounting.start_figures(npu, checkpoint_bytes=688_000_000_000)
    assert (fig["load_s"], fig["compile_s"], fig["load_gbps"]) == (351.2, 412.0, round(688 / 351.2, 3))
