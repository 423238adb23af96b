"""The server's process group: start it, find its members, kill all of them, and clean up after us.

- A server starts in a new session (its own process group), output to a `LogSink`, the plan's
  working directory and environment (Linux: the process table is read from /proc).
- Stopping means the whole group: SIGTERM, SIGKILL after the grace period, then checked empty.
- Before a start, servers of OURS left by an earlier attempt are killed: their pgids are recorded
  in the workspace, and a recorded group is signalled only while a member still carries the
  per-start tag (`SERVE_TAG_VAR`) in its environment, since pgids are reused.
- The port is checked free first (or picked by the OS when the profile says port 0).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

from runners.context import StageContext
from runners.serve.errors import ServeError
from runners.serve.logsink import LogSink
from runners.serve.plan import SERVE_TAG_VAR, ServePlan

PGID_FILE = "serve-pgids.json"


def group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes whose process group is `pgid`."""
    out: list[int] = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as f:
                stat = f.read().decode("utf-8", "replace")
        except OSError:
            continue
        rest = stat.rsplit(")", 1)[-1].split()
        if len(rest) >= 3 and rest[0] != "Z" and int(rest[2]) == pgid:
            out.append(int(entry.name))
    return out


def _environ_of(pid: int) -> dict[str, str]:
    try:
        raw = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return {}
    env: dict[str, str] = {}
    for item in raw.split(b"\0"):
        k, sep, v = item.partition(b"=")
        if sep:
            env[k.decode("utf-8", "replace")] = v.decode("utf-8", "replace")
    return env


def kill_group(pgid: int, grace_s: float) -> list[int]:
    """SIGTERM the group, SIGKILL after `grace_s`; returns the pids still alive afterwards."""
    if not group_members(pgid):
        return []
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        if not group_members(pgid):
            return []
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        left = group_members(pgid)
        if not left:
            return []
        time.sleep(0.05)
    return group_members(pgid)


def _pgid_file(ctx: StageContext) -> Path:
    return ctx.workspace.path / PGID_FILE


def _read_pgids(path: Path) -> list[dict[str, Any]]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    return [d for d in data if isinstance(d, dict)] if isinstance(data, list) else []


def _write_pgids(path: Path, items: list[dict[str, Any]]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(items), encoding="utf-8")
    tmp.replace(path)


_pgid_lock = threading.Lock()


def _record_pgid(ctx: StageContext, pgid: int, tag: str, log_name: str) -> None:
    with _pgid_lock:
        path = _pgid_file(ctx)
        items = _read_pgids(path)
        items.append({"pgid": pgid, "tag": tag, "log": log_name, "started": time.time()})
        _write_pgids(path, items)


def _forget_pgid(ctx: StageContext, tag: str) -> None:
    with _pgid_lock:
        path = _pgid_file(ctx)
        _write_pgids(path, [d for d in _read_pgids(path) if d.get("tag") != tag])


def reap_stale_servers(ctx: StageContext, grace_s: float, *, keep: set[str] | None = None) -> list[int]:
    """Kill servers OUR earlier attempts left behind. A recorded pgid is only signalled when a
    member still carries the tag we gave it (pgids are reused; someone else's group is never hit)."""
    killed: list[int] = []
    with _pgid_lock:
        path = _pgid_file(ctx)
        items = _read_pgids(path)
    survivors = []
    for item in items:
        tag = str(item.get("tag", ""))
        if keep and tag in keep:
            survivors.append(item)
            continue
        pgid = int(item.get("pgid", 0))
        members = group_members(pgid) if pgid > 1 else []
        if any(_environ_of(pid).get(SERVE_TAG_VAR) == tag for pid in members):
            kill_group(pgid, grace_s)
            killed.append(pgid)
    with _pgid_lock:
        current = _read_pgids(path)
        live_tags = {str(s.get("tag")) for s in survivors}
        new_tags = {str(d.get("tag")) for d in current} - {str(d.get("tag")) for d in items}
        _write_pgids(path, [d for d in current if str(d.get("tag")) in live_tags | new_tags])
    return killed


# --------------------------------------------------------------------------- ports


def port_is_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def pick_port(host: str, preferred: int, tries: int = 50) -> int:
    if preferred == 0:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind((host, 0))
            return int(s.getsockname()[1])
    for port in range(preferred, preferred + tries):
        if port_is_free(host, port):
            return port
    raise ServeError(
        "port-busy",
        f"ports {preferred}..{preferred + tries - 1} on {host} are all in use",
        next_step="stop the other servers on this host, or set serve.port: 0 in the profile",
    )


def start_process(plan: ServePlan) -> tuple[subprocess.Popen[bytes], LogSink]:
    plan.cwd.mkdir(parents=True, exist_ok=True)
    sink = LogSink(plan.log_path, plan.log_max_bytes)
    try:
        proc = subprocess.Popen(
            plan.argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=plan.env,
            cwd=str(plan.cwd),
            start_new_session=True,
        )
    except OSError as exc:
        sink.add(f"[adapt-bot] could not start {plan.argv[0]}: {exc}")
        sink.close()
        raise ServeError(
            "crashed",
            f"could not start the server program {plan.argv[0]!r}: {exc}",
            next_step="check the profile's vllm locator (ADAPT_BOT_CPU_VLLM for the cpu profile)",
            log_path=plan.log_path,
            argv=plan.argv,
        ) from exc
    assert proc.stdout is not None
    sink.follow(proc.stdout)
    return proc, sink
