"""Wall time and device-seconds of the external processes a job runs (vllm serve, lm_eval, references).

Two figures come from the same records. The bot's own overhead: total job time minus the time
spent inside the model server and the evaluation harness (parallel probes overlap, so that is the
union of the intervals). And the cost on the host: device-seconds, the devices a process held
times its lifetime, summed per stage and per job: on Ascend a start of a large checkpoint holds
8-16 NPUs for tens of minutes, and that is what a job spends.

Each process appends two JSON lines to the workspace's `logs/processes.jsonl`: one when it
starts (`ended: null`, so a stage that ends while its server lives on, or a runner that is killed,
still accounts the time) and one when it ends. A process's devices are its lease (NPU ids; on the
cpu profile one slot = one "device" per server, not a real accelerator). A client process that
holds no device (lm_eval talks to the server over HTTP) records `devices: []`: wall time, no
device-seconds.

Attribution to stages is by time: a stage is charged for the part of each process's lifetime
inside the stage's [started_at, finished_at] window (stages of one job run one after another).
"""

from __future__ import annotations

import datetime as dt
import json
import re
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

FILE_NAME = "processes.jsonl"


@dataclass
class ProcessRecord:
    name: str
    started: float
    #: None while the process runs (or when its runner died before it could say).
    ended: float | None
    devices: list[str] = field(default_factory=list)
    id: str = ""

    @property
    def device_count(self) -> int:
        return len(self.devices)

    def span(self, now: float) -> tuple[float, float]:
        return self.started, self.ended if self.ended is not None else max(self.started, now)


def _append(logs_dir: Path, payload: dict[str, Any]) -> None:
    logs_dir.mkdir(parents=True, exist_ok=True)
    with (logs_dir / FILE_NAME).open("a", encoding="utf-8") as fh:
        fh.write(json.dumps(payload) + "\n")


def record(
    logs_dir: Path,
    name: str,
    started: float,
    ended: float,
    *,
    devices: Sequence[str] = (),
    record_id: str | None = None,
) -> None:
    """One finished process (wall-clock epoch seconds)."""
    _append(
        logs_dir,
        {
            "id": record_id or uuid.uuid4().hex,
            "name": name,
            "devices": list(devices),
            "started": started,
            "ended": ended,
            "seconds": round(ended - started, 3),
        },
    )


@contextmanager
def timed(logs_dir: Path, name: str, *, devices: Sequence[str] = ()) -> Iterator[None]:
    """Record the lifetime of the process started inside the block, and the devices it holds."""
    rid = uuid.uuid4().hex
    started = time.time()
    _append(logs_dir, {"id": rid, "name": name, "devices": list(devices), "started": started, "ended": None})
    try:
        yield
    finally:
        record(logs_dir, name, started, time.time(), devices=devices, record_id=rid)


def records(logs_dir: Path) -> list[ProcessRecord]:
    """One record per process: the closing line wins over the opening one (same id)."""
    path = logs_dir / FILE_NAME
    if not path.is_file():
        return []
    by_id: dict[str, ProcessRecord] = {}
    order: list[str] = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines()):
        if not line.strip():
            continue
        try:
            d = json.loads(line)
            rid = str(d.get("id") or f"line-{n}")
            rec = ProcessRecord(
                name=str(d.get("name", "")),
                started=float(d["started"]),
                ended=None if d.get("ended") is None else float(d["ended"]),
                devices=[str(x) for x in d.get("devices") or []],
                id=rid,
            )
        except (ValueError, KeyError, TypeError, AttributeError):
            continue  # a torn line from a killed writer is not worth failing a report for
        if rid not in by_id:
            order.append(rid)
            by_id[rid] = rec
        elif rec.ended is not None:
            by_id[rid] = rec
    return [by_id[r] for r in order]


def intervals(logs_dir: Path) -> list[tuple[float, float]]:
    """[start, end] of every finished process."""
    return [(r.started, r.ended) for r in records(logs_dir) if r.ended is not None]


def union_seconds(spans: list[tuple[float, float]]) -> float:
    """Length of the union of [start, end] intervals."""
    total = 0.0
    cur_start: float | None = None
    cur_end = 0.0
    for start, end in sorted(spans):
        if cur_start is None or start > cur_end:
            if cur_start is not None:
                total += cur_end - cur_start
            cur_start, cur_end = start, end
        else:
            cur_end = max(cur_end, end)
    if cur_start is not None:
        total += cur_end - cur_start
    return total


def total_seconds(logs_dir: Path) -> float:
    return union_seconds(intervals(logs_dir))


# --------------------------------------------------------------------------- device-seconds (pure)


def _epoch(t: float | dt.datetime) -> float:
    return t.timestamp() if isinstance(t, dt.datetime) else float(t)


def device_seconds(
    recs: Sequence[ProcessRecord],
    window: tuple[float | dt.datetime, float | dt.datetime] | None = None,
    *,
    now: float | None = None,
) -> dict[str, Any]:
    """Devices × seconds of the processes (clipped to `window` when given), and the detail.

    A process still open counts up to the window's end (else `now`)."""
    lo, hi = (_epoch(window[0]), _epoch(window[1])) if window else (float("-inf"), float("inf"))
    now_ = now if now is not None else (hi if window else time.time())
    rows = []
    total = 0.0
    wall: list[tuple[float, float]] = []
    for r in recs:
        start, end = r.span(now_)
        start, end = max(start, lo), min(end, hi)
        if end <= start:
            continue
        seconds = end - start
        ds = seconds * r.device_count
        total += ds
        wall.append((start, end))
        rows.append(
            {
                "name": r.name,
                "devices": r.device_count,
                "seconds": round(seconds, 2),
                "device_seconds": round(ds, 2),
                "open": r.ended is None,
            }
        )
    return {
        "device_seconds": round(total, 2),
        "process_seconds": round(union_seconds(wall), 2),
        "processes": rows,
    }


def stage_device_seconds(
    logs_dir: Path, started: float | dt.datetime, finished: float | dt.datetime
) -> dict[str, Any]:
    """What one stage spent: the part of every process inside the stage's window."""
    return device_seconds(records(logs_dir), (started, finished))


def stage_data(logs_dir: Path, started: float | dt.datetime, finished: float | dt.datetime) -> dict[str, Any]:
    """The keys every stage result's `data` carries: `device_seconds` (devices × seconds inside the
    stage's window) and `device_accounting` (union wall time of the processes, one row each)."""
    d = stage_device_seconds(logs_dir, started, finished)
    return {
        "device_seconds": d["device_seconds"],
        "device_accounting": {"process_seconds": d["process_seconds"], "processes": d["processes"]},
    }


def windows_of(results: Mapping[str, Any]) -> dict[str, tuple[dt.datetime, dt.datetime]]:
    """Stage windows from stored StageResults (`ws.load_results()`), for job_device_seconds."""
    return {
        stage: (r.started_at, r.finished_at)
        for stage, r in results.items()
        if getattr(r, "finished_at", None) is not None
    }


def job_device_seconds(
    logs_dir: Path, windows: Mapping[str, tuple[float | dt.datetime, float | dt.datetime]]
) -> dict[str, Any]:
    """Per stage (by window) and for the whole job: every process over its whole lifetime, so
    earlier attempts of a rerun stage count in the total though no stored window holds them."""
    recs = records(logs_dir)
    by_stage = {s: device_seconds(recs, w)["device_seconds"] for s, w in windows.items()}
    last = max((_epoch(w[1]) for w in windows.values()), default=None)
    whole = device_seconds(recs, now=last)
    return {
        "device_seconds": whole["device_seconds"],
        "process_seconds": whole["process_seconds"],
        "by_stage": by_stage,
        "processes": len(recs),
    }


# --------------------------------------------------------------------------- measured start figures (pure)

_FIGURES = {
    "load_s": re.compile(r"Loading weights took (?P<s>[\d.]+) s"),
    "compile_s": re.compile(r"Graph capturing finished in (?P<s>[\d.]+) secs"),
    "init_engine_s": re.compile(
        r"init engine \(profile, create kv cache, warmup model\) took (?P<s>[\d.]+) s"
    ),
}


def start_figures(lines: Iterable[str], checkpoint_bytes: int | None = None) -> dict[str, float | None]:
    """What a start's log says it spent: weights load, graph capture, engine init (seconds), and
    the load bandwidth it implies (GB/s): the measured counterparts of the profile's estimates."""
    out: dict[str, float | None] = dict.fromkeys(_FIGURES)
    for line in lines:
        for key, rx in _FIGURES.items():
            if out[key] is None and (m := rx.search(line)):
                out[key] = float(m.group("s"))
    load = out["load_s"]
    out["load_gbps"] = (
        round(checkpoint_bytes / 1e9 / load, 3) if checkpoint_bytes and load and load >= 0.1 else None
    )
    return out


# --------------------------------------------------------------------------- pre-flight estimate (pure)


def estimate_start_s(checkpoint_bytes: int | None, spec: Any, *, real_weights: bool = True) -> float:
    """Seconds one server start takes: fixed start-up + reading the checkpoint (real weights only)
    + graph capture/compilation. `spec` is the profile's CapacitySpec (load_bandwidth_gbps,
    compile_s, start_overhead_s)."""
    load = 0.0
    if real_weights and checkpoint_bytes:
        load = checkpoint_bytes / 1e9 / max(1e-6, float(spec.load_bandwidth_gbps))
    return float(spec.start_overhead_s) + load + float(spec.compile_s)


def estimate_job(
    checkpoint_bytes: int | None,
    devices: int,
    spec: Any,
    *,
    real_starts: int = 1,
    dummy_starts: int = 1,
    probe_starts: int = 0,
    probe_devices: int | None = None,
    serve_s: float = 0.0,
) -> dict[str, Any]:
    """Pre-flight device-seconds before anything runs (pure; documented estimates, not measured).

    `serve_s` adds the time the servers are busy after READY (smoke, load test, lm-eval)."""
    real = estimate_start_s(checkpoint_bytes, spec, real_weights=True)
    dummy = estimate_start_s(checkpoint_bytes, spec, real_weights=False)
    probe_n = probe_devices if probe_devices is not None else devices
    ds = devices * (real_starts * real + dummy_starts * dummy + serve_s) + probe_n * probe_starts * dummy
    return {
        "checkpoint_bytes": checkpoint_bytes,
        "devices": devices,
        "real_start_s": round(real, 1),
        "dummy_start_s": round(dummy, 1),
        "starts": {"real": real_starts, "dummy": dummy_starts, "probe": probe_starts},
        "device_seconds": round(ds, 1),
        "device_hours": round(ds / 3600, 2),
        "basis": {
            "load_bandwidth_gbps": spec.load_bandwidth_gbps,
            "compile_s": spec.compile_s,
            "start_overhead_s": spec.start_overhead_s,
        },
    }
