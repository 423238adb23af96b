"""Issue 13: the Chinese report shows the device-seconds of every stage and the job's total, from
the stage results' `data.device_seconds` (runners.accounting), and says what a device is on cpu."""

from __future__ import annotations

from runners.artifacts import render_report
from runners.artifacts.facts import collect
from tests.artifacts import builders as b


def test_report_lists_device_seconds_per_stage_and_the_total() -> None:
    results = b.full_results()
    for stage, ds in (("dummy-gate", 40.0), ("real-gate", 3600.0), ("capacity", 1234.5)):
        results[stage] = results[stage].model_copy(
            update={"data": {**results[stage].data, "device_seconds": ds}}
        )
    results["accuracy"] = results["accuracy"].model_copy(
        update={"data": {**results["accuracy"].data, "device_seconds": "garbage"}}
    )
    facts = collect(b.options(), results)
    assert list(facts.device_seconds) == ["dummy-gate", "real-gate", "capacity"]  # pipeline order
    assert facts.device_seconds_total == 4874.5
    report = render_report(b.options(), results)
    section = report.split("### 设备时长", 1)[1].split("## 特性状态矩阵", 1)[0]
    assert "| dummy-gate | 40 |" in section and "| real-gate | 3,600 |" in section
    assert "| capacity | 1,234 |" in section and "accuracy" not in section
    assert "| **合计** | **4,874**（1.35 device-hours） |" in section
    assert "设备数 × 秒数" in section


def test_report_without_accounting_says_so() -> None:
    results = {k: v.model_copy(update={"data": {}}) for k, v in b.full_results().items()}
    report = render_report(b.options(), results)
    assert "（各阶段结果未记录设备时长）" in report.split("### 设备时长", 1)[1]
