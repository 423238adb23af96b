"""The adapter step (issue 14) without a vLLM server: real adapter processes (python scripts run
via argv), the runner's own git diff, the budget, the bounds (attempts, timeout with the process
group killed, device-hours from the job's accounting), the credential scrub, the per-job install
into `<workspace>/adapter-site` with the real vLLM environment's pip and its rebuild on another
host, and the option grammar of the repo config and the CLI. The re-gate here is a function that
reads what a server would get (`candidate.ensure`); tests/gates/test_adapter_vllm.py re-gates with
a real vllm serve."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from bot.config import Settings
from bot.options import ADAPTER_COMMAND, OptionError, adapter_spec
from bot.repo_config import parse
from runners import accounting
from runners import adapter as ad
from runners import candidate as cand_mod
from runners.contracts import AdapterSpec, StageResult
from tests.gates.conftest import make_ctx

FAILED = StageResult(
    stage="dummy-gate",
    status="failed",
    reason="not-registered",
    diagnosis="vLLM does not register AdaptBotX",
    data={"log_path": "/nowhere/dummy-gate.log"},
)


def _ctx(tmp_path: Path, **spec: Any) -> Any:
    model = tmp_path / "model"
    model.mkdir(exist_ok=True)
    (model / "config.json").write_text('{"architectures": ["AdaptBotX"]}', encoding="utf-8")
    return make_ctx(tmp_path, model, "cpu", adapter=AdapterSpec(**spec))


def _script(tmp_path: Path, name: str, body: str) -> list[str]:
    path = tmp_path / f"{name}.py"
    path.write_text(body, encoding="utf-8")
    return [sys.executable, str(path)]


class Regate:
    """Re-gates by looking at what every server of the job would get: PYTHONPATH to the site."""

    def __init__(self, ctx: Any, needs: str = "adapt_bot_plugin/fixed.py") -> None:
        self.ctx, self.needs, self.calls = ctx, needs, 0

    def __call__(self) -> list[StageResult]:
        self.calls += 1
        env = cand_mod.ensure(self.ctx)
        site = Path(env.get("PYTHONPATH", "/nonexistent"))
        ok = (site / self.needs).is_file()
        if ok:
            return [StageResult(stage="dummy-gate", status="passed")]
        return [StageResult(stage="dummy-gate", status="failed", reason="not-registered")]


def test_an_adapter_that_changes_nothing_is_bounded_and_never_regated(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("GITHUB_TOKEN", "ghs_secret")
    monkeypatch.setenv("ADAPT_BOT_REDIS_URL", "redis://secret")
    env_dump = tmp_path / "env.json"
    argv = _script(
        tmp_path, "noop", f"import json, os; open({str(env_dump)!r}, 'w').write(json.dumps(dict(os.environ)))"
    )
    ctx = _ctx(tmp_path, command=argv, attempts=2)
    regate = Regate(ctx)
    record, passing = ad.run_step(ctx, ctx.options.adapter, FAILED, regate, {"architecture": "AdaptBotX"})
    assert passing is None and regate.calls == 0
    assert [a["outcome"] for a in record["attempts"]] == ["no-change", "no-change"]
    assert record["attempts"][0]["exit_code"] == 0
    assert record["stopped"].startswith("attempts:") and record["outcome"] == "bounded"
    assert record["command"] == f"{Path(sys.executable).name} (+1 arguments)"  # the name only
    assert "patch" not in record
    seen = json.loads(env_dump.read_text())
    assert "GITHUB_TOKEN" not in seen and "ADAPT_BOT_REDIS_URL" not in seen  # the vllm serve scrub
    for name in (ad.ENV_CHECKOUT, ad.ENV_SKILL, ad.ENV_ANALYSIS, ad.ENV_FAILURE, ad.ENV_HISTORY):
        assert Path(seen[name]).exists(), name
    failure = json.loads(Path(seen[ad.ENV_FAILURE]).read_text())
    assert failure["reason"] == "not-registered" and failure["stage"] == "dummy-gate"
    assert json.loads(Path(seen[ad.ENV_HISTORY]).read_text())[0]["outcome"] == "no-change"  # attempt 2
    assert not (ctx.workspace.path / cand_mod.ADAPTER_SITE).exists()


def test_garbage_outside_the_checkout_a_symlink_and_a_binary_are_not_a_patch(tmp_path: Path) -> None:
    outside = tmp_path / "outside.txt"
    argv = _script(
        tmp_path,
        "garbage",
        "import os, pathlib\n"
        "c = pathlib.Path(os.environ['ADAPTER_CHECKOUT'])\n"
        f"pathlib.Path({str(outside)!r}).write_text('not yours')\n"
        "(c / '.git' / 'hooks' / 'post-index-change').write_text('#!/bin/sh\\ntouch /tmp/pwned\\n')\n"
        "attempt = os.environ['ADAPTER_ATTEMPT']\n"
        "if attempt == '2':\n"
        "    os.symlink('/etc/passwd', c / 'adapt_bot_plugin' / 'passwd')\n"
        "if attempt == '3':\n"
        "    (c / 'adapt_bot_plugin' / 'blob.bin').write_bytes(bytes(range(256)))\n",
    )
    ctx = _ctx(tmp_path, command=argv, attempts=3)
    regate = Regate(ctx)
    record, passing = ad.run_step(ctx, ctx.options.adapter, FAILED, regate, {})
    assert passing is None and regate.calls == 0 and outside.is_file()
    first, second, third = record["attempts"]
    assert first["outcome"] == "no-change"  # the file outside and the checkout's .git are not the patch
    assert second["outcome"] == "rejected" and "symlink" in second["detail"]
    assert third["outcome"] == "rejected" and "binary" in third["detail"]
    text = ad.render_text(record)
    assert "Nothing it wrote is committed" in text and "rejected" in text


def test_an_adapter_that_hangs_is_killed_with_its_process_group(tmp_path: Path) -> None:
    pid_file = tmp_path / "child.pid"
    argv = _script(
        tmp_path,
        "hang",
        "import subprocess, time\n"
        f"p = subprocess.Popen(['sleep', '300']); open({str(pid_file)!r}, 'w').write(str(p.pid))\n"
        "time.sleep(300)\n",
    )
    ctx = _ctx(tmp_path, command=argv, attempts=1, timeout_s=2)
    t0 = time.monotonic()
    record, passing = ad.run_step(ctx, ctx.options.adapter, FAILED, Regate(ctx), {})
    assert time.monotonic() - t0 < 30 and passing is None
    (att,) = record["attempts"]
    assert att["outcome"] == "timeout" and att["exit_code"] is None and "killed" in att["detail"]
    child = int(pid_file.read_text())
    deadline = time.monotonic() + 5
    while Path(f"/proc/{child}").exists() and time.monotonic() < deadline:
        time.sleep(0.1)  # killed; reaped by init
    alive = Path(f"/proc/{child}/stat").exists() and ") Z " not in Path(f"/proc/{child}/stat").read_text()
    assert not alive, "the adapter's child outlived the timeout"


FIX = (
    "import os, pathlib\n"
    "c = pathlib.Path(os.environ['ADAPTER_CHECKOUT'])\n"
    "if os.environ['ADAPTER_ATTEMPT'] == '1':\n"
    "    raise SystemExit(7)\n"
    "(c / 'adapt_bot_plugin' / 'fixed.py').write_text('FIXED = True\\n')\n"
)


def test_a_patch_that_passes_is_installed_recorded_and_rebuilt_on_another_host(tmp_path: Path) -> None:
    ctx = _ctx(tmp_path, command=_script(tmp_path, "fix", FIX), attempts=3)
    regate = Regate(ctx)
    record, passing = ad.run_step(ctx, ctx.options.adapter, FAILED, regate, {})
    assert passing is not None and passing.ok and regate.calls == 1
    assert [a["outcome"] for a in record["attempts"]] == ["failed", "passed"]
    assert record["attempts"][0]["exit_code"] == 7
    assert record["outcome"] == "passed" and record["attempt"] == 2
    assert record["files"] == {"adapt_bot_plugin/fixed.py": "FIXED = True\n"}
    assert "+FIXED = True" in record["patch"] and record["attempts"][1]["patch_bytes"] > 0
    # a later stage on a host without this workspace: rebuilt from the stage result's data
    other = make_ctx(tmp_path / "host2", ctx.model_path, "cpu")
    other.previous["dummy-gate"] = StageResult(stage="dummy-gate", status="passed", data={"adapter": record})
    site = Path(cand_mod.ensure(other)["PYTHONPATH"])
    assert site == other.workspace.path / cand_mod.ADAPTER_SITE
    assert (site / "adapt_bot_plugin" / "fixed.py").read_text() == "FIXED = True\n"


def test_device_hours_of_the_regates_bound_the_step(tmp_path: Path) -> None:
    ctx = _ctx(tmp_path, command=_script(tmp_path, "fix2", FIX.replace("'1'", "'0'")), attempts=3)
    ctx.options.adapter.device_hours = 1e-5  # 0.036 device-seconds

    def regate() -> list[StageResult]:
        with accounting.timed(ctx.workspace.logs, "server", devices=["0", "1"]):
            time.sleep(0.2)
        return [StageResult(stage="dummy-gate", status="failed", reason="not-registered")]

    record, passing = ad.run_step(ctx, ctx.options.adapter, FAILED, regate, {})
    assert passing is None and len(record["attempts"]) == 1
    assert record["attempts"][0]["outcome"] == "regate-failed"
    assert record["stopped"].startswith("device-hours:")


def test_the_option_grammar_refuses_bad_adapter_input_with_a_message() -> None:
    assert ADAPTER_COMMAND.convert('["my-agent", "--skill", "x"]') == ["my-agent", "--skill", "x"]
    for bad, says in (
        ("my-agent --x", "JSON list"),
        ('"my-agent"', "JSON list"),
        ("[]", "at least"),
        ('["a", 3]', "strings"),
        ('[""]', "empty"),
    ):
        with pytest.raises(OptionError, match=says):
            ADAPTER_COMMAND.convert(bad)
    assert adapter_spec(None, None, None, None) is None
    spec = adapter_spec(["a"], "3", "60", "0.25")
    assert spec is not None and (spec.attempts, spec.timeout_s, spec.device_hours) == (3, 60, 0.25)
    with pytest.raises(OptionError, match="--adapter-attempts"):
        adapter_spec(["a"], "9", None, None)
    with pytest.raises(OptionError, match="--adapter-command"):
        adapter_spec(None, "2", None, None)
    with pytest.raises(OptionError, match="--adapter-device-hours"):
        adapter_spec(["a"], None, None, "lots")


def test_the_repo_config_adapter_key() -> None:
    settings = Settings()
    ok = parse("adapter:\n  command: [my-agent, --print]\n  attempts: 3\n", settings)
    assert ok.error is None and ok.config.adapter is not None and ok.config.adapter.attempts == 3
    assert parse(None, settings).config.adapter is None  # off by default
    bad = parse("adapter:\n  command: 'my-agent --print'\n", settings)
    assert bad.error is not None and "adapter.command" in bad.error and bad.config.adapter is None
    bad = parse("adapter:\n  command: [a]\n  attempts: 0\n", settings)
    assert bad.error is not None and "adapter.attempts" in bad.error
    bad = parse("adapter:\n  command: [a]\n  shell: true\n", settings)
    assert bad.error is not None and "adapter.shell" in bad.error


def test_adapt_bot_run_takes_the_adapter_flags(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    import argparse

    from bot.cli.run import add_arguments, options_from_args

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    model = tmp_path / "m"
    model.mkdir()
    base = [str(model), "--repo", str(tmp_path)]
    args = parser.parse_args([*base, "--adapter-command", '["my-agent", "--fix"]', "--adapter-attempts", "3"])
    opts = options_from_args(args)
    assert opts.adapter is not None and opts.adapter.command == ["my-agent", "--fix"]
    assert opts.adapter.attempts == 3 and opts.adapter.timeout_s == 900
    assert options_from_args(parser.parse_args(base)).adapter is None  # off by default
    with pytest.raises(SystemExit):
        parser.parse_args([*base, "--adapter-command", "my-agent --fix"])
    assert "JSON list" in capsys.readouterr().err
    with pytest.raises(ValueError, match="adapter-attempts"):
        options_from_args(parser.parse_args([*base, "--adapter-command", '["a"]', "--adapter-attempts", "0"]))
    with pytest.raises(ValueError, match="need --adapter-command"):
        options_from_args(parser.parse_args([*base, "--adapter-timeout", "5"]))


def test_a_failed_gate_runs_the_step_and_keeps_its_own_failure(tmp_path: Path) -> None:
    """run_gate with a real (shell) server that crashes: the adapter runs in the same stage, its
    bounded record lands in data.adapter and the diagnosis, the gate's reason is unchanged."""
    from runners.gates.gate import run_gate
    from tests.gates.conftest import shell_profile

    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text('{"architectures": ["LlamaForCausalLM"]}', encoding="utf-8")
    argv = _script(tmp_path, "noop", "print('looked, changed nothing')")
    spec = AdapterSpec(command=argv, attempts=1)
    ctx = make_ctx(tmp_path, model, shell_profile("echo 'RuntimeError: boom' >&2; exit 1"), adapter=spec)
    result = run_gate(ctx, stage="dummy-gate", load_format="dummy")
    assert result.status == "failed" and result.reason not in (None, "adapter")
    rec = result.data["adapter"]
    assert rec["outcome"] == "bounded" and rec["attempts"][0]["outcome"] == "no-change"
    assert "adapter step" in (result.diagnosis or "") and "Nothing it wrote is committed" in result.diagnosis
    log = Path(rec["attempts"][0]["log_path"]).read_text()
    assert "looked, changed nothing" in log
    off = make_ctx(tmp_path / "off", model, shell_profile("exit 1"))
    assert "adapter" not in run_gate(off, stage="dummy-gate", load_format="dummy").data  # off by default


def test_a_later_stages_adapter_builds_on_the_adopted_patch(tmp_path: Path) -> None:
    """The dummy gate adopted patch A; the real gate's adapter gets a checkout that holds A, its
    patch B is installed on top, and the delivery and a rebuild on another host carry both."""
    ctx = _ctx(tmp_path, command=_script(tmp_path, "fix", FIX.replace("'1'", "'0'")), attempts=1)
    rec_a, passing_a = ad.run_step(ctx, ctx.options.adapter, FAILED, Regate(ctx), {})
    assert passing_a is not None
    passing_a.data["adapter"] = rec_a
    ctx.previous["dummy-gate"] = passing_a
    second = (
        "import os, pathlib\n"
        "c = pathlib.Path(os.environ['ADAPTER_CHECKOUT'])\n"
        "assert (c / 'adapt_bot_plugin' / 'fixed.py').is_file(), 'the adopted patch is missing'\n"
        "(c / 'adapt_bot_plugin' / 'mapping.py').write_text('MAPPED = 1\\n')\n"
    )
    ctx.options.adapter.command = _script(tmp_path, "second", second)
    real_failed = FAILED.model_copy(update={"stage": "real-gate", "reason": "reference-mismatch"})

    def regate() -> list[StageResult]:
        site = Path(cand_mod.ensure(ctx)["PYTHONPATH"])
        both = all((site / "adapt_bot_plugin" / f).is_file() for f in ("fixed.py", "mapping.py"))
        return [
            StageResult(stage="dummy-gate", status="passed"),
            StageResult(stage="real-gate", status="passed" if both else "failed", reason=None),
        ]

    rec_b, passing_b = ad.run_step(ctx, ctx.options.adapter, real_failed, regate, {})
    assert passing_b is not None and list(rec_b["files"]) == ["adapt_bot_plugin/mapping.py"]
    passing_b.data["adapter"] = rec_b
    results = {"dummy-gate": passing_a, "real-gate": passing_b}
    assert set(cand_mod.adapter_files(results)) == {
        "adapt_bot_plugin/fixed.py",
        "adapt_bot_plugin/mapping.py",
    }
    other = make_ctx(tmp_path / "host2", ctx.model_path, "cpu")
    other.previous.update(results)
    site = Path(cand_mod.ensure(other)["PYTHONPATH"])
    assert (site / "adapt_bot_plugin" / "fixed.py").is_file() and (
        site / "adapt_bot_plugin" / "mapping.py"
    ).is_file()
