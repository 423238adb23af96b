"""Tokenizer ids past vocab_size, and multimodal checkpoints without their processor files.

Real tokenizer_config.json files (tests/fixtures/hf-configs): InternVL2-2B declares special added
tokens up to id 92552 against vocab_size 92553 (its llm_config), the edge case of a correct file.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from runners.analysis import analyze
from runners.analysis.registry import Registries
from runners.analysis.tokens import ids_beyond_vocab, token_ids
from tests.analysis.conftest import HF_CONFIGS


def copy_fixture(model: str, dest: Path, *names: str) -> Path:
    dest.mkdir(parents=True)
    for name in names:
        shutil.copy(HF_CONFIGS / model / name, dest / name)
    return dest


def side_of(model: str) -> dict:
    return {"tokenizer_config.json": json.loads((HF_CONFIGS / model / "tokenizer_config.json").read_text())}


def test_internvl2_added_tokens_fit_its_vocab_exactly() -> None:
    side = side_of("InternVL2-2B-ft-uav")
    assert max(t.id for t in token_ids(side)) == 92552
    assert ids_beyond_vocab(92553, side) == []


def test_a_vocab_that_misses_special_tokens_blocks() -> None:
    (p,) = ids_beyond_vocab(92550, side_of("InternVL2-2B-ft-uav"))
    assert p.code == "tokenizer-special-id-beyond-vocab" and p.blocking and p.severity == "blocking"
    assert p.message.startswith(
        "3 tokenizer ids at or past vocab_size 92550 (the embedding has rows 0..92549): "
    )
    assert "92550 " in p.message and "(special) from tokenizer_config.json added_tokens_decoder" in p.message
    assert "Set vocab_size to at least 92553" in p.message


@pytest.mark.parametrize(
    ("vocab", "code", "blocking"),
    [(152064, None, False), (151665, None, False), (151664, "expect", None), (151646, "expect", None)],
)
def test_qwen25_vl_added_tokens(vocab: int, code: str | None, blocking: bool | None) -> None:
    side = side_of("Qwen2.5-VL-7B-Instruct")
    problems = ids_beyond_vocab(vocab, side)
    if code is None:
        assert problems == []
        return
    decoder = side["tokenizer_config.json"]["added_tokens_decoder"]
    beyond = {int(k): v for k, v in decoder.items() if int(k) >= vocab}
    want_blocking = any(v["special"] for v in beyond.values())
    (p,) = problems
    assert p.blocking is want_blocking
    assert p.code == ("tokenizer-special-id-beyond-vocab" if want_blocking else "tokenizer-id-beyond-vocab")
    assert p.message.startswith(f"{len(beyond)} tokenizer id")


def test_tokenizer_json_added_tokens_and_model_vocab(tmp_path: Path, real_registries: Registries) -> None:
    d = copy_fixture("Qwen3-8B", tmp_path / "q", "config.json")
    tok = {
        "added_tokens": [
            {"id": 151643, "content": "<|endoftext|>", "special": True},
            {"id": 151936, "content": "<tool_call>", "special": False},
        ],
        "model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "zz": 151937}},
    }
    (d / "tokenizer.json").write_text(json.dumps(tok))
    r = analyze(d, registries=real_registries)
    (p,) = [p for p in r.problems if p.code.startswith("tokenizer")]
    assert p.code == "tokenizer-id-beyond-vocab" and not p.blocking and p.severity == "warning"
    assert "151936 '<tool_call>' from tokenizer.json added_tokens" in p.message
    assert "151937 'zz' from tokenizer.json model vocab" in p.message
    assert r.files["metadata_bytes"] >= (d / "tokenizer.json").stat().st_size


def test_unreadable_tokenizer_json_is_reported_not_fatal(tmp_path: Path, real_registries: Registries) -> None:
    d = copy_fixture("Qwen3-8B", tmp_path / "q", "config.json")
    (d / "tokenizer.json").write_text("{not json")
    r = analyze(d, registries=real_registries)
    assert [p.code for p in r.problems if p.code.startswith("tokenizer")] == ["tokenizer-file-unreadable"]


def test_multimodal_without_processor_files_is_reported(tmp_path: Path, real_registries: Registries) -> None:
    d = copy_fixture("Qwen3-VL-32B-Instruct", tmp_path / "vl", "config.json")
    r = analyze(d, registries=real_registries)
    (p,) = [p for p in r.problems if p.code == "processor-files-missing"]
    assert not p.blocking and "preprocessor_config.json" in p.message and "(image)" in p.message


def test_multimodal_with_its_processor_files_is_not(tmp_path: Path, real_registries: Registries) -> None:
    d = copy_fixture(
        "Qwen2.5-VL-7B-Instruct",
        tmp_path / "vl",
        "config.json",
        "preprocessor_config.json",
        "tokenizer_config.json",
    )
    r = analyze(d, registries=real_registries)
    assert r.multimodal and "processor-files-missing" not in [p.code for p in r.problems]
