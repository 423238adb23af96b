"""The artifacts stage on real checkouts, then ONE signed-off commit, checked with git itself."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from runners.artifacts.target import load_mkdocs, toctree_entries
from runners.context import StageContext
from runners.contracts import StageResult
from runners.delivery_local import DeliveryError, commit_local, with_signoff
from runners.stages.artifacts import run as artifacts_stage
from runners.workspace import Workspace
from tests.artifacts import builders as b

SIGNOFF = "adapt-bot[bot] <123456+adapt-bot[bot]@users.noreply.github.com>"


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, text=True).stdout


def stage(repo: Path | None, tmp_path: Path, results: dict[str, StageResult] | None = None) -> StageContext:
    ws = Workspace.for_job("job-42", tmp_path / "work")
    return StageContext(
        job_id="job-42",
        options=b.options(),
        model_path=tmp_path,
        workspace=ws,
        profile=None,
        previous=results if results is not None else b.full_results(),
        target_repo=repo,
    )


def test_stage_writes_the_files_for_each_flavor(target_repo: Path, tmp_path: Path) -> None:
    ctx = stage(target_repo, tmp_path)
    result = artifacts_stage(ctx)
    assert result.status == "passed", result.diagnosis
    # Qwen3-8B already has a config, a page and a nav entry in the checkout: nothing is overwritten
    assert result.data["files"] == []
    notes = " ".join(result.data["notes"])
    assert "Qwen3-8B.yaml already exists" in notes and "Qwen3-8B.md already exists" in notes
    assert "already lists Qwen3-8B.md" in notes
    assert (ctx.workspace.artifacts / "report.zh.md").is_file()
    assert (ctx.workspace.artifacts / "runbook.zh.md").is_file()


def _new_model_results(model: str = "org/Foo-7B") -> dict[str, StageResult]:
    return {
        "analyze": b.analysis(architecture="FooForCausalLM"),
        "dummy-gate": b.gate("dummy-gate", model),
        "real-gate": b.gate("real-gate", model),
        "features": b.features(),
        "capacity": b.capacity(),
        "accuracy": b.accuracy(model),
    }


def _run_stage(repo: Path, tmp_path: Path, model: str = "org/Foo-7B") -> tuple[StageContext, StageResult]:
    ctx = stage(repo, tmp_path, _new_model_results(model))
    ctx.options = b.options(model)
    return ctx, artifacts_stage(ctx)


@pytest.mark.parametrize("flavor", ["mkdocs", "sphinx"])
def test_stage_then_one_signed_off_commit(
    flavor: str, mkdocs_repo: Path, sphinx_repo: Path, tmp_path: Path
) -> None:
    repo = mkdocs_repo if flavor == "mkdocs" else sphinx_repo
    ctx, result = _run_stage(repo, tmp_path)
    assert result.status == "passed", result.diagnosis
    nav = "mkdocs.yml" if flavor == "mkdocs" else "docs/source/tutorials/models/index.md"
    expected = {"tests/e2e/models/configs/Foo-7B.yaml", "docs/source/tutorials/models/Foo-7B.md", nav}
    assert set(result.data["files"]) == expected

    head_before = git(repo, "rev-parse", "HEAD").strip()
    branch_before = git(repo, "symbolic-ref", "--short", "HEAD").strip()
    done = commit_local(
        repo,
        ctx.workspace.repo_files,
        branch="adapt/foo-7b-42",
        message="[Doc][Test] Add Foo-7B tutorial and e2e accuracy config",
        signoff=SIGNOFF,
    )
    # git itself: exactly one commit on top of the base, with exactly the intended files
    assert git(repo, "rev-list", "--count", f"{head_before}..adapt/foo-7b-42").strip() == "1"
    assert git(repo, "rev-parse", "adapt/foo-7b-42^").strip() == head_before == done.base
    changed = set(git(repo, "diff", "--name-only", head_before, "adapt/foo-7b-42").split())
    assert changed == expected == set(done.files)
    trailers = git(repo, "log", "-1", "--format=%(trailers:key=Signed-off-by,valueonly)", "adapt/foo-7b-42")
    assert trailers.strip() == SIGNOFF
    author = git(repo, "log", "-1", "--format=%an <%ae>|%cn <%ce>", "adapt/foo-7b-42").strip()
    assert author == f"{SIGNOFF}|{SIGNOFF}"
    # the user's checkout is untouched
    assert git(repo, "status", "--porcelain") == ""
    assert git(repo, "symbolic-ref", "--short", "HEAD").strip() == branch_before
    # the committed files are what the target repo's tooling reads
    cfg = yaml.safe_load(git(repo, "show", "adapt/foo-7b-42:tests/e2e/models/configs/Foo-7B.yaml"))
    assert cfg["model_name"] == "org/Foo-7B"
    nav_text = git(repo, "show", f"adapt/foo-7b-42:{nav}")
    if flavor == "mkdocs":
        assert "tutorials/models/Foo-7B.md" in str(load_mkdocs(nav_text)["nav"])
    else:
        assert toctree_entries(nav_text)[-1] == "Foo-7B.md"


def test_rerun_replaces_the_branch_with_one_new_commit(mkdocs_repo: Path, tmp_path: Path) -> None:
    ctx, _ = _run_stage(mkdocs_repo, tmp_path)
    first = commit_local(
        mkdocs_repo, ctx.workspace.repo_files, branch="adapt/foo-7b-42", message="m", signoff=SIGNOFF
    )
    cfg = ctx.workspace.repo_files / "tests/e2e/models/configs/Foo-7B.yaml"
    cfg.write_text(cfg.read_text().replace("0.765", "0.77"))
    second = commit_local(
        mkdocs_repo, ctx.workspace.repo_files, branch="adapt/foo-7b-42", message="m", signoff=SIGNOFF
    )
    assert second.sha != first.sha and second.base == first.base
    assert git(mkdocs_repo, "rev-list", "--count", f"{first.base}..adapt/foo-7b-42").strip() == "1"


def test_candidate_branch_and_patch_go_into_the_same_single_commit(mkdocs_repo: Path, tmp_path: Path) -> None:
    ctx, _ = _run_stage(mkdocs_repo, tmp_path)
    base = git(mkdocs_repo, "rev-parse", "HEAD").strip()
    # a candidate branch with two commits of model code
    git(mkdocs_repo, "switch", "-q", "-c", "candidate")
    (mkdocs_repo / "vllm_ascend/models").mkdir(parents=True)
    (mkdocs_repo / "vllm_ascend/models/foo.py").write_text("class Foo:\n    pass\n")
    git(mkdocs_repo, "add", "vllm_ascend/models/foo.py")
    git(mkdocs_repo, "-c", "user.name=a", "-c", "user.email=a@b", "commit", "-qm", "wip 1")
    (mkdocs_repo / "vllm_ascend/models/foo.py").write_text("class Foo:\n    x = 1\n")
    git(mkdocs_repo, "-c", "user.name=a", "-c", "user.email=a@b", "commit", "-qam", "wip 2")
    git(mkdocs_repo, "switch", "-q", "main")
    # and a patch file
    patch = tmp_path / "fix.patch"
    patch.write_text(
        "diff --git a/README.md b/README.md\n--- a/README.md\n+++ b/README.md\n@@ -1 +1,2 @@\n"
        " # vllm-ascend (sample checkout for adapt-bot)\n+Foo-7B is supported.\n"
    )
    done = commit_local(
        mkdocs_repo,
        ctx.workspace.repo_files,
        branch="adapt/foo-7b-42",
        message="[Feature] Support Foo-7B on Ascend",
        signoff=SIGNOFF,
        candidate="candidate",
        patch=patch,
    )
    assert git(mkdocs_repo, "rev-list", "--count", f"{base}..adapt/foo-7b-42").strip() == "1"
    assert {"vllm_ascend/models/foo.py", "README.md", "tests/e2e/models/configs/Foo-7B.yaml"} <= set(
        done.files
    )
    assert git(mkdocs_repo, "show", "adapt/foo-7b-42:vllm_ascend/models/foo.py") == "class Foo:\n    x = 1\n"
    assert "Foo-7B is supported." in git(mkdocs_repo, "show", "adapt/foo-7b-42:README.md")


def test_refusals_are_clear(mkdocs_repo: Path, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DeliveryError, match="nothing to commit"):
        commit_local(mkdocs_repo, empty, branch="adapt/x-1", message="m", signoff=SIGNOFF)
    with pytest.raises(DeliveryError, match="Name <email"):
        commit_local(mkdocs_repo, empty, branch="adapt/x-1", message="m", signoff="just a name")
    with pytest.raises(DeliveryError, match="valid branch"):
        commit_local(mkdocs_repo, empty, branch="adapt/../x", message="m", signoff=SIGNOFF)
    link_root = tmp_path / "links"
    link_root.mkdir()
    (link_root / "evil").symlink_to("/etc/passwd")
    with pytest.raises(DeliveryError, match="symlinks"):
        commit_local(mkdocs_repo, link_root, branch="adapt/x-1", message="m", signoff=SIGNOFF)
    not_git = tmp_path / "plain"
    not_git.mkdir()
    with pytest.raises(DeliveryError):
        commit_local(not_git, empty, branch="adapt/x-1", message="m", signoff=SIGNOFF)


def test_signoff_trailer_is_added_once() -> None:
    msg = with_signoff("Title\n\nBody text.", SIGNOFF)
    assert msg == f"Title\n\nBody text.\n\nSigned-off-by: {SIGNOFF}\n"
    assert with_signoff(msg, SIGNOFF) == msg
    assert with_signoff("T\n\nCo-authored-by: A <a@b>", SIGNOFF).endswith(
        f"Co-authored-by: A <a@b>\nSigned-off-by: {SIGNOFF}\n"
    )


def test_stage_fails_clearly_without_a_target_or_with_a_wrong_one(tmp_path: Path) -> None:
    assert artifacts_stage(stage(None, tmp_path)).reason == "no-target-repo"
    r = artifacts_stage(stage(tmp_path, tmp_path))
    assert (r.status, r.reason) == ("failed", "bad-target-repo") and "not a vllm-ascend checkout" in (
        r.diagnosis or ""
    )


def test_stage_without_accuracy_writes_the_rest_and_fails_with_the_reason(
    mkdocs_repo: Path, tmp_path: Path
) -> None:
    results = _new_model_results()
    del results["accuracy"]
    ctx = stage(mkdocs_repo, tmp_path, results)
    ctx.options = b.options("org/Foo-7B")
    r = artifacts_stage(ctx)
    assert (r.status, r.reason) == ("failed", "incomplete-artifacts")
    assert r.data["missing"] == ["tests/e2e/models/configs/Foo-7B.yaml"]
    assert "docs/source/tutorials/models/Foo-7B.md" in r.data["files"]


def test_repo_config_turns_on_ci_list_entries(mkdocs_repo: Path, tmp_path: Path) -> None:
    from bot.cli.run import repo_artifacts
    from runners.contracts import ArtifactOptions

    # the runner never reads the checkout's config: a file there changes nothing by itself
    (mkdocs_repo / ".github/adapt-bot.yml").write_text("artifacts:\n  nightly: pr_only\n  model_list: true\n")
    _, r = _run_stage(mkdocs_repo, tmp_path)
    assert not {".github/workflows/configs/nightly_config.yaml"} & set(r.data["files"])
    # the options carry it, as the control plane (or `adapt-bot run`) read it with bot.repo_config
    wanted = repo_artifacts(mkdocs_repo)
    assert wanted == ArtifactOptions(nightly="pr_only", model_list=True)
    ctx = stage(mkdocs_repo, tmp_path / "2", _new_model_results("org/Foo-7B"))
    ctx.options = b.options("org/Foo-7B").model_copy(update={"artifacts": wanted})
    r = artifacts_stage(ctx)
    assert r.status == "passed"
    assert {
        ".github/workflows/configs/nightly_config.yaml",
        ".github/workflows/misc/model_dataset_list.json",
    } <= set(r.data["files"])
