"""One option grammar (issue 9): `/adapt run` and the CLI (`adapt-bot run`, `adapt-bot gate`) accept
and refuse the same values, with the same limits, and land them in the same JobOptions fields.

The CLI side goes through the real argument parser of the console script (`bot.cli.build_parser`)
and `options_from_args`; the comment side through `bot.commands.parse_line`."""

from __future__ import annotations

import argparse
import contextlib
import io
import subprocess
import sys
from typing import Any

import pytest

from bot.cli import build_parser
from bot.cli.run import options_from_args
from bot.commands import BY_NAME, Command, CommandError, parse_line
from bot.comments import render_help
from bot.options import GATE_OPTIONS, RUN_OPTIONS

#: flag -> values to try (valid and invalid, limits on both sides)
VALUES: dict[str, list[str]] = {
    "--hardware": ["a2", "a3", "a9", "A2", ""],
    "--tp": ["1", "2", "16", "64", "0", "3", "128", "²", "٣", "1_6", "+8", "-1", "x", "08"],
    "--max-model-len": ["256", "255", "16", "32768", "1048576", "1048577", "4096²", "1e4", "٤٠٩٦"],
    "--features": ["mtp", "aclgraph,mtp,aclgraph", "warp-drive", ",", "mtp,warp"],
    "--concurrency": [
        "16,32,64",
        "64,16,16",
        "1",
        "0",
        "4097",
        "1,2,3,4,5,6,7,8",
        "1,2,3,4,5,6,7,8,9",
        "a",
        "16,²",
    ],
}


def command_side(flag: str, value: str) -> tuple[bool, Any]:
    parsed = parse_line(f"/adapt run {flag}={value}")
    if isinstance(parsed, Command):
        dest = next(o.dest for o in RUN_OPTIONS if o.flag == flag)
        return True, parsed.args[dest]
    assert isinstance(parsed, CommandError) and parsed.name == "run", parsed
    return False, parsed.message


def cli_side(subcommand: str, flag: str, value: str) -> tuple[bool, Any]:
    argv = [subcommand, "Qwen/Qwen3-8B", f"{flag}={value}"]
    argv += ["--repo", "/nonexistent"] if subcommand == "run" else ["--stage", "dummy-gate"]
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            args = build_parser().parse_args(argv)
    except SystemExit as exc:
        assert exc.code == 2
        return False, err.getvalue()
    dest = next(o.dest for o in RUN_OPTIONS if o.flag == flag)
    if subcommand == "run":
        return True, getattr(options_from_args(args), dest)
    return True, getattr(args, dest)


CASES = [(flag, value) for flag, values in VALUES.items() for value in values]


@pytest.mark.parametrize(("flag", "value"), CASES)
def test_run_command_and_cli_agree(flag: str, value: str) -> None:
    ok_cmd, got_cmd = command_side(flag, value)
    ok_cli, got_cli = cli_side("run", flag, value)
    assert ok_cmd == ok_cli, (got_cmd, got_cli)
    if ok_cmd:
        assert got_cmd == got_cli
    else:
        # the same reason, in argparse's words
        assert got_cmd.replace("`", "") in got_cli


@pytest.mark.parametrize(("flag", "value"), [(f, v) for f, v in CASES if f in {o.flag for o in GATE_OPTIONS}])
def test_gate_cli_uses_the_same_limits(flag: str, value: str) -> None:
    assert command_side(flag, value)[0] == cli_side("gate", flag, value)[0]


def test_every_option_is_documented_in_both_helps() -> None:
    run_help = render_help("run")
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    cli_help = sub.choices["run"].format_help()
    assert BY_NAME["run"].options == RUN_OPTIONS
    for opt in RUN_OPTIONS:
        assert f"`{opt.flag} {opt.metavar}`: {opt.help}" in run_help
        assert opt.flag in cli_help and opt.help.split(",")[0] in " ".join(cli_help.split())


def test_the_console_script_refuses_a_non_ascii_number() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "bot.cli", "run", "Qwen/Qwen3-8B", "--repo", "/nonexistent", "--tp", "²"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2 and "--tp must be a whole number written with the digits 0-9" in proc.stderr
    assert "Traceback" not in proc.stderr
