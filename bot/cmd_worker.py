"""Placeholder until this subcommand lands (see the issue that owns it)."""

from __future__ import annotations

import argparse
import sys

HELP = "(not built yet)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("rest", nargs="*")


def main(args: argparse.Namespace) -> int:
    print("this subcommand is not built yet", file=sys.stderr)
    return 2
