"""`/adapt` commands and check-run buttons: declared once as data; the parser, `/adapt help` and the
buttons the delivery puts on check runs are generated from it.

Pure: text in, parsed commands (or errors that say what was wrong) out. A command is a line that
GitHub *shows* starting with `/adapt`: not inside fenced or indented code, `>` quotes (with their
lazy continuation lines) or HTML comments `<!-- -->`. Lines end only at `\n` / `\r\n` — not at
U+2028/U+2029, \x0b, \x0c, \x1c-\x1e or \x85, which `str.splitlines` treats as line breaks but
GitHub does not. At most `MAX_COMMANDS_PER_COMMENT` commands of one comment run; the rest are
refused together. Options are validated here (the grammar is `bot.options`, shared with the CLI),
before anything is queued, so a bad value never reaches a runner and never raises.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from bot.options import RUN_OPTIONS, Option, OptionError
from runners.contracts import STAGES

PREFIX = "/adapt"
MAX_LINE = 500
#: Commands of one comment that run; the others get one reply saying they were not run.
MAX_COMMANDS_PER_COMMENT = 3


@dataclass(frozen=True)
class ArgSpec:
    name: str
    help: str
    choices: tuple[str, ...]
    optional: bool = False


@dataclass(frozen=True)
class CommandSpec:
    name: str
    summary: str
    help: str
    #: Minimum repository permission ("write" means the repo's configured level) or None for anyone.
    needs_permission: bool
    args: tuple[ArgSpec, ...] = ()
    options: tuple[Option, ...] = ()
    examples: tuple[str, ...] = ()

    @property
    def usage(self) -> str:
        parts = [PREFIX, self.name]
        parts += [f"[<{a.name}>]" if a.optional else f"<{a.name}>" for a in self.args]
        parts += [f"[{o.flag} {o.metavar}]" for o in self.options]
        return " ".join(parts)


RERUN_STAGES: tuple[str, ...] = STAGES

COMMANDS: tuple[CommandSpec, ...] = (
    CommandSpec(
        name="run",
        summary="start the adaptation job for the model named in this issue",
        help="Runs analysis, dummy gate, real gate, feature probes, capacity, accuracy and artifacts, "
        "then opens one pull request. Options override the repository defaults; `adapt-bot run` "
        "on the command line takes the same options with the same limits.",
        needs_permission=True,
        options=RUN_OPTIONS,
        examples=("/adapt run", "/adapt run --hardware a3 --tp 16 --max-model-len 32768"),
    ),
    CommandSpec(
        name="status",
        summary="refresh the status comment and point to it",
        help="Shows the job's state, the stages that passed and the one running.",
        needs_permission=False,
        examples=("/adapt status",),
    ),
    CommandSpec(
        name="rerun",
        summary="rerun one stage and the stages after it",
        help="Reuses the stored results of the stages before it and updates the same status comment "
        "and pull request.",
        needs_permission=True,
        args=(ArgSpec("stage", "stage to rerun", RERUN_STAGES),),
        examples=("/adapt rerun real-gate",),
    ),
    CommandSpec(
        name="cancel",
        summary="stop the running job",
        help="Signals the running stage (its model server is stopped) and marks the job cancelled.",
        needs_permission=True,
        examples=("/adapt cancel",),
    ),
    CommandSpec(
        name="help",
        summary="list the commands, or explain one",
        help="`/adapt help <command>` shows one command's options.",
        needs_permission=False,
        args=(ArgSpec("command", "command to explain", (), optional=True),),
        examples=("/adapt help", "/adapt help run"),
    ),
)

BY_NAME: dict[str, CommandSpec] = {c.name: c for c in COMMANDS}


# -- check-run buttons ---------------------------------------------------------------------------
@dataclass(frozen=True)
class CheckAction:
    """A button on the bot's check runs. Its identifier IS the command it sends: `cancel`, or
    `rerun-<stage>`; a click comes back as `check_run.requested_action` with that identifier.
    GitHub's limits: label <= 20, description <= 40, identifier <= 20 characters."""

    label: str
    description: str
    identifier: str

    def __post_init__(self) -> None:
        if not (
            0 < len(self.label) <= 20 and 0 < len(self.description) <= 40 and 0 < len(self.identifier) <= 20
        ):
            raise ValueError(f"check-run action exceeds GitHub's limits: {self}")
        if _button_intent(self.identifier) is None:
            raise ValueError(f"check-run action {self.identifier!r} is not `cancel` or `rerun-<stage>`")

    @property
    def command(self) -> str:
        return _button_intent(self.identifier)[0]  # type: ignore[index]

    @property
    def stage(self) -> str | None:
        return _button_intent(self.identifier)[1]  # type: ignore[index]


def _button_intent(identifier: str) -> tuple[str, str | None] | None:
    if identifier == "cancel":
        return ("cancel", None)
    stage = identifier.removeprefix("rerun-")
    if stage != identifier and stage in RERUN_STAGES:
        return ("rerun", stage)
    return None


RERUN_DUMMY = CheckAction("Rerun dummy gate", "Run the dummy-weight gate again", "rerun-dummy-gate")
RERUN_REAL = CheckAction("Rerun real gate", "Run the real-weight gate again", "rerun-real-gate")
RERUN_ACCURACY = CheckAction("Rerun accuracy", "Run the accuracy evaluation again", "rerun-accuracy")
CANCEL = CheckAction("Cancel", "Cancel this adaptation job", "cancel")
#: Every button the bot puts on check runs; a click is accepted only for one of these.
CHECK_ACTIONS: tuple[CheckAction, ...] = (RERUN_DUMMY, RERUN_REAL, RERUN_ACCURACY, CANCEL)
CHECK_ACTION_BY_ID: dict[str, CheckAction] = {a.identifier: a for a in CHECK_ACTIONS}


# -- parsing -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Command:
    name: str
    line: str
    args: dict[str, Any] = field(default_factory=dict)

    @property
    def spec(self) -> CommandSpec:
        return BY_NAME[self.name]


@dataclass(frozen=True)
class CommandError:
    line: str
    message: str
    #: The subcommand the user meant (None when unknown): the reply shows its usage, else all.
    name: str | None = None


Parsed = Command | CommandError

#: GitHub's line endings. NOT str.splitlines: it also splits at \x0b \x0c \x1c-\x1e \x85 U+2028 U+2029.
_LINE_END = re.compile(r"\r?\n")
_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
_WS = re.compile(r"[ \t]+")  # ASCII blanks only: other "whitespace" is part of a token
_CODE_SPAN = re.compile(r"(`+).*?\1")
_CLOSED_COMMENT = re.compile(r"<!--.*?-->", re.S)
#: CommonMark HTML blocks of type 1: shown verbatim (<pre>, <textarea>) or not at all
_RAW_BLOCK = re.compile(r"^ {0,3}<(pre|script|style|textarea)(?=[\s>]|$)", re.I)
_RAW_BLOCK_END = re.compile(r"</(pre|script|style|textarea)>", re.I)


def split_lines(text: str) -> list[str]:
    """Lines as GitHub breaks them: at `\n` and `\r\n` only."""
    return _LINE_END.split(text or "")


def _indent_ok(raw: str) -> bool:
    """At most 3 leading spaces and no tab: 4 spaces (or a tab) make an indented code block."""
    lead = len(raw) - len(raw.lstrip(" \t"))
    return "\t" not in raw[:lead] and lead <= 3


def command_lines(text: str) -> list[str]:
    """The `/adapt` lines GitHub shows as such, in order.

    Hidden or literal text never counts: fenced code (CommonMark fences), indented code, `>`
    quotes and the lines that continue a quote's paragraph (CommonMark's lazy continuation),
    HTML comments (also over several lines; an unclosed `<!--` hides the rest), `<pre>`,
    `<textarea>`, `<script>` and `<style>` blocks. Where GitHub's rendering is ambiguous this errs
    on the side of not running.
    """
    out: list[str] = []
    fence: str | None = None
    in_comment = False
    in_raw = False  # inside an HTML block of type 1, until the line with its end tag
    quoting = False  # the previous line was (a lazy continuation of) a quote
    for raw in split_lines(text):
        if fence is not None:
            stripped = raw.strip(" \t")
            if stripped.startswith(fence) and set(stripped) <= set(fence[0]):
                fence = None
            continue
        if in_comment:
            if "-->" in raw:
                in_comment = False  # what follows the close on this line is not a command
            continue
        if in_raw or _RAW_BLOCK.match(raw):
            in_raw = not _RAW_BLOCK_END.search(raw)
            quoting = False
            continue
        m = _FENCE.match(raw)
        if m:
            fence, quoting = m.group(1), False
            continue
        stripped = raw.strip(" \t")
        if not stripped:
            quoting = False
            continue
        # HTML comments: drop the closed ones, an unclosed one hides everything after it
        visible = _CLOSED_COMMENT.sub("", raw)
        if "<!--" in _CODE_SPAN.sub("", visible):
            in_comment = True
            visible = visible[: visible.index("<!--")]
        if stripped.startswith(">") or quoting:
            quoting = True
            continue
        if not _indent_ok(raw) or not raw.lstrip(" ").startswith(PREFIX):
            continue  # a command starts the line as written (a comment before it hides it)
        line = visible.strip(" \t")
        if line == PREFIX or (line.startswith(PREFIX) and line[len(PREFIX)] in " \t"):
            out.append(line[: MAX_LINE + 1])
    return out


def new_lines(lines: list[str], before: list[str]) -> list[str]:
    """`lines` minus those already in `before` (as a multiset), in order: what an edit added."""
    left: dict[str, int] = {}
    for line in before:
        left[line] = left.get(line, 0) + 1
    out = []
    for line in lines:
        if left.get(line, 0):
            left[line] -= 1
        else:
            out.append(line)
    return out


def parse_line(line: str) -> Parsed:
    """One `/adapt` line -> Command or CommandError; never raises."""
    try:
        return _parse_line(line)
    except Exception:  # a grammar bug must not drop the comment's other commands
        return CommandError(line[:MAX_LINE], "this command could not be read")


def _parse_line(line: str) -> Parsed:
    if len(line) > MAX_LINE:
        return CommandError(line[:MAX_LINE], f"the line is longer than {MAX_LINE} characters")
    rest = line.strip(" \t")[len(PREFIX) :].strip(" \t")
    tokens = _WS.split(rest) if rest else []
    if not tokens:
        return CommandError(line, "no subcommand given")
    name, *tokens = tokens
    spec = BY_NAME.get(name.lower() if name.isascii() else name)
    if spec is None:
        return CommandError(line, f"unknown subcommand `{name[:40]}`")
    args: dict[str, Any] = {}
    positional: list[str] = []
    opts = {o.flag: o for o in spec.options}
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        if tok.startswith("--"):
            flag, eq, value = tok.partition("=")
            opt = opts.get(flag)
            if opt is None:
                allowed = ", ".join(opts) or "none"
                return CommandError(line, f"unknown option `{flag[:40]}` (options: {allowed})", spec.name)
            if not eq:
                i += 1
                if i >= len(tokens) or tokens[i].startswith("--"):
                    return CommandError(line, f"`{flag}` needs a value ({opt.metavar})", spec.name)
                value = tokens[i]
            if opt.dest in args:
                return CommandError(line, f"`{flag}` given twice", spec.name)
            try:
                args[opt.dest] = opt.convert(value)
            except OptionError as exc:
                return CommandError(line, str(exc), spec.name)
        else:
            positional.append(tok)
        i += 1
    return _bind_positional(line, spec, positional, args)


def _bind_positional(line: str, spec: CommandSpec, positional: list[str], args: dict[str, Any]) -> Parsed:
    if spec.name == "help":
        if len(positional) > 1:
            return CommandError(line, "`help` takes at most one command name", spec.name)
        if positional:
            topic = positional[0].lower() if positional[0].isascii() else positional[0]
            if topic not in BY_NAME:
                return CommandError(line, f"no command `{topic[:40]}` to explain", spec.name)
            args["command"] = topic
        return Command(spec.name, line, args)
    if len(positional) > len(spec.args):
        extra = " ".join(positional[len(spec.args) :])[:60]
        return CommandError(line, f"unexpected argument `{extra}`", spec.name)
    for arg, value in zip(spec.args, positional, strict=False):
        if arg.choices and value not in arg.choices:
            return CommandError(
                line, f"`{value[:40]}` is not a {arg.name}; choose from: {', '.join(arg.choices)}", spec.name
            )
        args[arg.name] = value
    missing = [a.name for a in spec.args[len(positional) :]]
    if missing:
        return CommandError(line, f"missing <{missing[0]}>", spec.name)
    return Command(spec.name, line, args)


@dataclass(frozen=True)
class CommentCommands:
    """What one comment (or one edit of it) asks: the commands that run, and the lines refused
    because the comment held more than the limit."""

    parsed: list[Parsed]
    refused: list[str]

    @property
    def total(self) -> int:
        return len(self.parsed) + len(self.refused)


def parse_comment(
    text: str, *, before: str | None = None, limit: int = MAX_COMMANDS_PER_COMMENT
) -> CommentCommands:
    """The commands of a comment, capped at `limit`; with `before` (an edit's previous body) only
    the lines the edit added."""
    lines = command_lines(text)
    if before is not None:
        lines = new_lines(lines, command_lines(before))
    limit = max(0, limit)
    return CommentCommands([parse_line(line) for line in lines[:limit]], lines[limit:])


def parse_commands(text: str) -> list[Parsed]:
    """Every `/adapt` line of a comment, in order, parsed or explained (no cap)."""
    return [parse_line(line) for line in command_lines(text)]
