"""Redis ACL users for the trust boundary: one for the control plane, one per runner pool.

`adapt-bot redis-acl --pools cpu,a2-8 --secrets DIR` (bot/cli/redis_acl.py) writes a password
file per user into DIR (0600, created once, reused after) and prints the aclfile for
`redis-server --aclfile`. The
aclfile holds only SHA-256 hashes of the passwords. Runner users get `runners.host.keys.acl_rule`:
their pool's queue and claim keys, read-only cancel flags, XADD on their inbox — nothing else.
"""

from __future__ import annotations

import hashlib
import os
import secrets
from collections.abc import Mapping
from pathlib import Path

from runners.host import keys

CONTROL_USER = "adapt-control"


def runner_user(pool: str) -> str:
    return f"runner-{keys.check_pool(pool)}"


def _hash(password: str) -> str:
    return "#" + hashlib.sha256(password.encode()).hexdigest()


def render(control_password: str | None, runner_passwords: Mapping[str, str]) -> str:
    """The aclfile. `control_password=None` keeps the `default` user as the control plane with no
    password (local single-machine runs and tests); production gives it a password and turns
    `default` off, so an unauthenticated client can do nothing."""
    if control_password is None:
        lines = ["user default on nopass ~* &* +@all"]
    else:
        lines = ["user default off", f"user {CONTROL_USER} on {_hash(control_password)} ~* &* +@all"]
    for pool, password in sorted(runner_passwords.items()):
        lines.append(f"user {runner_user(pool)} on {_hash(password)} {keys.acl_rule(pool)}")
    return "\n".join(lines) + "\n"


def password_file(secrets_dir: Path, user: str) -> Path:
    """Read or create the user's password file (0600)."""
    path = secrets_dir / f"{user}.password"
    if not path.exists():
        secrets_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_urlsafe(32) + "\n")
    return path
