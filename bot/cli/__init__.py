"""`adapt-bot` console script.

Each subcommand lives in its own module exposing `HELP`, `add_arguments(parser)` and
`main(args) -> int`; this file only lists them, so adding a command is one line here.
Subcommand modules must not do work at import time.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

#: name -> module implementing it
SUBCOMMANDS: dict[str, str] = {
    "serve": "bot.cli.serve",
    "worker": "bot.cli.worker",
    "run": "bot.cli.run",
    "demo": "bot.cli.demo",
    "analyze": "bot.cli.analyze",
    "gate": "bot.cli.gate",
    "redis-acl": "bot.cli.redis_acl",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="adapt-bot",
        description="Adapt models to vllm-ascend: webhook service, runner workers, local pipeline.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, module_name in SUBCOMMANDS.items():
        module = importlib.import_module(module_name)
        p = sub.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(p)
        p.set_defaults(_module=module)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args._module.main(args))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
