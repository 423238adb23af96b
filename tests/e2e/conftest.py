"""End-to-end fixtures: a real tiny checkpoint under a models root, a vllm-ascend-shaped checkout
on the "runner host", the base branch seeded at the GitHub stand-in from that same checkout, and
the environment the worker processes run with."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.plugins.service import Worker, as_runner_env, wait_for
from tests.plugins.standin import REPO

MODEL_NAME = "tiny-llama"


@dataclass
class Site:
    """One machine's worth of the deployment: paths and the environment of its workers."""

    env: dict[str, str]
    #: what runner workers get: no App secrets, the `cpu` pool's Redis ACL user
    runner_env: dict[str, str]
    models_root: Path
    target_repo: Path
    work_root: Path
    logs: Path


def checkout_files(repo: Path) -> dict[str, str]:
    """Every tracked text file of a checkout (what the base branch at the stand-in holds)."""
    names = subprocess.run(
        ["git", "-C", str(repo), "ls-files", "-z"], capture_output=True, check=True
    ).stdout.split(b"\0")
    out: dict[str, str] = {}
    for raw in names:
        if raw:
            rel = raw.decode()
            out[rel] = (repo / rel).read_text(encoding="utf-8")
    return out


@pytest.fixture
def site(
    app_env: dict[str, str],
    github_standin: Any,
    tiny_model: Callable[[str], Path],
    tmp_path: Path,
    redis_server: Any,
) -> Site:
    from runners.demo.sample_repo import make_sample_repo
    from tests.standin.git_api import seed_commit

    models_root = tmp_path / "models"
    models_root.mkdir()
    # copied, not linked: the resolver refuses anything that leaves the models root
    shutil.copytree(tiny_model("llama"), models_root / MODEL_NAME)
    target = make_sample_repo(tmp_path / "vllm-ascend", "mkdocs")
    seed_commit(github_standin, REPO, checkout_files(target))
    work = tmp_path / "work"
    env = dict(app_env)
    env.update(
        {
            "ADAPT_BOT_MODELS_ROOT": str(models_root),
            "ADAPT_BOT_TARGET_REPO": str(target),
            "ADAPT_BOT_WORK_ROOT": str(work),
            "ADAPT_BOT_STATUS_REFRESH_S": "5",
            # a dead runner is noticed within ~15 s instead of ~60 s
            "ADAPT_BOT_WATCH_INTERVAL_S": "5",
            "ADAPT_BOT_HEARTBEAT_TTL_S": "10",
        }
    )
    logs = tmp_path / "worker-logs"
    logs.mkdir()
    return Site(
        env=env,
        runner_env=as_runner_env(env, redis_server),
        models_root=models_root,
        target_repo=target,
        work_root=work,
        logs=logs,
    )


class Workers:
    """Start, kill and restart `adapt-bot worker` processes; all are stopped at teardown."""

    def __init__(self, site: Site) -> None:
        self.site = site
        self.all: list[Worker] = []
        self._n = 0

    def start(self, *argv: str, env: dict[str, str] | None = None) -> Worker:
        self._n += 1
        name = "-".join(a.strip("-") for a in argv)
        default = self.site.runner_env if "--pool" in argv else self.site.env
        w = Worker(list(argv), env or default, self.site.logs / f"{self._n:02d}-{name}.log")
        self.all.append(w)
        w.wait_ready()
        return w

    def stop_all(self) -> None:
        for w in self.all:
            w.stop()


@pytest.fixture
def workers(site: Site, bot_server: Any) -> Iterator[Workers]:
    ws = Workers(site)
    try:
        yield ws
    finally:
        ws.stop_all()


def pids_with(fragment: str) -> list[int]:
    """Live processes whose command line contains `fragment` (zombies excluded)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if fragment in cmdline and state != "Z" and int(entry.name) != os.getpid():
            found.append(int(entry.name))
    return found


def wait_gone(fragment: str, timeout: float) -> float:
    """Seconds until no process matches `fragment`; fails after `timeout`."""
    t0 = time.monotonic()
    while pids_with(fragment):
        if time.monotonic() - t0 > timeout:
            raise AssertionError(f"processes still alive after {timeout} s: {pids_with(fragment)}")
        time.sleep(0.1)
    return time.monotonic() - t0


__all__ = ["MODEL_NAME", "Site", "Workers", "pids_with", "wait_for", "wait_gone"]
