"""`adapt-bot redis-acl`: password files and the aclfile for the trust boundary (bot.redis_acl)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bot.redis_acl import CONTROL_USER, password_file, render, runner_user
from runners.host import keys

HELP = "write Redis ACL users (control plane + one per runner pool) and their password files"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--pools", required=True, help="comma-separated runner pools, e.g. cpu,a2-8,a3-16")
    parser.add_argument("--secrets", type=Path, required=True, help="directory for the password files")
    parser.add_argument("--out", type=Path, default=None, help="write the aclfile here (default: stdout)")


def main(args: argparse.Namespace) -> int:
    pools = [p.strip() for p in args.pools.split(",") if p.strip()]
    try:
        for pool in pools:
            keys.check_pool(pool)
    except ValueError as exc:
        print(f"adapt-bot redis-acl: {exc}", file=sys.stderr)
        return 2
    control = password_file(args.secrets, CONTROL_USER).read_text().strip()
    runners = {p: password_file(args.secrets, runner_user(p)).read_text().strip() for p in pools}
    text = render(control, runners)
    if args.out is None:
        sys.stdout.write(text)
    else:
        args.out.write_text(text, encoding="utf-8")
        print(
            f"wrote {args.out}: users {CONTROL_USER}, {', '.join(runner_user(p) for p in pools)}",
            file=sys.stderr,
        )
    return 0
