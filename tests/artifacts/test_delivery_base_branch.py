"""Delivery against the PR's base branch as it is at delivery time, not the runner's checkout.

The runner's artifacts stage works on its own checkout, which can be hours old. At delivery the
control plane reads the base branch through the GitHub contents API (stand-in: a real HTTP server)
and re-applies the registration as one line on the CURRENT nav file; docs flavor, tutorial form and
"already exists" decisions follow the base too.
"""

from __future__ import annotations

import difflib
import subprocess
from pathlib import Path
from typing import Any

import pytest

from bot.delivery import deliver
from tests.artifacts import builders as b
from tests.plugins.standin import INSTALLATION, REPO
from tests.standin.git_api import seed_commit, tree_files

MODEL = "org/Foo-7B"
TUTORIAL = "docs/source/tutorials/models/Foo-7B.md"


def checkout_files(repo: Path) -> dict[str, str]:
    names = subprocess.run(
        ["git", "ls-files"], cwd=repo, check=True, capture_output=True, text=True
    ).stdout.split()
    return {n: (repo / n).read_text(encoding="utf-8") for n in names}


def results_for() -> dict[str, Any]:
    return {
        "analyze": b.analysis(architecture="FooForCausalLM"),
        "dummy-gate": b.gate("dummy-gate", MODEL),
        "real-gate": b.gate("real-gate", MODEL),
        "features": b.features(),
        "capacity": b.capacity(),
        "accuracy": b.accuracy(MODEL),
    }


def runner_files(checkout: Path, tmp_path: Path, results: dict[str, Any]) -> dict[str, str]:
    """What the runner's artifacts stage produced on its (old) checkout."""
    from runners.context import StageContext
    from runners.stages.artifacts import run as artifacts_stage
    from runners.workspace import Workspace

    ctx = StageContext(
        job_id="job-9",
        options=b.options(MODEL, issue=9),
        model_path=tmp_path,
        workspace=Workspace.for_job("job-9", tmp_path / "work"),
        profile=None,
        previous=results,
        target_repo=checkout,
    )
    result = artifacts_stage(ctx)
    assert result.status == "passed", result.diagnosis
    root = ctx.workspace.repo_files
    return {str(p.relative_to(root)): p.read_text() for p in root.rglob("*") if p.is_file()}


def run_deliver(app_settings: Any, results: dict[str, Any], files: dict[str, str]) -> Any:
    from bot.github import GitHubClient
    from bot.jobs.model import Job
    from bot.repo_config import RepoConfig

    job = Job(repo=REPO, installation_id=INSTALLATION, issue=9, options=b.options(MODEL))
    github = GitHubClient(app_settings).installation(INSTALLATION)
    return deliver(
        job=job, results=results, files=files, github=github, config=RepoConfig(), settings=app_settings
    )


def added_lines(old: str, new: str) -> tuple[list[str], list[str]]:
    diff = list(difflib.unified_diff(old.splitlines(), new.splitlines(), lineterm="", n=0))
    plus = [ln[1:] for ln in diff if ln.startswith("+") and not ln.startswith("+++")]
    minus = [ln[1:] for ln in diff if ln.startswith("-") and not ln.startswith("---")]
    return plus, minus


def test_nav_is_reapplied_on_a_base_that_moved(
    github_standin: Any, mkdocs_repo: Path, tmp_path: Path, app_settings: Any
) -> None:
    old = checkout_files(mkdocs_repo)
    seed_commit(github_standin, REPO, old)  # the base when the runner checked it out
    results = results_for()
    files = runner_files(mkdocs_repo, tmp_path, results)
    assert "mkdocs.yml" in files  # the runner's whole copy, computed on the old base
    # meanwhile the base moved: another tutorial registered and an unrelated edit in mkdocs.yml
    moved = dict(old)
    nav = moved["mkdocs.yml"]
    lines = nav.splitlines(keepends=True)
    at = next(i for i, ln in enumerate(lines) if "tutorials/models/" in ln)
    indent = lines[at][: len(lines[at]) - len(lines[at].lstrip())]
    lines.insert(at + 1, f"{indent}- tutorials/models/Other-Model.md\n")
    moved["mkdocs.yml"] = "# edited on main after the runner's checkout\n" + "".join(lines)
    moved["docs/source/tutorials/models/Other-Model.md"] = "# Other-Model\n\n## 1 Introduction\n"
    new_base = seed_commit(github_standin, REPO, moved)

    outcome = run_deliver(app_settings, results, files)
    committed = tree_files(github_standin, outcome.sha)
    plus, minus = added_lines(moved["mkdocs.yml"], committed["mkdocs.yml"])
    assert plus == [f"{indent}- tutorials/models/Foo-7B.md"] and minus == []  # the new base + one line
    assert "Other-Model.md" in committed["mkdocs.yml"]  # the base's newer entry survived
    assert committed["mkdocs.yml"] != files["mkdocs.yml"]  # not the runner's copy
    assert TUTORIAL in committed and "tests/e2e/models/configs/Foo-7B.yaml" in committed
    from tests.standin.git_api import git_world

    # the parent is the base as read at delivery (the contents were read at that commit)
    assert git_world(github_standin)["objects"][outcome.sha]["parents"] == [new_base]


def test_base_flavor_and_existing_pages_decide(
    github_standin: Any, mkdocs_repo: Path, sphinx_repo: Path, tmp_path: Path, app_settings: Any
) -> None:
    """The runner had a MkDocs checkout; the base branch (a release branch) is Sphinx now."""
    results = results_for()
    files = runner_files(mkdocs_repo, tmp_path, results)
    base = checkout_files(sphinx_repo)
    seed_commit(github_standin, REPO, base)
    outcome = run_deliver(app_settings, results, files)
    committed = tree_files(github_standin, outcome.sha)
    index = "docs/source/tutorials/models/index.md"
    plus, minus = added_lines(base[index], committed[index])
    assert len(plus) == 1 and plus[0].startswith("Foo-7B") and minus == []
    assert committed.get("mkdocs.yml") == base.get("mkdocs.yml")  # nothing MkDocs-shaped committed
    # the tutorial in the base's form (Sphinx/MyST), not the runner's MkDocs one
    from runners.artifacts import collect
    from runners.artifacts.docs import render_tutorial
    from runners.artifacts.target import detect

    facts = collect(b.options(MODEL, issue=9), results)
    assert committed[TUTORIAL] == render_tutorial(facts, detect(sphinx_repo))
    assert committed[TUTORIAL] != files[TUTORIAL]
    assert set(outcome.files) == {TUTORIAL, index, "tests/e2e/models/configs/Foo-7B.yaml"}

    # a page and an e2e config a maintainer added on the base are never overwritten
    base2 = {**checkout_files(mkdocs_repo), TUTORIAL: "# Foo-7B\n\nwritten by a human\n"}
    base2["tests/e2e/models/configs/Foo-7B.yaml"] = "model_name: org/Foo-7B\n# the maintainers' baseline\n"
    seed_commit(github_standin, REPO, base2)
    again = run_deliver(app_settings, results, files)
    committed = tree_files(github_standin, again.sha)
    assert committed[TUTORIAL] == base2[TUTORIAL]
    assert committed["tests/e2e/models/configs/Foo-7B.yaml"] == base2["tests/e2e/models/configs/Foo-7B.yaml"]
    assert TUTORIAL not in again.files and "tests/e2e/models/configs/Foo-7B.yaml" not in again.files
    plus, _ = added_lines(base2["mkdocs.yml"], committed["mkdocs.yml"])
    assert plus == [next(ln for ln in committed["mkdocs.yml"].splitlines() if "Foo-7B.md" in ln)]


def test_a_base_that_is_not_vllm_ascend_fails_delivery_clearly(
    github_standin: Any, mkdocs_repo: Path, tmp_path: Path, app_settings: Any
) -> None:
    from runners.delivery_local import DeliveryError

    results = results_for()
    files = runner_files(mkdocs_repo, tmp_path, results)
    seed_commit(github_standin, REPO, {"README.md": "hello\n"})
    with pytest.raises(DeliveryError, match="base branch"):
        run_deliver(app_settings, results, files)
