"""Tiny checkpoints: cached by script hash, private copies, never deleting a user's directory."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from runners.demo.tiny import MARKER, TinyModelError, cached_path, make_tiny_model


def test_copy_marker_and_refusal(tiny_model, tmp_path: Path, vllm_python: Path) -> None:  # type: ignore[no-untyped-def]
    src = tiny_model("llama-dummy")  # generated (or reused) through the session fixture
    assert (cached_path("llama-dummy") / "config.json").is_file()
    cfg = json.loads((src / "config.json").read_text())
    assert cfg["architectures"] == ["LlamaForCausalLM"] and cfg["head_dim"] == 32
    assert (src / "chat_template.jinja").is_file() and not list(src.glob("*.safetensors"))
    out = make_tiny_model("llama-dummy", tmp_path / "copy", vllm_python)
    assert (out / MARKER).read_text().startswith("llama-dummy ")
    assert make_tiny_model("llama-dummy", out, vllm_python) == out  # our own copy may be replaced
    user_dir = tmp_path / "precious"
    user_dir.mkdir()
    (user_dir / "notes.txt").write_text("keep me")
    with pytest.raises(TinyModelError, match="not a tiny model"):
        make_tiny_model("llama-dummy", user_dir, vllm_python)
    assert (user_dir / "notes.txt").read_text() == "keep me"
    with pytest.raises(TinyModelError, match="unknown tiny model kind"):
        make_tiny_model("gpt-17", tmp_path / "x", vllm_python)
