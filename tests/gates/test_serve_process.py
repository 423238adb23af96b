"""The serve lifecycle against real processes that are not vLLM (fast): timeouts, crashes,
cancellation, teardown of whole process groups, stale-server hygiene, bounded logs, clean env."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest

from runners.context import LocalCancel
from runners.gates.gate import run_gate
from runners.serve import (
    SERVE_TAG_VAR,
    LogSink,
    ServeError,
    build_env,
    group_members,
    pick_port,
    read_log_lines,
    reap_stale_servers,
    served,
    with_extra_args,
)
from runners.serve.process import _record_pgid
from tests.gates.conftest import make_ctx, our_processes, shell_profile

# a parent that never opens the port, plus a grandchild in the same group
NEVER_READY = "echo 'INFO loading model'; sleep 600 & sleep 600"


def model_dir(tmp_path: Path) -> Path:
    d = tmp_path / "model"
    d.mkdir(exist_ok=True)
    (d / "config.json").write_text(json.dumps({"architectures": ["LlamaForCausalLM"], "model_type": "llama"}))
    return d


def test_never_ready_times_out_and_leaves_no_process(tmp_path: Path) -> None:
    ctx = make_ctx(tmp_path, model_dir(tmp_path), shell_profile(NEVER_READY, ready_s=1.5))
    t0 = time.monotonic()
    with pytest.raises(ServeError) as exc, served(ctx, log_name="never"):
        pytest.fail("must not become ready")
    err = exc.value
    assert err.reason == "timeout"
    assert "not ready after 2 s" in err.diagnosis or "not ready after 1 s" in err.diagnosis
    assert err.next_step and "timeouts.ready_s" in err.next_step
    assert any(e.line == 1 and "loading model" in e.text for e in err.evidence)  # last log line
    assert time.monotonic() - t0 < 10
    assert our_processes(str(tmp_path)) == []
    assert json.loads((ctx.workspace.path / "serve-pgids.json").read_text()) == []


def test_timeout_gate_result_with_ladder_rungs(tmp_path: Path) -> None:
    ctx = make_ctx(tmp_path, model_dir(tmp_path), shell_profile(NEVER_READY, ready_s=1.0, ladder=True))
    result = run_gate(ctx, stage="dummy-gate", load_format="dummy")
    assert result.status == "failed" and result.reason == "timeout"
    assert result.diagnosis and "GET /v1/models" in result.diagnosis
    rungs = [(r["rung"], r["status"]) for r in result.data["ladder"]]
    # reproduce and eager really ran (and timed out again); the VL rungs do not apply
    assert rungs == [
        ("reproduce", "failed"),
        ("enforce-eager", "failed"),
        ("torchdynamo-disable", "skipped"),
        ("text-only", "skipped"),
        ("architecture-override", "skipped"),  # zero-code rungs: only for an unregistered class
        ("transformers-backend", "skipped"),
    ]
    eager = result.data["ladder"][1]
    assert "--enforce-eager" in eager["argv"] and "--load-format" in eager["argv"]
    assert Path(eager["log_path"]).name == "dummy-gate-enforce-eager.log"


def test_crash_before_ready_is_classified_with_line_numbers(tmp_path: Path) -> None:
    script = (
        "echo 'INFO starting'; "
        "echo \"ValueError: Model architectures ['Foo'] are not supported for now.\"; exit 3"
    )
    ctx = make_ctx(tmp_path, model_dir(tmp_path), shell_profile(script, ready_s=30, ladder=True))
    result = run_gate(ctx, stage="dummy-gate", load_format="dummy")
    assert result.status == "failed" and result.reason == "not-registered"
    assert "exited with code 3" in (result.diagnosis or "")
    assert result.next_step and "adaptation needed" in result.next_step
    ev = result.evidence[0]
    assert ev.line == 2 and ev.log_path and ev.log_path.endswith("dummy-gate.log")
    # vLLM's registry check is static: no reproduction; the zero-code rungs have no plan here (the
    # folder holds no checkpoint the analysis could match), so every rung is recorded as skipped
    ladder = result.data["ladder"]
    assert [(r["rung"], r["status"]) for r in ladder] == [
        ("reproduce", "skipped"),
        ("enforce-eager", "skipped"),
        ("torchdynamo-disable", "skipped"),
        ("text-only", "skipped"),
        ("architecture-override", "skipped"),
        ("transformers-backend", "skipped"),
    ]
    assert "does not register" in ladder[0]["note"]
    assert not (ctx.workspace.logs / "dummy-gate-reproduce.log").exists()
    assert "no zero-code rung served it" in result.next_step


def test_cancel_during_start_stops_within_seconds(tmp_path: Path) -> None:
    cancel = LocalCancel()
    ctx = make_ctx(tmp_path, model_dir(tmp_path), shell_profile(NEVER_READY, ready_s=300), cancel=cancel)
    threading.Timer(0.5, cancel.set).start()
    t0 = time.monotonic()
    with pytest.raises(ServeError) as exc, served(ctx, log_name="cancel"):
        pass
    assert exc.value.reason == "cancelled"
    assert time.monotonic() - t0 < 5
    assert our_processes(str(tmp_path)) == []


def test_teardown_kills_group_that_ignores_sigterm(tmp_path: Path) -> None:
    # the "server" answers like vLLM would: a tiny HTTP server on $1 that ignores SIGTERM
    script = (
        "trap '' TERM; exec python3 -c \"import http.server,json,sys,signal;"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN);"
        "H=type('H',(http.server.BaseHTTPRequestHandler,),{'do_GET':lambda s:(s.send_response(200),"
        "s.send_header('content-type','application/json'),s.end_headers(),"
        "s.wfile.write(json.dumps({'data':[{'id':'model'}]}).encode())),'log_message':lambda *a:None});"
        'http.server.HTTPServer((\'127.0.0.1\',int(sys.argv[1])),H).serve_forever()" "$1"'
    )
    prof = shell_profile(script, ready_s=20)
    ctx = make_ctx(tmp_path, model_dir(tmp_path), prof)
    with served(ctx, log_name="stubborn") as srv:
        assert srv.base_url.startswith("http://127.0.0.1:")
        assert srv.served_name == "model"
        assert srv.ready_after_s < 20
        pgid = srv.pgid
        assert group_members(pgid)
    assert group_members(pgid) == []  # SIGKILL after the grace period


def test_stale_server_of_ours_is_reaped_but_not_a_stranger(tmp_path: Path) -> None:
    ctx = make_ctx(tmp_path, model_dir(tmp_path), shell_profile(NEVER_READY))
    env_ours = {**os.environ, SERVE_TAG_VAR: "tag-ours", "MARK": str(tmp_path)}
    env_other = {**os.environ, SERVE_TAG_VAR: "tag-someone-else"}
    ours = subprocess.Popen(["sleep", "600"], env=env_ours, start_new_session=True)
    stranger = subprocess.Popen(["sleep", "600"], env=env_other, start_new_session=True)
    try:
        _record_pgid(ctx, ours.pid, "tag-ours", "old")
        _record_pgid(ctx, stranger.pid, "tag-not-matching", "old")  # pgid recorded, tag differs
        killed = reap_stale_servers(ctx, grace_s=2)
        assert killed == [ours.pid]
        assert ours.wait(5) == -signal.SIGTERM
        assert stranger.poll() is None  # never signal a group that is not provably ours
        assert json.loads((ctx.workspace.path / "serve-pgids.json").read_text()) == []
    finally:
        stranger.kill()
        ours.kill()
        stranger.wait(5)
        ours.wait(5)


def test_log_is_bounded_and_keeps_the_tail(tmp_path: Path) -> None:
    sink = LogSink(tmp_path / "x.log", max_bytes=1000)
    for i in range(500):
        sink.add(f"line {i:04d} " + "x" * 20)
    sink.add("RuntimeError: the real cause at the end")
    sink.close()
    data = (tmp_path / "x.log").read_bytes()
    assert len(data) < 1000 + 1000 // 4 + 200
    lines = read_log_lines(tmp_path / "x.log")
    assert lines[0].startswith("line 0000")
    assert any("log capped at 1000 bytes" in ln for ln in lines)
    assert lines[-1] == "RuntimeError: the real cause at the end"


def test_progress_bar_carriage_returns_do_not_shift_line_numbers(tmp_path: Path) -> None:
    sink = LogSink(tmp_path / "p.log", max_bytes=10_000)
    sink.add("Loading: 0%\r Loading: 100%")
    sink.add("ERROR boom")
    sink.close()
    assert read_log_lines(tmp_path / "p.log")[1] == "ERROR boom"
    assert sink.snapshot()[1] == "ERROR boom"


def test_clean_environment_only_inherits_named_variables(tmp_path: Path) -> None:
    prof = shell_profile(NEVER_READY)
    env = build_env(
        prof,
        {"workspace": "/w"},
        devices=["3", "4"],
        extra_env={"TORCHDYNAMO_DISABLE": "1"},
        tag="t",
        environ={"PATH": "/bin", "GITHUB_TOKEN": "ghs_secret", "ADAPT_BOT_WEBHOOK_SECRET": "x"},
    )
    assert env == {"PATH": "/bin", "MARK": "/w", "TORCHDYNAMO_DISABLE": "1", SERVE_TAG_VAR: "t"}


def test_visibility_variable_carries_the_leased_devices() -> None:
    from runners.profile import load_profile

    env = build_env(load_profile("ascend-a2"), {}, devices=["2", "3"], extra_env=None, tag="t", environ={})
    assert env["ASCEND_RT_VISIBLE_DEVICES"] == "2,3" and env["HCCL_OP_EXPANSION_MODE"] == "AIV"


def test_extra_args_do_not_repeat_flags() -> None:
    base = ["vllm", "serve", "m", "--enforce-eager"]
    assert with_extra_args(base, ["--enforce-eager"]) == base
    assert with_extra_args(base, ["--load-format", "dummy"]) == [*base, "--load-format", "dummy"]


def test_busy_fixed_port_moves_to_the_next_free_one() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        busy = s.getsockname()[1]
        assert pick_port("127.0.0.1", busy) != busy
    assert pick_port("127.0.0.1", 0) > 0


def test_missing_server_program_is_a_clear_crash(tmp_path: Path) -> None:
    prof = shell_profile(NEVER_READY).model_copy(deep=True)
    prof.vllm.default = str(tmp_path / "no-such-vllm")
    ctx = make_ctx(tmp_path, model_dir(tmp_path), prof)
    with pytest.raises(ServeError) as exc, served(ctx, log_name="missing"):
        pass
    assert exc.value.reason == "crashed" and "no-such-vllm" in exc.value.diagnosis
