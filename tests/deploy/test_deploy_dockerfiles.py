"""deploy/Dockerfile*: linted with hadolint (and the runner entry point with shellcheck), parsed with
dockerfile-parse for what the images promise (base, user, entry command, healthcheck, no secrets), and
the install step they run (`pip wheel .` of this repository) executed here for real.

Docker itself does not run on these machines: no image is built or started by these tests."""

from __future__ import annotations

import fnmatch
import io
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path
from typing import Any

import pytest
from dockerfile_parse import DockerfileParser

from tests.deploy import manifests as m

BIN = Path(sys.executable).parent
SECRETISH = re.compile(r"SECRET|TOKEN|PASSWORD|PRIVATE_KEY|APP_ID", re.IGNORECASE)


def _tool(name: str) -> str:
    exe = shutil.which(name, path=str(BIN)) or shutil.which(name)
    if exe is None:
        raise RuntimeError(f"{name} is missing: install the dev extra (pip install -e '.[dev]')")
    return exe


def _parsed(kind: str) -> DockerfileParser:
    # fileobj: the parser takes a `path` for a directory unless the file is named exactly "Dockerfile".
    return DockerfileParser(fileobj=io.BytesIO(m.DOCKERFILES[kind].read_bytes()))


def _instructions(kind: str, name: str) -> list[dict[str, Any]]:
    return [i for i in _parsed(kind).structure if i["instruction"] == name]


def _final_stage(kind: str) -> list[dict[str, Any]]:
    structure = _parsed(kind).structure
    last_from = max(n for n, i in enumerate(structure) if i["instruction"] == "FROM")
    return structure[last_from:]


def _declared(kind: str) -> set[str]:
    """Names of every ARG and ENV in any stage (dockerfile-parse's .args/.envs cover the last only)."""
    names: set[str] = set()
    for ins in _parsed(kind).structure:
        if ins["instruction"] == "ARG":
            names.add(ins["value"].split("=", 1)[0].strip())
        elif ins["instruction"] == "ENV":
            names.update(re.findall(r"(?:^|\s)([A-Za-z_][A-Za-z0-9_]*)=", ins["value"]))
    return names


def _exec_form(value: str) -> list[str]:
    argv = json.loads(value)
    assert isinstance(argv, list) and all(isinstance(a, str) for a in argv), value
    return argv


@pytest.mark.parametrize("kind", sorted(m.DOCKERFILES))
def test_hadolint_finds_nothing(kind: str) -> None:
    out = subprocess.run(
        [_tool("hadolint"), "--no-color", str(m.DOCKERFILES[kind])],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert out.returncode == 0, out.stdout + out.stderr


def test_hadolint_is_able_to_fail(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python\nRUN pip install requests\nUSER root\n", encoding="utf-8")
    argv = [_tool("hadolint"), "--no-color", str(bad)]
    out = subprocess.run(argv, capture_output=True, text=True, check=False)
    assert out.returncode != 0
    assert "DL3006" in out.stdout and "DL3013" in out.stdout and "DL3002" in out.stdout


def test_runner_entrypoint_passes_shellcheck() -> None:
    script = m.DEPLOY / "runner-entrypoint.sh"
    out = subprocess.run([_tool("shellcheck"), str(script)], capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stdout + out.stderr
    assert os.access(script, os.X_OK)


def test_runner_entrypoint_execs_the_bot_with_its_arguments(tmp_path: Path) -> None:
    """Run the real script with the venv's adapt-bot in place of /opt/adapt-bot (argv passed through)."""
    text = (m.DEPLOY / "runner-entrypoint.sh").read_text(encoding="utf-8")
    assert 'exec /opt/adapt-bot/bin/adapt-bot "$@"' in text
    script = tmp_path / "entry.sh"
    script.write_text(text.replace("/opt/adapt-bot/bin/adapt-bot", str(BIN / "adapt-bot")), encoding="utf-8")
    out = subprocess.run(
        ["bash", str(script), "worker", "--help"], capture_output=True, text=True, timeout=120, check=False
    )
    assert out.returncode == 0, out.stderr
    assert "--pool" in out.stdout and "--control" in out.stdout


def test_control_plane_image() -> None:
    final = _final_stage("control")
    assert _parsed("control").baseimage.startswith("python:3.11-slim")
    users = [i["value"] for i in final if i["instruction"] == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0"), "the control plane must not run as root"
    (health,) = [i["value"] for i in final if i["instruction"] == "HEALTHCHECK"]
    assert "/healthz" in health
    (entry,) = [_exec_form(i["value"]) for i in final if i["instruction"] == "ENTRYPOINT"]
    (cmd,) = [_exec_form(i["value"]) for i in final if i["instruction"] == "CMD"]
    assert entry == ["adapt-bot"]
    assert cmd == ["serve", "--host", "0.0.0.0", "--port", "8080"]
    m.parse_cli(cmd)
    port = cmd[cmd.index("--port") + 1]
    assert f":{port}/healthz" in health
    assert any(i["value"].split()[0] == port for i in final if i["instruction"] == "EXPOSE")


def test_ascend_runner_image() -> None:
    final = _final_stage("runner")
    assert final[0]["value"] == "quay.io/ascend/vllm-ascend:${VLLM_ASCEND_TAG}"
    # The tag is a deliberate choice per deployment: no silent default (the build fails without it).
    assert _parsed("runner").baseimage == "quay.io/ascend/vllm-ascend:"
    assert re.search(r"^ARG VLLM_ASCEND_TAG$", m.DOCKERFILES["runner"].read_text(encoding="utf-8"), re.M)
    (cmd,) = [_exec_form(i["value"]) for i in final if i["instruction"] == "CMD"]
    assert cmd == ["worker", "--pool", "a2-8"]
    m.parse_cli(cmd)
    (entry,) = [_exec_form(i["value"]) for i in final if i["instruction"] == "ENTRYPOINT"]
    copies = [i["value"] for i in final if i["instruction"] == "COPY"]
    assert any(c.endswith(entry[0]) and "deploy/runner-entrypoint.sh" in c for c in copies), copies
    workdirs = [i["value"] for i in final if i["instruction"] == "WORKDIR"]
    assert workdirs[-1] == "/workspace"


def test_cpu_runner_image_uses_the_repos_vllm_cpu_setup() -> None:
    final = _final_stage("cpu-runner")
    parser = _parsed("cpu-runner")
    assert parser.baseimage.startswith("python:3.11-") and "slim" not in parser.baseimage
    copies = [i["value"] for i in final if i["instruction"] == "COPY"]
    assert any(c.startswith("scripts/setup-vllm-cpu.sh ") for c in copies)
    assert any("setup-vllm-cpu.sh" in i["value"] for i in final if i["instruction"] == "RUN")
    env = parser.envs
    assert env["ADAPT_BOT_CPU_VLLM"] == env["ADAPT_BOT_VLLM_ENV"] + "/bin/python"
    users = [i["value"] for i in final if i["instruction"] == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0")
    (cmd,) = [_exec_form(i["value"]) for i in final if i["instruction"] == "CMD"]
    assert cmd == ["worker", "--pool", "cpu"]
    m.parse_cli(cmd)


@pytest.mark.parametrize("kind", sorted(m.DOCKERFILES))
def test_no_secret_is_baked_into_an_image(kind: str) -> None:
    for name in _declared(kind):
        assert not SECRETISH.search(name), f"{kind}: {name} would end up in the image"
    for copy in _instructions(kind, "COPY") + _instructions(kind, "ADD"):
        assert not re.search(r"\.pem\b|secrets|\.env\b", copy["value"]), copy["value"]


@pytest.mark.parametrize("kind", sorted(m.DOCKERFILES))
def test_adapt_bot_variables_in_images_are_read_by_the_bot(kind: str) -> None:
    known = m.bot_env_names() | m.script_env_names()
    assert m.adapt_bot_names(dict.fromkeys(_declared(kind))) <= known


def test_images_pin_what_the_profiles_and_setup_script_pin() -> None:
    from runners.profile import load_profile

    cpu = load_profile("cpu")
    cpu_args = {
        i["value"].split("=", 1)[0]: i["value"].partition("=")[2] for i in _instructions("cpu-runner", "ARG")
    }
    assert cpu_args["VLLM_CPU_VERSION"] == cpu.version, (
        "cpu profile and cpu-runner image disagree on vllm-cpu"
    )
    assert cpu.vllm.env_var in _declared("cpu-runner"), "the image must point the cpu profile at its vllm"
    setup = (m.REPO / "scripts" / "setup-vllm-cpu.sh").read_text(encoding="utf-8")
    (lm_eval_pin,) = set(re.findall(r'"lm-eval(?:\[[a-z,]+\])?==([^"]+)"', setup))  # one pin, extras aside
    runner_args = {
        i["value"].split("=", 1)[0]: i["value"].partition("=")[2] for i in _instructions("runner", "ARG")
    }
    assert runner_args["LM_EVAL_VERSION"] == lm_eval_pin
    # The Ascend profile runs `vllm` from PATH (the image's); the bot's venv must not shadow it.
    ascend = load_profile("ascend-a2")
    assert ascend.vllm.default == "vllm"
    assert "PATH" not in _declared("runner")


def _dockerignore_allows(patterns: list[str], path: str) -> bool:
    """Docker's rule: the last matching pattern wins; `!` re-includes; a dir pattern covers its files."""
    allowed = True
    for raw in patterns:
        neg = raw.startswith("!")
        pat = raw[1:] if neg else raw
        pat = pat.rstrip("/")
        if pat == "**" or fnmatch.fnmatch(path, pat) or path.startswith(pat + "/"):
            allowed = neg
    return allowed


@pytest.mark.parametrize("kind", sorted(m.DOCKERFILES))
def test_every_copied_path_exists_and_is_in_the_build_context(kind: str) -> None:
    """BuildKit reads <Dockerfile>.dockerignore; a COPY of an ignored path fails the build."""
    ignore_file = m.DOCKERFILES[kind].with_name(m.DOCKERFILES[kind].name + ".dockerignore")
    patterns = [
        line.strip()
        for line in ignore_file.read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    for copy in _instructions(kind, "COPY"):
        words = [w for w in copy["value"].split() if not w.startswith("--")]
        if copy["value"].startswith("--from="):
            continue
        for src in words[:-1]:
            assert (m.REPO / src).exists(), f"{kind}: COPY {src}: not in the repository"
            allowed = _dockerignore_allows(patterns, src.rstrip("/"))
            assert allowed, f"{kind}: COPY {src} is excluded by {ignore_file.name}"


@pytest.mark.slow
def test_the_wheel_the_images_install_carries_templates_and_profiles(tmp_path: Path) -> None:
    """The images run `pip wheel --no-deps .` and install that wheel: do exactly that, then import the
    installed copy (not the checkout) and find the templates and runner profiles it needs."""
    wheels = tmp_path / "wheels"
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-cache-dir", "--no-deps", "-w", str(wheels), str(m.REPO)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    (wheel,) = wheels.glob("adapt_bot-*.whl")
    target = tmp_path / "site"
    inst = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "-t", str(target), str(wheel)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert inst.returncode == 0, inst.stderr[-3000:]
    probe = (
        "import bot, runners, json\n"
        "from runners.render import templates_dir\n"
        "from runners.profile import available_profiles\n"
        "print(json.dumps({'bot': bot.__file__, 'templates': str(templates_dir()),\n"
        "                  'profiles': available_profiles()}))\n"
    )
    env = {
        "PATH": os.environ.get("PATH", ""),
        "PYTHONPATH": os.pathsep.join([str(target), sysconfig.get_paths()["purelib"]]),
        "HOME": str(tmp_path),
    }
    out = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=120,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    found = json.loads(out.stdout.strip().splitlines()[-1])
    assert found["bot"].startswith(str(target)), found
    assert found["templates"].startswith(str(target)), found
    assert any(Path(found["templates"]).rglob("*.j2")) or any(Path(found["templates"]).rglob("*.md*")), found
    assert {"ascend-a2", "ascend-a3", "cpu"} <= set(found["profiles"]), found
