"""`adapt-bot run --candidate`: the local commit carries the candidate's minimal diff (the files its
branch changed against the merge-base), next to the artifacts, in one signed-off commit."""

from __future__ import annotations

import subprocess
from pathlib import Path

from bot.cli.run import pin_candidate
from bot.local_run import LocalRunConfig, _deliver
from runners.contracts import JobOptions
from runners.demo.sample_repo import make_sample_repo
from runners.workspace import Workspace
from tests.core.test_candidate import make_plugin_repo


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, check=True).stdout


def test_the_local_commit_carries_the_candidates_files(tmp_path: Path) -> None:
    plugin, sha, _ = make_plugin_repo(tmp_path)
    cand = pin_candidate({"repo": str(plugin), "ref": "feat/adaptplug", "local": True})
    target = make_sample_repo(tmp_path / "vllm-ascend", "mkdocs")
    base = git(target, "rev-parse", "HEAD").strip()
    ws = Workspace.for_job("local-x", tmp_path / "work")
    (ws.repo_files / "tests/e2e/models/configs").mkdir(parents=True)
    (ws.repo_files / "tests/e2e/models/configs/x.yaml").write_text("model_name: x\n", encoding="utf-8")
    options = JobOptions(model="acme/x", local_path=str(tmp_path), candidate=cand, issue=3)
    done = _deliver(LocalRunConfig(options=options, repo=target, out=tmp_path / "out"), ws)
    changed = set(git(target, "diff", "--name-only", base, done["branch"]).split())
    assert changed == {"tests/e2e/models/configs/x.yaml", "pyproject.toml", "adaptplug/__init__.py"}
    assert git(target, "rev-list", "--count", f"{base}..{done['branch']}").strip() == "1"
    assert git(target, "show", f"{done['branch']}:adaptplug/__init__.py") == git(
        plugin, "show", f"{sha}:adaptplug/__init__.py"
    )
    assert "README.md" not in changed  # the candidate's main moved on; only the branch's own change
