"""Shared fixtures for tests (target_repo): vllm-ascend-shaped git checkouts built in the session.

`mkdocs_repo` is laid out like vllm-ascend main, `sphinx_repo` like a release branch; both are real
git repositories with one initial commit and the real e2e configs from tests/fixtures. Built once
per session and copied per test (cheap), so a test may modify its checkout freely.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from runners.demo.sample_repo import make_sample_repo


@pytest.fixture(scope="session")
def _sample_repos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("sample-repos")
    return {flavor: make_sample_repo(base / flavor, flavor) for flavor in ("mkdocs", "sphinx")}  # type: ignore[arg-type]


def _copy(src: Path, dest: Path) -> Path:
    shutil.copytree(src, dest, symlinks=True)
    return dest


@pytest.fixture
def mkdocs_repo(_sample_repos: dict[str, Path], tmp_path: Path) -> Path:
    return _copy(_sample_repos["mkdocs"], tmp_path / "vllm-ascend-main")


@pytest.fixture
def sphinx_repo(_sample_repos: dict[str, Path], tmp_path: Path) -> Path:
    return _copy(_sample_repos["sphinx"], tmp_path / "vllm-ascend-release")


@pytest.fixture(params=["mkdocs", "sphinx"])
def target_repo(request: pytest.FixtureRequest, _sample_repos: dict[str, Path], tmp_path: Path) -> Path:
    return _copy(_sample_repos[request.param], tmp_path / f"vllm-ascend-{request.param}")
