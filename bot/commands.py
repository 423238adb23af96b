"""`/adapt` commands: declared once as data; the parser and `/adapt help` are generated from it.

Pure: text in, parsed commands (or errors that say what was wrong) out. A command is a line that
starts with `/adapt`, outside fenced code blocks and `>` quotes. Options are validated here, before
anything is queued, so a bad value never reaches a runner.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from runners.contracts import FEATURES, STAGES

PREFIX = "/adapt"
MAX_LINE = 500
TP_MAX = 64
MAX_MODEL_LEN_RANGE = (256, 1_048_576)
HARDWARE = ("a2", "a3")


class OptionError(ValueError):
    """An option value that is not allowed; the message names the allowed values."""


def _hardware(v: str) -> str:
    if v not in HARDWARE:
        raise OptionError(f"`--hardware` must be one of {', '.join(HARDWARE)} (got `{v[:40]}`)")
    return v


def _tp(v: str) -> int:
    if not v.isdigit():
        raise OptionError(f"`--tp` must be a whole number (got `{v[:40]}`)")
    n = int(v)
    if not (1 <= n <= TP_MAX) or n & (n - 1):
        raise OptionError(f"`--tp` must be a power of two from 1 to {TP_MAX} (got {n})")
    return n


def _max_model_len(v: str) -> int:
    lo, hi = MAX_MODEL_LEN_RANGE
    if not v.isdigit():
        raise OptionError(f"`--max-model-len` must be a whole number (got `{v[:40]}`)")
    n = int(v)
    if not lo <= n <= hi:
        raise OptionError(f"`--max-model-len` must be between {lo} and {hi} (got {n})")
    return n


def _features(v: str) -> list[str]:
    items = [x.strip() for x in v.split(",") if x.strip()]
    if not items:
        raise OptionError(f"`--features` needs a comma-separated list from: {', '.join(FEATURES)}")
    bad = [x for x in items if x not in FEATURES]
    if bad:
        shown = ", ".join(f"`{x[:40]}`" for x in bad[:5])
        raise OptionError(f"unknown feature(s) {shown}; choose from: {', '.join(FEATURES)}")
    return list(dict.fromkeys(items))


@dataclass(frozen=True)
class OptionSpec:
    flag: str  # "--tp"
    dest: str  # "tp"
    metavar: str
    help: str
    convert: Callable[[str], Any]


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
    options: tuple[OptionSpec, ...] = ()
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
        "then opens one pull request. Options override the repository defaults.",
        needs_permission=True,
        options=(
            OptionSpec("--hardware", "hardware", "a2|a3", "Atlas A2 or A3 runner pool", _hardware),
            OptionSpec("--tp", "tp", "N", f"tensor parallel size, a power of two 1..{TP_MAX}", _tp),
            OptionSpec(
                "--max-model-len",
                "max_model_len",
                "N",
                f"context length to serve, {MAX_MODEL_LEN_RANGE[0]}..{MAX_MODEL_LEN_RANGE[1]}",
                _max_model_len,
            ),
            OptionSpec("--features", "features", "LIST", f"comma list from {', '.join(FEATURES)}", _features),
        ),
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


_LINE = re.compile(r"^\s*/adapt(?:\s+(?P<rest>.*))?$")


def command_lines(text: str) -> list[str]:
    """Lines that start with /adapt, outside fenced code and `>` quotes (CommonMark fences)."""
    out: list[str] = []
    fence: str | None = None
    for raw in (text or "").splitlines():
        stripped = raw.strip()
        m = re.match(r"^(`{3,}|~{3,})", stripped)
        if fence is None and m:
            fence = m.group(1)
            continue
        if fence is not None:
            if stripped.startswith(fence) and set(stripped) <= set(fence[0]):
                fence = None
            continue
        if stripped.startswith(">") or raw.startswith("    "):  # quote or indented code block
            continue
        if _LINE.match(stripped) and (stripped == PREFIX or stripped[len(PREFIX)].isspace()):
            out.append(stripped[:MAX_LINE])
    return out


def parse_line(line: str) -> Command | CommandError:
    m = _LINE.match(line)
    rest = (m.group("rest") if m else "") or ""
    tokens = rest.split()
    if not tokens:
        return CommandError(line, "no subcommand given")
    name, *tokens = tokens
    spec = BY_NAME.get(name.lower())
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


def _bind_positional(
    line: str, spec: CommandSpec, positional: list[str], args: dict[str, Any]
) -> Command | CommandError:
    if spec.name == "help":
        if len(positional) > 1:
            return CommandError(line, "`help` takes at most one command name", spec.name)
        if positional:
            topic = positional[0].lower()
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


def parse_commands(text: str) -> list[Command | CommandError]:
    """Every `/adapt` line of a comment, in order, parsed or explained."""
    return [parse_line(line) for line in command_lines(text)]
