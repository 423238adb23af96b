"""runners.versions.image_facts: what the deployment says the process runs in, recorded as given
(never guessed), and shown in the zh report and the PR body where the image digest is."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from runners.artifacts import pr_body, render_report
from runners.versions import image_facts, job_versions
from tests.artifacts import builders as b
from tests.artifacts.test_versions_in_docs import ascend_versions, section, with_versions

DIGEST = "sha256:" + "5e" * 32
SHA = "89abcdef0123456789abcdef0123456789abcdef"
BASE = f"quay.io/ascend/vllm-ascend:v0.11.0rc1@sha256:{'0b' * 32}"
#: as the documents print it: md_cell / md_inline break every "@" (no mention can slip through)
SHOWN = BASE.replace("@", "@\u200b")


def test_an_ascend_runner_pod_environment() -> None:
    """ENV baked by deploy/Dockerfile.runner plus ADAPT_BOT_IMAGE from deploy/k8s (digest pinned)."""
    env = {
        "ADAPT_BOT_BASE_IMAGE": BASE,
        "ADAPT_BOT_REVISION": SHA,
        "ADAPT_BOT_IMAGE": f"registry.example.com/adapt-bot/adapt-bot-runner:0.1.0-a2@{DIGEST}",
        "PATH": "/usr/bin",
    }
    assert image_facts(env) == {
        "image": env["ADAPT_BOT_IMAGE"],
        "image_digest": DIGEST,
        "base_image": BASE,
        "adapt_bot_revision": SHA,
    }


def test_a_tag_pins_no_digest_and_nothing_given_is_unknown() -> None:
    tagged = image_facts({"ADAPT_BOT_IMAGE": "registry.example.com/adapt-bot/adapt-bot-runner:0.1.0-a2"})
    assert tagged["image"].endswith(":0.1.0-a2") and tagged["image_digest"] is None
    # the image's ENV with the build args left out is empty, and empty is unknown
    assert image_facts({"ADAPT_BOT_BASE_IMAGE": "", "ADAPT_BOT_REVISION": ""}) == dict.fromkeys(
        ("image", "image_digest", "base_image", "adapt_bot_revision")
    )


def test_an_explicit_digest_is_taken_only_when_well_formed_and_the_reference_pins_none() -> None:
    assert image_facts({"ADAPT_BOT_IMAGE_DIGEST": DIGEST})["image_digest"] == DIGEST
    assert image_facts({"ADAPT_BOT_IMAGE_DIGEST": "latest"})["image_digest"] is None
    assert image_facts({"ADAPT_BOT_IMAGE": "x@sha256:short"})["image_digest"] is None
    other = "sha256:" + "77" * 32
    both = image_facts({"ADAPT_BOT_IMAGE": f"x:1@{DIGEST}", "ADAPT_BOT_IMAGE_DIGEST": other})
    assert both["image_digest"] == DIGEST  # the reference is what the kubelet pulled


def test_the_report_and_pr_body_show_the_base_image_and_revision() -> None:
    versions = ascend_versions(image_digest=DIGEST, base_image=BASE, adapt_bot_revision=SHA)
    results = with_versions(b.full_results(), real_gate=versions)
    sec = section(render_report(b.options(), results))
    assert f"| 镜像 digest | `{DIGEST}` |" in sec
    assert f"| 基础镜像 | `{SHOWN}` |" in sec and f"| adapt-bot revision | `{SHA}` |" in sec
    body = pr_body(b.options(), results, job_id="j1", files=[])
    line = next(x for x in body.splitlines() if x.startswith("Versions that ran"))
    assert f"image `{DIGEST}`, base image `{SHOWN}`, adapt-bot `{SHA}`, model revision" in line
    # unknown: a dash in the report, left out of the PR body
    bare = with_versions(b.full_results(), real_gate=ascend_versions())
    assert "| 基础镜像 | — |" in section(render_report(b.options(), bare))
    bare_line = next(
        x for x in pr_body(b.options(), bare, job_id="j1", files=[]).splitlines() if x.startswith("Versions")
    )
    assert "base image" not in bare_line and "adapt-bot `" not in bare_line


def test_every_stage_result_gets_them(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """job_versions (what runners.pipeline writes into data.versions) reads the process env."""
    monkeypatch.setenv("ADAPT_BOT_IMAGE", f"r/adapt-bot-runner@{DIGEST}")
    monkeypatch.setenv("ADAPT_BOT_BASE_IMAGE", BASE)
    monkeypatch.delenv("ADAPT_BOT_REVISION", raising=False)
    ctx = SimpleNamespace(profile=None, options=SimpleNamespace(revision=SHA), model_path=tmp_path)
    v = job_versions(ctx)
    assert v["image_digest"] == DIGEST and v["base_image"] == BASE and v["adapt_bot_revision"] is None
    assert v["model_revision"] == SHA
