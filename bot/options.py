"""Job options, declared once: `/adapt run` and the CLI (`adapt-bot run`, `adapt-bot gate`) parse
them with the same converters and limits, and `/adapt help` and `--help` show the same text.

Pure. Every numeric value is ASCII digits only (`str.isdigit` accepts `²` and `٣`, `int` accepts
`1_024` and ` +8`): a value that is not plain digits is refused with a message, never a crash.
"""

from __future__ import annotations

import argparse
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from runners.contracts import FEATURES, AdapterSpec

HARDWARE: tuple[str, ...] = ("a2", "a3")
TP_MAX = 64
MAX_MODEL_LEN_RANGE = (256, 1_048_576)
#: capacity steps (`--concurrency 16,32,64`): concurrent sequences tried, in rising order
CONCURRENCY_RANGE = (1, 4096)
CONCURRENCY_STEPS_MAX = 8

_DIGITS = re.compile(r"[0-9]{1,9}")  # ASCII only; 9 digits bound the int() work


class OptionError(ValueError):
    """An option value that is not allowed; the message names the allowed values."""


def _shown(v: str) -> str:
    return v[:40]


def ascii_int(flag: str, v: str) -> int:
    """`v` as a whole number written in ASCII digits, else OptionError naming the flag."""
    if not _DIGITS.fullmatch(v):
        raise OptionError(f"`{flag}` must be a whole number written with the digits 0-9 (got `{_shown(v)}`)")
    return int(v)


def _hardware(v: str) -> str:
    if v not in HARDWARE:
        raise OptionError(f"`--hardware` must be one of {', '.join(HARDWARE)} (got `{_shown(v)}`)")
    return v


def _tp(v: str) -> int:
    n = ascii_int("--tp", v)
    if not (1 <= n <= TP_MAX) or n & (n - 1):
        raise OptionError(f"`--tp` must be a power of two from 1 to {TP_MAX} (got {n})")
    return n


def _max_model_len(v: str) -> int:
    lo, hi = MAX_MODEL_LEN_RANGE
    n = ascii_int("--max-model-len", v)
    if not lo <= n <= hi:
        raise OptionError(f"`--max-model-len` must be between {lo} and {hi} (got {n})")
    return n


def _items(v: str) -> list[str]:
    return [x.strip() for x in v.split(",") if x.strip()]


def _features(v: str) -> list[str]:
    items = _items(v)
    if not items:
        raise OptionError(f"`--features` needs a comma-separated list from: {', '.join(FEATURES)}")
    bad = [x for x in items if x not in FEATURES]
    if bad:
        shown = ", ".join(f"`{_shown(x)}`" for x in bad[:5])
        raise OptionError(f"unknown feature(s) {shown}; choose from: {', '.join(FEATURES)}")
    return list(dict.fromkeys(items))


def _concurrency(v: str) -> list[int]:
    lo, hi = CONCURRENCY_RANGE
    items = _items(v)
    if not items:
        raise OptionError("`--concurrency` needs a comma-separated list of numbers, e.g. 16,32,64")
    if len(items) > CONCURRENCY_STEPS_MAX:
        raise OptionError(f"`--concurrency` takes at most {CONCURRENCY_STEPS_MAX} steps (got {len(items)})")
    steps = [ascii_int("--concurrency", x) for x in items]
    bad = [n for n in steps if not lo <= n <= hi]
    if bad:
        raise OptionError(f"`--concurrency` steps must be between {lo} and {hi} (got {bad[0]})")
    return sorted(set(steps))


#: `--candidate` bounds (GitHub's own: owner <= 39, repository name <= 100 characters)
CANDIDATE_REF_MAX = 200
CANDIDATE_PATH_MAX = 1024
_OWNER = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})")
_REPO_NAME = re.compile(r"[A-Za-z0-9._-]{1,100}")
_REF = re.compile(rf"[A-Za-z0-9._/-]{{1,{CANDIDATE_REF_MAX}}}")
CANDIDATE_USAGE = (
    "`--candidate` takes `<owner>/<repo>@<ref>` (a branch, tag or commit of a GitHub repo), or `this` "
    "in a comment on a pull request that links the issue"
)


def candidate_spec(repo: str, ref: str, *, local: bool = False) -> dict[str, Any]:
    """A `--candidate` value as written, checked but not resolved, as plain data (intents are stored
    as JSON): the control plane (or the CLI) pins `ref` to a commit SHA before any runner sees it
    (runners.contracts.Candidate)."""
    return {"repo": repo, "ref": ref, "local": local}


def _ref(v: str, ref: str) -> str:
    bad = (
        not _REF.fullmatch(ref)
        or ref.startswith(("-", "/"))
        or ref.endswith(("/", ".", ".lock"))
        or ".." in ref
        or "//" in ref
    )
    if bad:
        raise OptionError(
            f"{CANDIDATE_USAGE}; the ref may use A-Z a-z 0-9 . _ / - (no leading `-`, no `..`, at most "
            f"{CANDIDATE_REF_MAX} characters) (got `{_shown(v)}`)"
        )
    return ref


#: `--candidate this` on a pull request: the PR's own head (bot.github.pin_pull_candidate)
CANDIDATE_THIS = "this"


def _candidate(v: str) -> dict[str, Any]:
    """`owner/repo@ref`, GitHub's name rules, or `this` (on a PR); anything else gets the usage."""
    if v == CANDIDATE_THIS:
        return {"this": True, "local": False}
    where, at, ref = v.rpartition("@")
    owner, slash, name = where.partition("/")
    named = bool(slash) and bool(_OWNER.fullmatch(owner)) and bool(_REPO_NAME.fullmatch(name))
    if not at or not named or name in {".", ".."}:
        raise OptionError(f"{CANDIDATE_USAGE} (got `{_shown(v)}`)")
    return candidate_spec(f"{owner}/{name}", _ref(v, ref))


def candidate_local(v: str) -> dict[str, Any]:
    """The CLI's form: also `/absolute/path/to/git/repo@ref` (a local repository; never from GitHub)."""
    if v == CANDIDATE_THIS:
        raise OptionError("`--candidate this` works in a comment on a pull request, not on the CLI")
    if not v.startswith("/"):
        return _candidate(v)
    where, at, ref = v.rpartition("@")
    if not at or not where or len(where) > CANDIDATE_PATH_MAX or "\x00" in where:
        raise OptionError(f"{CANDIDATE_USAGE}, or `/path/to/git/repo@<ref>` on the CLI (got `{_shown(v)}`)")
    return candidate_spec(where, _ref(v, ref), local=True)


@dataclass(frozen=True)
class Option:
    """One option: its flag, where it lands (`JobOptions` field), its text and its converter."""

    flag: str  # "--tp"
    dest: str  # "tp" (a JobOptions field)
    metavar: str
    help: str
    convert: Callable[[str], Any]

    def argparse_type(self, v: str) -> Any:
        """The converter for argparse: the same check, reported as argparse's usage error (exit 2)."""
        try:
            return self.convert(v)
        except OptionError as exc:
            raise argparse.ArgumentTypeError(str(exc).replace("`", "")) from None

    def add_to(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            self.flag,
            dest=self.dest,
            type=self.argparse_type,
            default=None,
            metavar=self.metavar,
            help=self.help,
        )


HARDWARE_OPT = Option("--hardware", "hardware", "a2|a3", "Atlas A2 or A3 runner pool", _hardware)
TP = Option("--tp", "tp", "N", f"tensor parallel size, a power of two 1..{TP_MAX}", _tp)
MAX_MODEL_LEN = Option(
    "--max-model-len",
    "max_model_len",
    "N",
    f"context length to serve, {MAX_MODEL_LEN_RANGE[0]}..{MAX_MODEL_LEN_RANGE[1]}",
    _max_model_len,
)
FEATURES_OPT = Option(
    "--features",
    "features",
    "LIST",
    f"features to probe IN ADDITION to the baseline (every one that applies and exists in the running "
    f"version is probed anyway), comma list from {', '.join(FEATURES)}",
    _features,
)
CONCURRENCY = Option(
    "--concurrency",
    "capacity_steps",
    "N,N,...",
    f"capacity steps: concurrent sequences to try, up to {CONCURRENCY_STEPS_MAX} values "
    f"{CONCURRENCY_RANGE[0]}..{CONCURRENCY_RANGE[1]}",
    _concurrency,
)

CANDIDATE = Option(
    "--candidate",
    "candidate",
    "OWNER/REPO@REF",
    "a contributor branch (e.g. a vLLM plugin that registers the architecture) installed for this job "
    "only; pinned to its commit SHA; needs the repo's candidate permission (default maintain)",
    _candidate,
)
#: the CLI's `--candidate`: the same grammar, plus a local repository path (`/path/to/repo@ref`)
CANDIDATE_CLI = Option(
    CANDIDATE.flag, CANDIDATE.dest, "OWNER/REPO@REF|/PATH@REF", CANDIDATE.help, candidate_local
)

#: the adapter step (runners.adapter) on the CLI; GitHub jobs take it from the repo config key
#: `adapter:` only (a comment may never name a command the runner executes)
ADAPTER_USAGE = (
    "`--adapter-command` takes a JSON list of strings, the argv of the command "
    """(e.g. '["my-agent", "--fix"]')"""
)
ADAPTER_ARGV_MAX = 64


def _adapter_command(v: str) -> list[str]:
    """A JSON argv list (never a shell string): at least the program, strings only."""
    try:
        argv = json.loads(v)
    except ValueError:
        raise OptionError(f"{ADAPTER_USAGE} (got `{_shown(v)}`: not a JSON list)") from None
    if not isinstance(argv, list):
        raise OptionError(f"{ADAPTER_USAGE} (got `{_shown(v)}`: not a JSON list)")
    if not argv or len(argv) > ADAPTER_ARGV_MAX:
        raise OptionError(f"{ADAPTER_USAGE}: at least the program, at most {ADAPTER_ARGV_MAX} elements")
    if not all(isinstance(a, str) for a in argv):
        raise OptionError(f"{ADAPTER_USAGE}: its elements must all be strings")
    if not argv[0].strip():
        raise OptionError(f"{ADAPTER_USAGE}: the program (first element) is empty")
    return argv


def _positive_float(flag: str, v: str) -> float:
    if not re.fullmatch(r"[0-9]{1,6}(\.[0-9]{1,6})?", v) or float(v) <= 0:
        raise OptionError(f"`{flag}` must be a positive number like 0.5 (got `{_shown(v)}`)")
    return float(v)


def adapter_spec(
    command: list[str] | None, attempts: str | None, timeout_s: str | None, device_hours: str | None
) -> AdapterSpec | None:
    """The CLI's adapter flags as one spec (None without `--adapter-command`); OptionError names
    the flag and its allowed values."""
    if command is None:
        if any(x is not None for x in (attempts, timeout_s, device_hours)):
            raise OptionError(
                "the adapter bounds need `--adapter-command` (the adapter step is off without it)"
            )
        return None
    values: dict[str, Any] = {"command": command}
    if attempts is not None:
        values["attempts"] = ascii_int("--adapter-attempts", attempts)
    if timeout_s is not None:
        values["timeout_s"] = ascii_int("--adapter-timeout", timeout_s)
    if device_hours is not None:
        values["device_hours"] = _positive_float("--adapter-device-hours", device_hours)
    try:
        return AdapterSpec.model_validate(values)
    except ValidationError as exc:
        err = exc.errors()[0]
        flag = {"attempts": "--adapter-attempts", "timeout_s": "--adapter-timeout"}.get(
            str(err["loc"][0]), "--adapter-" + str(err["loc"][0]).replace("_", "-")
        )
        raise OptionError(f"`{flag}`: {err['msg']}") from None


ADAPTER_COMMAND = Option(
    "--adapter-command",
    "adapter_command",
    "JSON-ARGV",
    "the adapter step (off by default): a command run on the runner when a gate fails, as a JSON argv "
    "list; its git diff of the implementation checkout is re-gated from the dummy gate",
    _adapter_command,
)
#: the bounds are plain strings here, checked together by `adapter_spec`
ADAPTER_ATTEMPTS = Option(
    "--adapter-attempts", "adapter_attempts", "N", "adapter attempts (1..5, default 2)", str
)
ADAPTER_TIMEOUT = Option(
    "--adapter-timeout", "adapter_timeout", "S", "seconds per adapter attempt (default 900)", str
)
ADAPTER_DEVICE_HOURS = Option(
    "--adapter-device-hours",
    "adapter_device_hours",
    "H",
    "device-hours the adapter's re-gates may use (default 0.5)",
    str,
)
#: `adapt-bot run` only
ADAPTER_CLI_OPTIONS: tuple[Option, ...] = (
    ADAPTER_COMMAND,
    ADAPTER_ATTEMPTS,
    ADAPTER_TIMEOUT,
    ADAPTER_DEVICE_HOURS,
)

#: `/adapt run` and `adapt-bot run`
RUN_OPTIONS: tuple[Option, ...] = (HARDWARE_OPT, TP, MAX_MODEL_LEN, FEATURES_OPT, CONCURRENCY, CANDIDATE)
#: `adapt-bot gate` (one stage on this machine: no pool choice, no feature selection)
GATE_OPTIONS: tuple[Option, ...] = (TP, MAX_MODEL_LEN, CONCURRENCY)


def add_arguments(parser: argparse.ArgumentParser, options: tuple[Option, ...]) -> None:
    for opt in options:
        opt.add_to(parser)
