"""The `/adapt` grammar, from a table: commands, options, quotes, code, errors, help; and the hostile
cases of issue 12 (HTML comments, line separators, non-ASCII digits, 120 commands, edits), checked
against GitHub's own renderer (cmark-gfm) so the parser never runs a line GitHub does not show."""

from __future__ import annotations

import random
from html.parser import HTMLParser

import cmarkgfm
import pytest

from bot.commands import (
    CHECK_ACTIONS,
    COMMANDS,
    MAX_COMMANDS_PER_COMMENT,
    CheckAction,
    Command,
    CommandError,
    command_lines,
    new_lines,
    parse_commands,
    parse_comment,
    parse_line,
    split_lines,
)
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


# -- hostile input (issue 12): only what GitHub shows counts; nothing crashes ----------------------
#: characters Python's str.splitlines() breaks at but GitHub (CommonMark) does not
NOT_LINE_BREAKS = ["\u2028", "\u2029", "\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x85"]


class _ShownLines(HTMLParser):
    """Lines of top-level paragraphs in GitHub's rendering (cmark-gfm), outside quotes and code."""

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.paragraphs: list[str] = []

    def handle_starttag(self, tag: str, attrs: object) -> None:
        if tag in ("p", "blockquote", "pre", "code", "li"):
            self.stack.append(tag)
            if tag == "p":
                self.paragraphs.append("")

    def handle_endtag(self, tag: str) -> None:
        if self.stack and self.stack[-1] == tag:
            self.stack.pop()

    def handle_startendtag(self, tag: str, attrs: object) -> None:
        if tag == "br" and self.stack == ["p"]:
            self.paragraphs[-1] += "\n"

    def handle_data(self, data: str) -> None:
        if self.stack == ["p"]:
            self.paragraphs[-1] += data


def github_shows(text: str) -> list[str]:
    """`/adapt` lines as GitHub renders the comment (its own cmark-gfm; comments keep hard breaks)."""
    html = cmarkgfm.github_flavored_markdown_to_html(text)
    parser = _ShownLines()
    parser.feed(html)
    out = []
    for para in parser.paragraphs:
        for line in para.split("\n"):
            if line.strip(" ").startswith("/adapt"):
                out.append(line.strip(" "))
    return out


HOSTILE_BODIES = [
    # (body, the lines that must run)
    ("<!-- /adapt run -->", []),
    ("<!--\n/adapt run\n-->", []),
    ("<!--\r\n/adapt run\r\n-->\r\n/adapt status", ["/adapt status"]),
    ("text <!--\n/adapt run\n-->\n\n/adapt status", ["/adapt status"]),
    ("/adapt status <!-- --tp 8 -->", ["/adapt status"]),
    ("/adapt run <!-- hidden --> --tp 8", ["/adapt run  --tp 8"]),
    ("<!-- never closed\n/adapt run\n/adapt cancel", []),
    ("```\n<!--\n```\n/adapt status", ["/adapt status"]),  # a comment opener inside code hides nothing
    ("> quoted\n/adapt run", []),  # lazy continuation: still inside the quote
    ("> quoted\n\n/adapt run", ["/adapt run"]),
    ("\t/adapt run", []),
    ("    /adapt run", []),
    ("   /adapt status", ["/adapt status"]),
    ("/adapt status\r\n/adapt help", ["/adapt status", "/adapt help"]),
    ("/adapt\u00a0run", []),  # a no-break space does not separate the prefix
    ("`/adapt run`", []),
    ("- /adapt run", []),
    ("<pre>\n/adapt run\n</pre>\n\n/adapt status", ["/adapt status"]),
    ("<PRE class=x>\n/adapt run\n</pre>", []),
    ("<textarea>\n/adapt run\n</textarea>", []),
    ("<script>\n/adapt run\n</script>", []),
    ("<details>\n\n/adapt status\n\n</details>", ["/adapt status"]),  # shown when opened
    *[(f"see below{sep}/adapt run", []) for sep in NOT_LINE_BREAKS],
    *[(f"{sep}/adapt run", []) for sep in NOT_LINE_BREAKS],
]


@pytest.mark.parametrize(("body", "expected"), HOSTILE_BODIES, ids=[repr(b)[:40] for b, _ in HOSTILE_BODIES])
def test_only_lines_github_shows_are_commands(body: str, expected: list[str]) -> None:
    assert command_lines(body) == expected
    # never run a line GitHub does not show as a line starting with /adapt
    shown = github_shows(body)
    for line in command_lines(body):
        assert any(s.split() == line.split() for s in shown), (line, shown)


@pytest.mark.parametrize("sep", NOT_LINE_BREAKS)
def test_lines_end_only_at_newline(sep: str) -> None:
    text = f"/adapt status{sep}/adapt run"
    assert len(text.splitlines()) == 2  # what the old parser did
    assert split_lines(text) == [text]
    (parsed,) = parse_commands(text)
    assert not (isinstance(parsed, Command) and parsed.name == "run")


@pytest.mark.parametrize(
    "value",
    ["²", "٣", "１６", "1_6", "+8", "-2", "16\u200b", "0x10", "1e3", "", "9" * 40, "16.0", "\u0660"],
)
def test_numeric_options_take_ascii_digits_only(value: str) -> None:
    for flag in ("--tp", "--max-model-len", "--concurrency"):
        parsed = parse_line(f"/adapt run {flag}={value}")
        assert isinstance(parsed, CommandError), (flag, value, parsed)
        assert flag in parsed.message and parsed.name == "run"


def test_a_bad_value_never_drops_the_other_commands() -> None:
    parsed = parse_commands("/adapt run --tp ²\n/adapt status\n/adapt run --max-model-len ٣٢")
    assert [type(p).__name__ for p in parsed] == ["CommandError", "Command", "CommandError"]
    assert "digits 0-9" in parsed[0].message  # type: ignore[union-attr]


def test_fuzzed_comments_never_raise() -> None:
    rng = random.Random(12)
    alphabet = ["/adapt ", "run", " --tp ", " --max-model-len=", "²", "\u2028", "\r", "\n", "<!--"]
    alphabet += ["-->", "`", "```", "> ", "\t", "=", "--", "16", "a2", ",", "\x85", "status", "help "]
    for _ in range(2000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 30)))
        for p in parse_comment(text).parsed:
            assert isinstance(p, (Command, CommandError))


def test_a_line_too_long_is_refused_not_cut() -> None:
    line = "/adapt run --tp 16" + " " * 480 + "--max-model-len 4096"
    (parsed,) = parse_commands(line)
    assert isinstance(parsed, CommandError) and "longer than 500" in parsed.message


def test_at_most_a_few_commands_per_comment() -> None:
    body = "\n".join(f"/adapt run --tp {2 ** (i % 7)}" if i % 2 else "/adapt status" for i in range(120))
    found = parse_comment(body)
    assert len(found.parsed) == MAX_COMMANDS_PER_COMMENT == 3
    assert len(found.refused) == 117 and found.total == 120
    assert len(parse_comment(body, limit=5).parsed) == 5


def test_an_edit_runs_only_the_lines_it_added() -> None:
    before = "/adapt status\n/adapt run --tp 2"
    after = "/adapt status\n/adapt run --tp 2\n/adapt run --tp 2\n/adapt cancel"
    assert new_lines(command_lines(after), command_lines(before)) == ["/adapt run --tp 2", "/adapt cancel"]
    found = parse_comment(after, before=before)
    assert [p.line for p in found.parsed] == ["/adapt run --tp 2", "/adapt cancel"]
    assert parse_comment("/adapt status", before="/adapt status").parsed == []
    # a typo fixed by an edit is a new line
    assert [p.line for p in parse_comment("/adapt run", before="/adpat run").parsed] == ["/adapt run"]


def test_check_run_buttons_are_declared_once() -> None:
    for action in CHECK_ACTIONS:
        assert action.command in ("rerun", "cancel")
        assert (action.stage is None) == (action.command == "cancel")
    with pytest.raises(ValueError, match="not `cancel` or `rerun-<stage>`"):
        CheckAction("Deploy", "Deploy it", "deploy")
    with pytest.raises(ValueError, match="GitHub's limits"):
        CheckAction("A label that is far too long", "d", "cancel")
