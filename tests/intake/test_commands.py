"""The `/adapt` grammar, from a table: commands, options, quotes, code, errors, help."""

from __future__ import annotations

import pytest

from bot.commands import COMMANDS, Command, CommandError, command_lines, parse_commands, parse_line
from bot.comments import render_help


@pytest.mark.parametrize(
    ("line", "name", "args"),
    [
        ("/adapt run", "run", {}),
        ("/adapt run --hardware a3 --tp 16", "run", {"hardware": "a3", "tp": 16}),
        ("/adapt run --max-model-len=32768", "run", {"max_model_len": 32768}),
        ("/adapt run --features aclgraph,mtp,aclgraph", "run", {"features": ["aclgraph", "mtp"]}),
        ("/adapt run --tp 1 --max-model-len 256", "run", {"tp": 1, "max_model_len": 256}),
        ("/adapt run --tp 64 --max-model-len 1048576", "run", {"tp": 64, "max_model_len": 1048576}),
        ("/adapt status", "status", {}),
        ("/adapt RERUN real-gate", "rerun", {"stage": "real-gate"}),
        ("/adapt rerun deliver", "rerun", {"stage": "deliver"}),
        ("/adapt cancel", "cancel", {}),
        ("/adapt help", "help", {}),
        ("/adapt help run", "help", {"command": "run"}),
    ],
)
def test_valid(line: str, name: str, args: dict[str, object]) -> None:
    parsed = parse_line(line)
    assert isinstance(parsed, Command), parsed
    assert parsed.name == name
    assert parsed.args == args


@pytest.mark.parametrize(
    ("line", "fragment", "meant"),
    [
        ("/adapt", "no subcommand", None),
        ("/adapt deploy", "unknown subcommand `deploy`", None),
        ("/adapt run --hardware a9", "must be one of a2, a3", "run"),
        ("/adapt run --tp 3", "power of two", "run"),
        ("/adapt run --tp 0", "power of two", "run"),
        ("/adapt run --tp 128", "power of two", "run"),
        ("/adapt run --tp x", "whole number", "run"),
        ("/adapt run --max-model-len 100", "between 256 and 1048576", "run"),
        ("/adapt run --max-model-len 2000000", "between 256 and 1048576", "run"),
        ("/adapt run --features warp-drive", "unknown feature", "run"),
        ("/adapt run --features ,", "comma-separated list", "run"),
        ("/adapt run --tp", "needs a value", "run"),
        ("/adapt run --tp 2 --tp 4", "given twice", "run"),
        ("/adapt run --model ../../etc/passwd", "unknown option `--model`", "run"),
        ("/adapt run extra", "unexpected argument", "run"),
        ("/adapt rerun", "missing <stage>", "rerun"),
        ("/adapt rerun everything", "not a stage", "rerun"),
        ("/adapt rerun a;rm -rf /", "unexpected argument", "rerun"),
        ("/adapt rerun a;rm", "not a stage", "rerun"),
        ("/adapt status now", "unexpected argument", "status"),
        ("/adapt help fly", "no command `fly`", "help"),
        ("/adapt help run status", "at most one", "help"),
    ],
)
def test_errors_say_what_was_wrong(line: str, fragment: str, meant: str | None) -> None:
    parsed = parse_line(line)
    assert isinstance(parsed, CommandError), parsed
    assert fragment in parsed.message
    assert parsed.name == meant


def test_only_lines_outside_code_and_quotes() -> None:
    body = "\n".join(
        [
            "Please try:",
            "/adapt run --tp 2",
            "```",
            "/adapt cancel",
            "```",
            "> /adapt rerun analyze",
            "~~~~",
            "/adapt status",
            "~~~~",
            "    /adapt help",
            "text /adapt run in the middle",
            "/adaptation is not a command",
            "  /adapt help run  ",
        ]
    )
    assert command_lines(body) == ["/adapt run --tp 2", "/adapt help run"]
    parsed = parse_commands(body)
    assert [p.name for p in parsed if isinstance(p, Command)] == ["run", "help"]


def test_unclosed_fence_hides_the_rest() -> None:
    assert command_lines("```\n/adapt run\n") == []


def test_help_is_generated_from_the_declarations() -> None:
    text = render_help()
    for spec in COMMANDS:
        assert spec.usage.replace("|", "\\|") in text  # pipes escaped inside the Markdown table
    one = render_help("run")
    for opt in next(c for c in COMMANDS if c.name == "run").options:
        assert opt.flag in one
    assert "real-gate" in render_help("rerun")
