"""deploy/compose.yaml: checked against the compose-spec JSON schema (vendored by check-jsonschema,
used here through its own CLI), then for what the schema cannot see: references resolve, Redis is
append-only, secrets come from files, the runner gets none, and the commands are ones the CLI takes."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy import manifests as m

SERVICES = {"redis", "web", "control-worker", "cpu-runner", "flower"}


#: Everything a runner service may be given: its pool's Redis user and password file, where it
#: works, and where the model and dataset caches live.
RUNNER_ENV = {
    "ADAPT_BOT_REDIS_URL",
    "ADAPT_BOT_REDIS_PASSWORD_FILE",
    "ADAPT_BOT_WORK_ROOT",
    "ADAPT_BOT_CACHE",
    "ADAPT_BOT_MODELS_ROOT",
    "ADAPT_BOT_MODEL_CACHE",
    "ADAPT_BOT_DATASET_CACHE",
    "ADAPT_BOT_TARGET_REPO",
    "ADAPT_BOT_VLLM_ROOT",
    "ADAPT_BOT_VLLM_ASCEND_ROOT",
    "ADAPT_BOT_IMAGE",  # the image it runs, recorded in every stage result (runners/versions.py)
}


def _check_jsonschema(path: Path) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("check-jsonschema", path=str(Path(sys.executable).parent))
    if exe is None:
        raise RuntimeError("check-jsonschema is missing: install the dev extra (pip install -e '.[dev]')")
    return subprocess.run(
        [exe, "--builtin-schema", "vendor.compose-spec", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _svc(name: str) -> dict[str, Any]:
    svc: dict[str, Any] = m.compose()["services"][name]
    return svc


def _env_files(svc: dict[str, Any]) -> list[str]:
    out = []
    for item in svc.get("env_file", []):
        out.append(item if isinstance(item, str) else item["path"])
    return out


def _environment(svc: dict[str, Any]) -> dict[str, str]:
    env = svc.get("environment", {})
    if isinstance(env, list):
        return dict(item.split("=", 1) for item in env)
    return {k: str(v) for k, v in env.items()}


def _effective_env_names(svc: dict[str, Any]) -> set[str]:
    names = set(_environment(svc))
    for path in _env_files(svc):
        names.update(m.parse_env_file(m.example_env_file(path)))
    return names


def test_compose_file_passes_the_compose_spec_schema() -> None:
    out = _check_jsonschema(m.COMPOSE)
    assert out.returncode == 0, out.stdout + out.stderr


def test_the_schema_check_catches_a_misspelled_key(tmp_path: Path) -> None:
    doc = m.compose()
    doc["services"]["web"]["comand"] = doc["services"]["web"].pop("command")
    bad = tmp_path / "compose.yaml"
    bad.write_text(yaml.safe_dump(doc), encoding="utf-8")
    out = _check_jsonschema(bad)
    assert out.returncode != 0
    assert "comand" in out.stdout + out.stderr


def _compose_config(compose_file: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(m.compose_binary()), "-f", str(compose_file), "config", "--format", "json"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={"PATH": os.environ.get("PATH", ""), "HOME": str(compose_file.parent)},
    )


@pytest.fixture(scope="module")
def resolved(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The project as Docker Compose itself loads it (env files read, `<<` merges applied)."""
    compose_file = m.materialize_compose_project(tmp_path_factory.mktemp("compose"))
    out = _compose_config(compose_file)
    assert out.returncode == 0, out.stderr
    data: dict[str, Any] = json.loads(out.stdout)
    return data


def test_docker_compose_loads_the_project(resolved: dict[str, Any]) -> None:
    assert set(resolved["services"]) == SERVICES
    assert resolved["name"] == "adapt-bot"


def test_docker_compose_refuses_an_undefined_secret(tmp_path: Path) -> None:
    """Compose's own semantic checks run here (the JSON schema cannot see references)."""
    compose_file = m.materialize_compose_project(tmp_path)
    doc = yaml.safe_load(compose_file.read_text(encoding="utf-8"))
    doc["services"]["cpu-runner"]["secrets"] = ["not_defined"]
    compose_file.write_text(yaml.safe_dump(doc), encoding="utf-8")
    out = _compose_config(compose_file)
    assert out.returncode != 0
    assert "not_defined" in out.stderr


def test_resolved_environments_hold_each_credential_where_it_belongs(resolved: dict[str, Any]) -> None:
    env = {name: set(svc.get("environment", {})) for name, svc in resolved["services"].items()}
    holders = {name for name, names in env.items() if names & m.GITHUB_CREDENTIAL_ENV - {"ADAPT_BOT_APP_ID"}}
    assert holders == {"web", "control-worker"}
    assert "ADAPT_BOT_WEBHOOK_SECRET" in env["web"] and "ADAPT_BOT_PRIVATE_KEY" not in env["web"]
    assert (
        "ADAPT_BOT_PRIVATE_KEY" in env["control-worker"]
        and "ADAPT_BOT_WEBHOOK_SECRET" not in env["control-worker"]
    )
    assert env["cpu-runner"] <= RUNNER_ENV and "ADAPT_BOT_REDIS_PASSWORD_FILE" in env["cpu-runner"]
    # the runner's one secret is its pool's Redis password
    assert [s["source"] for s in resolved["services"]["cpu-runner"]["secrets"]] == [
        "redis_runner_cpu_password"
    ]
    worker = resolved["services"]["control-worker"]
    key = next(s["target"] for s in worker["secrets"] if s["source"] == "github_app_private_key")
    assert worker["environment"]["ADAPT_BOT_PRIVATE_KEY"] == key
    known = m.bot_env_names()
    for name, names in env.items():
        assert m.adapt_bot_names(dict.fromkeys(names)) <= known, name


def test_jobs_are_routed_to_a_pool_this_stack_runs(resolved: dict[str, Any]) -> None:
    """Without a repository config a job goes to the default pool: a worker here must consume it."""
    services = resolved["services"]
    consumed = m.consumed_queues([svc["command"] for svc in services.values() if "command" in svc])
    for name in ("web", "control-worker"):
        pools = m.default_pools(services[name]["environment"])
        assert pools <= consumed, f"{name} routes jobs to {pools}; workers consume {consumed}"
        # and it reads the events of every pool a runner here serves
        assert consumed - {"control"} <= m.served_pools(services[name]["environment"])
    assert "control" in consumed


def test_the_stack_has_the_five_services() -> None:
    assert set(m.compose()["services"]) == SERVICES


def test_redis_is_append_only_on_a_named_volume_with_a_healthcheck() -> None:
    redis = _svc("redis")
    argv = redis["command"]
    assert argv[argv.index("--appendonly") + 1] == "yes"
    data_dir = argv[argv.index("--dir") + 1]
    volumes = {v.split(":")[1]: v.split(":")[0] for v in redis["volumes"]}
    assert volumes.get(data_dir) in m.compose()["volumes"], f"{data_dir} is not on a named volume"
    # the health check authenticates as the control plane's user (the default user is off)
    kind, script = redis["healthcheck"]["test"]
    assert (
        kind == "CMD-SHELL"
        and "--user adapt-control" in script
        and "/run/secrets/redis_control_password" in script
    )


def test_redis_runs_the_acl_users_of_the_trust_boundary() -> None:
    """Redis loads the aclfile `adapt-bot redis-acl` writes; each service connects as its own user:
    the control plane as adapt-control, the cpu runner as runner-cpu (its pool, nothing else)."""
    from bot.redis_acl import render

    redis = _svc("redis")
    argv = redis["command"]
    acl_secret = argv[argv.index("--aclfile") + 1]
    assert acl_secret == "/run/secrets/redis_acl" and "redis_acl" in redis["secrets"]
    users = {}
    for name, svc in m.compose()["services"].items():
        url = _environment(svc).get("ADAPT_BOT_REDIS_URL")
        if url:
            users[name] = url.split("//", 1)[1].split("@", 1)[0]
            assert ":" not in users[name], f"{name}: the password belongs in a secret file, not the URL"
    assert users == {"web": "adapt-control", "control-worker": "adapt-control", "cpu-runner": "runner-cpu"}
    rendered = render("x", {"cpu": "y"})
    assert "user default off" in rendered and "user runner-cpu on #" in rendered


def test_references_resolve() -> None:
    doc = m.compose()
    declared_volumes = set(doc.get("volumes", {}))
    declared_secrets = set(doc.get("secrets", {}))
    for name, svc in doc["services"].items():
        for dep in svc.get("depends_on", {}):
            assert dep in doc["services"], f"{name} depends on unknown service {dep}"
        for vol in svc.get("volumes", []):
            source = vol.split(":")[0] if isinstance(vol, str) else vol["source"]
            if not source.startswith((".", "/")):
                assert source in declared_volumes, f"{name}: volume {source} not declared"
        for sec in svc.get("secrets", []):
            assert (sec if isinstance(sec, str) else sec["source"]) in declared_secrets, f"{name}: {sec}"
        for path in _env_files(svc):
            m.parse_env_file(m.example_env_file(path))  # a committed example exists and parses


def test_real_env_and_secret_files_are_git_ignored() -> None:
    real = sorted(
        {f"deploy/{p}" for svc in m.compose()["services"].values() for p in _env_files(svc)}
        | {f"deploy/{s['file'].removeprefix('./')}" for s in m.compose()["secrets"].values()}
    )
    ignored = subprocess.run(
        ["git", "-C", str(m.REPO), "check-ignore", "--no-index", *real],
        capture_output=True,
        text=True,
        check=False,
    )
    assert sorted(ignored.stdout.split()) == real, ignored.stdout + ignored.stderr


def test_no_secret_is_written_inline() -> None:
    for name, svc in m.compose()["services"].items():
        for key, value in _environment(svc).items():
            if key in ("ADAPT_BOT_PRIVATE_KEY", "ADAPT_BOT_REDIS_PASSWORD_FILE"):
                assert value.startswith("/run/secrets/"), f"{name}: {key} must be a Docker secret file"
            else:
                secretish = ("SECRET", "TOKEN", "PASSWORD", "BASIC_AUTH")
                assert not any(w in key for w in secretish), f"{name}: {key}"
    for path in m.DEPLOY.glob("secrets.example/*.env"):
        assert all(v == "" for v in m.parse_env_file(path).values()), f"{path} must not carry a value"


def test_only_the_control_worker_holds_the_app_key() -> None:
    holders = {
        name
        for name, svc in m.compose()["services"].items()
        if "github_app_private_key" in svc.get("secrets", [])
    }
    assert holders == {"control-worker"}
    assert (
        not {n for n, s in m.compose()["services"].items() if "ADAPT_BOT_PRIVATE_KEY" in _environment(s)}
        - holders
    )


def test_control_worker_key_path_is_its_docker_secret() -> None:
    svc = _svc("control-worker")
    assert set(svc["secrets"]) == {"github_app_private_key", "redis_control_password"}
    for secret, var in (
        ("github_app_private_key", "ADAPT_BOT_PRIVATE_KEY"),
        ("redis_control_password", "ADAPT_BOT_REDIS_PASSWORD_FILE"),
    ):
        assert _environment(svc)[var] == f"/run/secrets/{secret}"
        assert "file" in m.compose()["secrets"][secret]


def test_web_gets_the_webhook_secret_from_an_env_file() -> None:
    assert "ADAPT_BOT_WEBHOOK_SECRET" in _effective_env_names(_svc("web"))
    assert "ADAPT_BOT_WEBHOOK_SECRET" not in _environment(_svc("web"))


def test_cpu_runner_gets_no_github_credentials() -> None:
    runner = _svc("cpu-runner")
    assert runner["secrets"] == ["redis_runner_cpu_password"]
    assert not runner.get("env_file")
    names = _effective_env_names(runner)
    assert not (names & m.GITHUB_CREDENTIAL_ENV)
    assert names <= RUNNER_ENV
    assert _environment(runner)["ADAPT_BOT_REDIS_URL"] == "redis://runner-cpu@redis:6379/0"
    assert runner["init"] is True
    grace = runner["stop_grace_period"]
    assert grace.endswith("m") and int(grace[:-1]) >= 5


def test_every_adapt_bot_variable_set_is_one_the_bot_reads() -> None:
    known = m.bot_env_names()
    for name, svc in m.compose()["services"].items():
        unknown = m.adapt_bot_names(dict.fromkeys(_effective_env_names(svc))) - known
        assert not unknown, f"{name} sets {unknown}, which the bot never reads"


@pytest.mark.parametrize(
    ("service", "argv"),
    [
        ("web", ["serve", "--host", "0.0.0.0", "--port", "8080", "--no-worker"]),
        ("control-worker", ["worker", "--control"]),
        ("cpu-runner", ["worker", "--pool", "cpu"]),
    ],
)
def test_commands_are_ones_the_cli_accepts(service: str, argv: list[str]) -> None:
    svc = _svc(service)
    assert svc["command"] == argv
    args = m.parse_cli(svc["command"])
    if service == "web":
        assert args.no_worker is True, "the control-worker service is the one control-plane worker"


def test_web_publishes_the_port_it_serves_on() -> None:
    web = _svc("web")
    port = web["command"][web["command"].index("--port") + 1]
    assert any(p.split(":")[-1] == port for p in web["ports"])
    # /metrics has its own port, published on the host's loopback only
    metrics = web["environment"]["ADAPT_BOT_METRICS_BIND"].rsplit(":", 1)[1]
    assert [p for p in web["ports"] if p.split(":")[-1] == metrics] == [f"127.0.0.1:{metrics}:{metrics}"]


def test_flower_watches_the_broker_and_is_local_only() -> None:
    flower = _svc("flower")
    assert flower["command"][:2] == [
        "celery",
        "flower",
    ]  # the broker URL (with its password) is in the env file
    assert all(p.startswith("127.0.0.1:") for p in flower["ports"])
    assert {"FLOWER_BASIC_AUTH", "CELERY_BROKER_URL"} <= _effective_env_names(flower)


def test_redis_url_points_at_the_redis_service() -> None:
    for name, svc in m.compose()["services"].items():
        url = _environment(svc).get("ADAPT_BOT_REDIS_URL")
        if url is not None:
            assert url.endswith("@redis:6379/0") and url.startswith("redis://"), name
