"""Issue 11: the image a stage ran in reaches its result. A container cannot learn its own digest, so
the deploy files hand it over and runners/versions.py records exactly that: the runner Dockerfiles
bake in the base image and the source revision they were built from (build ARGs -> ENV), and the
k8s runner pods get the image reference they were started from (kustomize copies `image:` into
ADAPT_BOT_IMAGE after `images:` retargets it, so a digest pinned there is the one recorded)."""

from __future__ import annotations

import io
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from dockerfile_parse import DockerfileParser

from runners.versions import image_facts
from tests.deploy import manifests as m

DIGEST = "sha256:" + "3f" * 32
SHA = "0123456789abcdef0123456789abcdef01234567"
#: the runner Dockerfiles and the build arg naming their base (what FROM of the final stage reads)
RUNNERS = {"runner": "VLLM_ASCEND_TAG", "cpu-runner": "PYTHON_IMAGE"}


def _image(kind: str, **build_args: str) -> DockerfileParser:
    """The final stage as `docker build --build-arg ...` resolves it (ARG/ENV substitution)."""
    return DockerfileParser(fileobj=io.BytesIO(m.DOCKERFILES[kind].read_bytes()), build_args=build_args)


def _final_from(kind: str) -> str:
    structure = _image(kind).structure
    return [i["value"] for i in structure if i["instruction"] == "FROM"][-1]


@pytest.mark.parametrize("kind", sorted(RUNNERS))
def test_runner_images_record_the_base_and_revision_they_were_built_from(kind: str) -> None:
    arg = RUNNERS[kind]
    base = {"runner": f"v0.11.0rc1@{DIGEST}", "cpu-runner": f"python:3.11-bookworm@{DIGEST}"}[kind]
    image = _image(kind, **{arg: base, "ADAPT_BOT_REVISION": SHA})
    # the ENV the image carries is exactly the reference FROM pulled, digest included
    pulled = _final_from(kind).replace("${" + arg + "}", base)
    facts = image_facts(image.envs)
    assert facts["base_image"] == pulled and facts["base_image"].endswith(DIGEST)
    assert facts["adapt_bot_revision"] == SHA
    assert image.labels["org.opencontainers.image.base.name"] == pulled
    assert image.labels["org.opencontainers.image.revision"] == SHA
    # built without the revision: unknown, not an empty string or a guess
    assert image_facts(_image(kind, **{arg: base}).envs)["adapt_bot_revision"] is None


@pytest.mark.parametrize("kind", sorted(RUNNERS))
def test_the_build_args_reach_the_final_stage(kind: str) -> None:
    """An ARG declared only before FROM (or in another stage) is empty where ENV reads it: each
    build arg the recorded ENV uses is declared in the final stage itself."""
    structure = _image(kind).structure
    last_from = max(n for n, i in enumerate(structure) if i["instruction"] == "FROM")
    final_args = {i["value"].split("=", 1)[0] for i in structure[last_from:] if i["instruction"] == "ARG"}
    assert {RUNNERS[kind], "ADAPT_BOT_REVISION"} <= final_args


def _runner_container(objs: tuple[dict[str, Any], ...], pool: str) -> dict[str, Any]:
    (d,) = [
        o
        for o in objs
        if o["kind"] == "Deployment" and o["spec"]["template"]["metadata"]["labels"].get(m.POOL_LABEL) == pool
    ]
    (c,) = [c for c in m.pod_spec(d)["containers"] if c["name"] == "runner"]
    return c


def _env(container: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e.get("value") for e in container.get("env", [])}


@pytest.mark.parametrize("pool", ["a2-8", "a3-16"])
def test_runner_pods_are_told_the_image_they_run(pool: str) -> None:
    c = _runner_container(m.rendered_k8s(), pool)
    env = _env(c)
    assert env["ADAPT_BOT_IMAGE"] == c["image"], "the kustomization's replacement did not apply"
    # the committed example pins a tag: the reference is recorded, no digest is made up
    facts = image_facts(env)
    assert facts["image"] == c["image"] and facts["image_digest"] is None


def _render(k8s: Path) -> tuple[dict[str, Any], ...]:
    out = subprocess.run(
        [m.kubectl(), "kustomize", str(k8s)], capture_output=True, text=True, timeout=120, check=False
    )
    assert out.returncode == 0, out.stderr
    return tuple(d for d in yaml.safe_load_all(out.stdout) if d)


def test_a_digest_pinned_in_the_kustomization_is_the_one_recorded(tmp_path: Path) -> None:
    """What the README tells operators to do (`digest:` in `images:`) reaches versions.py."""
    k8s = tmp_path / "k8s"
    shutil.copytree(m.K8S, k8s)
    kust = yaml.safe_load((k8s / "kustomization.yaml").read_text(encoding="utf-8"))
    digests = {"adapt-bot-runner-a2": "sha256:" + "a2" * 32, "adapt-bot-runner-a3": "sha256:" + "a3" * 32}
    for spec in kust["images"]:
        if spec["name"] in digests:
            spec["digest"] = digests[spec["name"]]
    (k8s / "kustomization.yaml").write_text(yaml.safe_dump(kust), encoding="utf-8")
    objs = _render(k8s)
    for pool, name in (("a2-8", "adapt-bot-runner-a2"), ("a3-16", "adapt-bot-runner-a3")):
        c = _runner_container(objs, pool)
        assert c["image"].endswith("@" + digests[name]), c["image"]
        facts = image_facts(_env(c))
        assert facts["image"] == c["image"] and facts["image_digest"] == digests[name]


def test_the_placeholder_never_survives_rendering() -> None:
    values = [
        e.get("value") for w in m.workloads() for c in m.pod_spec(w)["containers"] for e in c.get("env", [])
    ]
    assert "set-by-kustomization" not in values
    assert "ADAPT_BOT_IMAGE" in m.bot_env_names()  # and the bot reads what it is given
