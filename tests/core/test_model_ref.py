"""Model references from untrusted issue text: a table of good and hostile inputs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from runners.model_ref import (
    PROVENANCE_FILE,
    ModelRefError,
    find_model_ref,
    flat_mismatch,
    local_checkout,
    parse_model_ref,
    resolve,
    write_provenance,
)


@pytest.mark.parametrize(
    ("text", "hub_id", "name"),
    [
        ("Qwen/Qwen3-8B", "Qwen/Qwen3-8B", "Qwen3-8B"),
        ("`deepseek-ai/DeepSeek-V3.2`", "deepseek-ai/DeepSeek-V3.2", "DeepSeek-V3.2"),
        ("https://huggingface.co/Qwen/Qwen3-30B-A3B", "Qwen/Qwen3-30B-A3B", "Qwen3-30B-A3B"),
        ("https://huggingface.co/Qwen/Qwen3-30B-A3B/tree/main", "Qwen/Qwen3-30B-A3B", "Qwen3-30B-A3B"),
        ("https://modelscope.cn/models/ZhipuAI/GLM-4.5", "ZhipuAI/GLM-4.5", "GLM-4.5"),
        ("/models/Qwen3-8B", None, "Qwen3-8B"),
    ],
)
def test_parse_accepts(text: str, hub_id: str | None, name: str) -> None:
    ref = parse_model_ref(text)
    assert ref.hub_id == hub_id
    assert ref.name == name


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("../../etc/passwd", "characters a model id cannot have"),
        ("a;rm -rf /", "characters a model id cannot have"),
        ("Qwen/Qwen3-8B; curl evil", "characters"),
        ("$(reboot)/x", "characters"),
        ("org/na`me`", "characters"),
        ("/etc/passwd", "/models/<name>"),
        ("/models/../etc", "characters"),
        ("https://evil.example/Qwen/Qwen3", "not a huggingface.co, modelscope.cn or modelscope.ai"),
        ("just-a-name", "not a model id"),
        ("", "No model given"),
        ("a/" + "b" * 300, "longer than"),
    ],
)
def test_parse_refuses_with_actionable_message(text: str, says: str) -> None:
    with pytest.raises(ModelRefError) as err:
        parse_model_ref(text)
    assert says in str(err.value)
    assert "model: <org>/<name>" in str(err.value)  # every refusal says what to write instead


def test_find_prefers_explicit_field_over_mentions() -> None:
    body = "We run vllm-project/vllm-ascend on A2/A3.\n\nmodel: Qwen/Qwen3-8B\n"
    assert find_model_ref("[New Model]: please support", body).hub_id == "Qwen/Qwen3-8B"


def test_find_skips_code_and_quotes_and_repos() -> None:
    body = "> model: evil/quoted\n```\nmodel: evil/fenced\n```\nSee vllm-project/vllm-ascend#1.\n"
    ref = find_model_ref("[New Model]: support moonshotai/Kimi-K2-Instruct", body)
    assert ref.hub_id == "moonshotai/Kimi-K2-Instruct"


def test_find_url_and_path() -> None:
    assert find_model_ref("t", "weights at https://huggingface.co/openai/gpt-oss-20b.").name == "gpt-oss-20b"
    assert find_model_ref("t", "local copy /models/GLM-4.5V please").name == "GLM-4.5V"


def test_find_explicit_but_hostile_is_an_error_not_a_guess() -> None:
    with pytest.raises(ModelRefError):
        find_model_ref("support Qwen/Qwen3-8B", "model: ../../etc/passwd")


def test_find_nothing() -> None:
    with pytest.raises(ModelRefError, match="could not find which model"):
        find_model_ref("Please help", "It crashes on A2/A3 sometimes.")


def test_resolve_stays_inside_root_even_through_symlinks(tmp_path: Path) -> None:
    root = tmp_path / "models"
    (root / "Qwen3-8B").mkdir(parents=True)
    outside = tmp_path / "secret"
    outside.mkdir()
    os.symlink(outside, root / "Evil")
    write_provenance(root / "Qwen3-8B", "Qwen/Qwen3-8B")
    assert resolve(parse_model_ref("Qwen/Qwen3-8B"), root) == (root / "Qwen3-8B").resolve()
    with pytest.raises(ModelRefError, match="outside the models root"):
        resolve(parse_model_ref("/models/Evil"), root)


def test_resolve_org_layout(tmp_path: Path) -> None:
    (tmp_path / "Qwen" / "Qwen3-8B").mkdir(parents=True)
    assert resolve(parse_model_ref("Qwen/Qwen3-8B"), tmp_path) == (tmp_path / "Qwen" / "Qwen3-8B").resolve()


# --- the org is part of the identity (issue 11) ---

SHA = "0123456789abcdef0123456789abcdef01234567"


def test_attacker_org_never_resolves_to_another_orgs_flat_checkout(tmp_path: Path) -> None:
    flat = tmp_path / "Qwen3-8B"
    flat.mkdir()
    write_provenance(flat, "Qwen/Qwen3-8B", SHA)
    assert local_checkout(parse_model_ref("Qwen/Qwen3-8B"), tmp_path) is not None
    # the hub compares org names case-insensitively
    assert local_checkout(parse_model_ref("qwen/Qwen3-8B"), tmp_path) is not None
    evil = parse_model_ref("attacker-org/Qwen3-8B")
    assert local_checkout(evil, tmp_path) is None
    # resolve() then names the org's own directory, which does not exist: the runner downloads
    assert resolve(evil, tmp_path) == tmp_path.resolve() / "attacker-org" / "Qwen3-8B"
    assert not resolve(evil, tmp_path).exists()
    assert "holds Qwen/Qwen3-8B" in (flat_mismatch(evil, tmp_path) or "")


def test_flat_checkout_without_a_marker_is_not_taken_for_any_org(tmp_path: Path) -> None:
    (tmp_path / "Qwen3-8B").mkdir()
    assert local_checkout(parse_model_ref("Qwen/Qwen3-8B"), tmp_path) is None
    assert PROVENANCE_FILE in (flat_mismatch(parse_model_ref("Qwen/Qwen3-8B"), tmp_path) or "")
    # a /models/<name> reference names the directory itself
    found = local_checkout(parse_model_ref("/models/Qwen3-8B"), tmp_path)
    assert found is not None and found.provenance.basis == "layout"


def test_marker_with_another_revision_is_not_the_pinned_one(tmp_path: Path) -> None:
    flat = tmp_path / "Qwen3-8B"
    flat.mkdir()
    write_provenance(flat, "Qwen/Qwen3-8B", SHA)
    ref = parse_model_ref("Qwen/Qwen3-8B")
    assert local_checkout(ref, tmp_path, revision=SHA) is not None
    assert local_checkout(ref, tmp_path, revision="f" * 40) is None


def test_hf_local_dir_metadata_naming_the_pinned_commit_is_provenance(tmp_path: Path) -> None:
    flat = tmp_path / "Qwen3-8B"
    meta = flat / ".cache" / "huggingface" / "download"
    meta.mkdir(parents=True)
    (meta / "config.json.metadata").write_text(f'{SHA}\n"etag"\n1700000000.0\n')
    ref = parse_model_ref("Qwen/Qwen3-8B")
    assert local_checkout(ref, tmp_path) is None  # no pinned revision: nothing proves the org
    found = local_checkout(ref, tmp_path, revision=SHA)
    assert found is not None and found.provenance.basis == "revision"


def test_org_layout_wins_over_a_flat_directory(tmp_path: Path) -> None:
    (tmp_path / "Qwen3-8B").mkdir()
    write_provenance(tmp_path / "Qwen3-8B", "attacker-org/Qwen3-8B")
    (tmp_path / "Qwen" / "Qwen3-8B").mkdir(parents=True)
    found = local_checkout(parse_model_ref("Qwen/Qwen3-8B"), tmp_path)
    assert found is not None and found.path == (tmp_path / "Qwen" / "Qwen3-8B").resolve()


def test_broken_marker_is_no_provenance(tmp_path: Path) -> None:
    flat = tmp_path / "Qwen3-8B"
    flat.mkdir()
    (flat / PROVENANCE_FILE).write_text("Qwen/Qwen3-8B")  # not JSON
    assert local_checkout(parse_model_ref("Qwen/Qwen3-8B"), tmp_path) is None
