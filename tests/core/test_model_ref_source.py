"""The hub as part of a model's identity (runners.model_ref): how ModelScope is named, that the
job's stored `model` round-trips, and that a local checkout of one hub never stands in for the
other's repo of the same org/name unless its provenance says so."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from runners.model_ref import (
    PROVENANCE_FILE,
    ModelRefError,
    find_model_ref,
    flat_mismatch,
    local_checkout,
    parse_model_ref,
    read_provenance,
    write_provenance,
)


@pytest.mark.parametrize(
    ("text", "source", "hub_id"),
    [
        ("Qwen/Qwen3-8B", "huggingface", "Qwen/Qwen3-8B"),
        ("hf:Qwen/Qwen3-8B", "huggingface", "Qwen/Qwen3-8B"),
        ("huggingface:Qwen/Qwen3-8B", "huggingface", "Qwen/Qwen3-8B"),
        ("https://huggingface.co/Qwen/Qwen3-8B", "huggingface", "Qwen/Qwen3-8B"),
        ("modelscope:Qwen/Qwen3-8B", "modelscope", "Qwen/Qwen3-8B"),
        ("ModelScope:ZhipuAI/GLM-4.5", "modelscope", "ZhipuAI/GLM-4.5"),
        ("https://modelscope.cn/models/ZhipuAI/GLM-4.5", "modelscope", "ZhipuAI/GLM-4.5"),
        ("https://www.modelscope.cn/models/Qwen/Qwen3-8B/summary", "modelscope", "Qwen/Qwen3-8B"),
        ("https://www.modelscope.cn/models/Qwen/Qwen3-8B/files", "modelscope", "Qwen/Qwen3-8B"),
        ("https://www.modelscope.ai/models/Qwen/Qwen3-8B", "modelscope", "Qwen/Qwen3-8B"),
        ("https://modelscope.ai/models/ZhipuAI/GLM-4.5/summary", "modelscope", "ZhipuAI/GLM-4.5"),
        (
            "https://modelscope.cn/models/Qwen/Qwen3-8B/file/view/master/config.json",
            "modelscope",
            "Qwen/Qwen3-8B",
        ),
    ],
)
def test_the_hub_is_read_from_the_reference_and_round_trips(text: str, source: str, hub_id: str) -> None:
    ref = parse_model_ref(text)
    assert (ref.source, ref.hub_id, ref.kind) == (source, hub_id, "hub")
    # the job stores ref.display as its model option; every later stage re-parses it
    assert parse_model_ref(ref.display) == ref
    assert ref.display.startswith("modelscope:") == (source == "modelscope")


@pytest.mark.parametrize(
    "text",
    [
        "modelscope:a/b/c",
        "modelscope:../etc/passwd",
        "modelscope:org/na;me",
        "hf:org",
        "modelscope:/m/x",
        "https://modelscope.ai.evil.example/models/a/b",
        "https://evilmodelscope.ai/models/a/b",
    ],
)
def test_a_bad_prefixed_id_is_refused(text: str) -> None:
    with pytest.raises(ModelRefError):
        parse_model_ref(text)


def test_a_path_reference_has_no_hub() -> None:
    ref = parse_model_ref("/models/Qwen3-8B")
    assert ref.source == "huggingface" and ref.display == "/models/Qwen3-8B"


@pytest.mark.parametrize(
    ("body", "display"),
    [
        ("model: modelscope:Qwen/Qwen3-8B", "modelscope:Qwen/Qwen3-8B"),
        ("Please adapt modelscope:Qwen/Qwen3-8B, it is popular", "modelscope:Qwen/Qwen3-8B"),
        ("see https://www.modelscope.cn/models/Qwen/Qwen3-8B/summary", "modelscope:Qwen/Qwen3-8B"),
        ("from https://www.modelscope.ai/models/Qwen/Qwen3-8B.", "modelscope:Qwen/Qwen3-8B"),
        ("Please adapt `modelscope:Qwen/Qwen3-8B`", "modelscope:Qwen/Qwen3-8B"),
        ("Please adapt Qwen/Qwen3-8B", "Qwen/Qwen3-8B"),
    ],
)
def test_issue_text_keeps_the_hub(body: str, display: str) -> None:
    """A prefixed id in prose is never read as the bare (Hugging Face) org/name inside it."""
    assert find_model_ref("support a model", body).display == display


def _checkout(d: Path) -> Path:
    d.mkdir(parents=True)
    (d / "config.json").write_text("{}")
    return d


def test_a_flat_checkout_serves_only_the_hub_its_marker_names(tmp_path: Path) -> None:
    root = tmp_path / "models"
    flat = _checkout(root / "Qwen3-8B")
    write_provenance(flat, "Qwen/Qwen3-8B")  # no source: what every existing marker means (HF)
    hf, ms = parse_model_ref("Qwen/Qwen3-8B"), parse_model_ref("modelscope:Qwen/Qwen3-8B")
    assert local_checkout(hf, root) is not None
    assert local_checkout(ms, root) is None
    why = flat_mismatch(ms, root)
    assert why is not None and "not modelscope" in why and "modelscope:Qwen/Qwen3-8B" in why
    write_provenance(flat, "Qwen/Qwen3-8B", source="modelscope")
    assert local_checkout(hf, root) is None and local_checkout(ms, root) is not None
    write_provenance(flat, "Qwen/Qwen3-8B", source=["huggingface", "modelscope"])  # the operator says so
    found = local_checkout(ms, root)
    assert found is not None and found.provenance.sources == ("huggingface", "modelscope")
    assert local_checkout(hf, root) is not None
    # the org is still part of the identity on ModelScope
    assert local_checkout(parse_model_ref("modelscope:attacker/Qwen3-8B"), root) is None


def test_the_nested_layout_stands_for_hugging_face_unless_its_marker_says_otherwise(tmp_path: Path) -> None:
    root = tmp_path / "models"
    nested = _checkout(root / "Qwen" / "Qwen3-8B")
    hf, ms = parse_model_ref("Qwen/Qwen3-8B"), parse_model_ref("modelscope:Qwen/Qwen3-8B")
    assert local_checkout(hf, root) is not None and local_checkout(ms, root) is None
    write_provenance(nested, "Qwen/Qwen3-8B", source="modelscope")
    assert local_checkout(hf, root) is None
    got = local_checkout(ms, root)
    assert got is not None and got.path == nested.resolve() and got.provenance.basis == "marker"


def test_hf_local_dir_metadata_does_not_vouch_for_modelscope(tmp_path: Path) -> None:
    root = tmp_path / "models"
    flat = _checkout(root / "Tiny")
    sha = "a" * 40
    meta = flat / ".cache" / "huggingface" / "download"
    meta.mkdir(parents=True)
    (meta / "config.json.metadata").write_text(f"{sha}\netag\n0\n")
    assert local_checkout(parse_model_ref("org/Tiny"), root, sha) is not None
    assert local_checkout(parse_model_ref("modelscope:org/Tiny"), root, sha) is None


def test_a_marker_with_an_unknown_source_vouches_for_nothing(tmp_path: Path) -> None:
    d = _checkout(tmp_path / "X")
    (d / PROVENANCE_FILE).write_text(json.dumps({"repo_id": "org/X", "source": "somewhere-else"}))
    assert read_provenance(d) is None
