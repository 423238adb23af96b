"""GitHub mode against the stand-in (a real HTTP server; githubkit pointed at it): the commit goes
through the Git Database API, one PR, reruns update it, check runs carry buttons."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest
from githubkit import GitHub, TokenAuthStrategy
from githubkit.exception import RequestFailed

from bot.delivery import (
    ACTION_INTENTS,
    CANCEL,
    RERUN_REAL,
    CheckAction,
    CheckRunSpec,
    bot_signoff,
    deliver_pr,
    gate_check_runs,
    publish_check_runs,
)
from runners.artifacts import collect, pr_body, pr_title
from runners.context import StageContext
from runners.stages.artifacts import run as artifacts_stage
from runners.workspace import Workspace
from tests.artifacts import builders as b
from tests.plugins.standin import INSTALLATION, REPO
from tests.standin.git_api import check_runs_of, pulls_of, seed_commit, tree_files

MODEL = "org/Foo-7B"


def client(state: Any) -> GitHub[Any]:
    token, _ = state.issue_token(INSTALLATION)
    return GitHub(TokenAuthStrategy(token), base_url=state.api + "/", auto_retry=False, http_cache=False)


def checkout_files(repo: Path) -> dict[str, str]:
    names = subprocess.run(
        ["git", "ls-files"], cwd=repo, check=True, capture_output=True, text=True
    ).stdout.split()
    return {n: (repo / n).read_text(encoding="utf-8") for n in names}


@pytest.fixture
def staged(github_standin: Any, mkdocs_repo: Path, tmp_path: Path) -> tuple[Any, Path, dict[str, Any], str]:
    """The stand-in repo seeded with the sample checkout; the artifacts stage run against it."""
    base_sha = seed_commit(github_standin, REPO, checkout_files(mkdocs_repo))
    results = {
        "analyze": b.analysis(architecture="FooForCausalLM"),
        "dummy-gate": b.gate("dummy-gate", MODEL),
        "real-gate": b.gate("real-gate", MODEL, status="failed"),
        "features": b.features(),
        "capacity": b.capacity(),
        "accuracy": b.accuracy(MODEL),
    }
    results["real-gate"].reason = "crashed"
    ctx = StageContext(
        job_id="job-7",
        options=b.options(MODEL, issue=7),
        model_path=tmp_path,
        workspace=Workspace.for_job("job-7", tmp_path / "work"),
        profile=None,
        previous=results,
        target_repo=mkdocs_repo,
    )
    result = artifacts_stage(ctx)
    assert result.status == "passed", result.diagnosis
    return ctx, ctx.workspace.repo_files, results, base_sha


def _deliver(gh: GitHub[Any], ctx: StageContext, root: Path, results: dict[str, Any], draft: bool, **kw: Any):
    files = sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())
    signoff = bot_signoff("adapt-bot-test", 4242_000)
    return deliver_pr(
        gh,
        REPO,
        root,
        branch="adapt/foo-7b-7",
        title=pr_title(ctx.options, results),
        body=pr_body(ctx.options, results, job_id="job-7", files=files),
        message=pr_title(ctx.options, results),
        signoff=signoff,
        draft=draft,
        **kw,
    )


def test_deliver_then_rerun_updates_the_same_pr(github_standin: Any, staged: Any) -> None:
    ctx, root, results, base_sha = staged
    gh = client(github_standin)

    first = _deliver(gh, ctx, root, results, draft=True)
    assert first.created and first.draft and first.base_sha == base_sha
    pulls = pulls_of(github_standin, REPO)
    assert len(pulls) == 1 and pulls[0]["head_ref"] == "adapt/foo-7b-7" and pulls[0]["base_ref"] == "main"
    assert "Fixes #7" in pulls[0]["body"] and pulls[0]["title"].startswith("[Doc][Test]")

    # the commit: one, on the base, Verified (no custom author/committer), signed off by the bot
    commit = gh.rest.git.get_commit("octo-org", "vllm-ascend", first.sha).parsed_data
    assert [p.sha for p in commit.parents] == [base_sha]
    assert commit.verification.verified is True
    assert commit.message.rstrip().endswith(
        "Signed-off-by: adapt-bot-test[bot] <4242000+adapt-bot-test[bot]@users.noreply.github.com>"
    )
    creates = github_standin.requests_to("POST", "/repos/octo-org/vllm-ascend/git/commits")
    assert len(creates) == 1 and "author" not in creates[0].body and "committer" not in creates[0].body
    tree = tree_files(github_standin, first.sha)
    assert "tutorials/models/Foo-7B.md" in tree["mkdocs.yml"]
    e2e = tree["tests/e2e/models/configs/Foo-7B.yaml"]
    # measured on the cpu profile: the config says so, and never names Ascend hardware as measured
    assert e2e.startswith("# adapt-bot: these values were measured on the cpu runner profile")
    assert '\nmodel_name: "org/Foo-7B"\n' in e2e and "Atlas A2 Series" not in e2e.split("hardware:", 1)[1]
    changed = {p for p in tree if tree.get(p) != checkout_files(ctx.target_repo).get(p)}
    assert (
        changed
        == set(first.files)
        == {
            "mkdocs.yml",
            "docs/source/tutorials/models/Foo-7B.md",
            "tests/e2e/models/configs/Foo-7B.yaml",
        }
    )

    # rerun after the real gate passed: same branch, same PR, new single commit, no longer a draft
    results["real-gate"] = b.gate("real-gate", MODEL)
    second = _deliver(gh, ctx, root, results, draft=False)
    assert not second.created and second.number == first.number and not second.draft
    assert second.sha != first.sha
    assert len(pulls_of(github_standin, REPO)) == 1
    pr = gh.rest.pulls.get("octo-org", "vllm-ascend", first.number).parsed_data
    assert pr.head.sha == second.sha and pr.draft is False
    assert "stays a draft" not in (pr.body or "")
    again = gh.rest.git.get_commit("octo-org", "vllm-ascend", second.sha).parsed_data
    assert [p.sha for p in again.parents] == [base_sha]  # still exactly one commit on the base
    assert len(github_standin.requests_to("POST", "/repos/octo-org/vllm-ascend/pulls")) == 1


def test_fork_mode_pushes_to_the_fork_and_opens_the_pr_upstream(github_standin: Any, staged: Any) -> None:
    ctx, root, results, _ = staged
    github_standin.add_repo("adapt-bot-fork/vllm-ascend", INSTALLATION)
    gh = client(github_standin)
    done = _deliver(gh, ctx, root, results, draft=True, fork="adapt-bot-fork/vllm-ascend")
    pr = gh.rest.pulls.get("octo-org", "vllm-ascend", done.number).parsed_data
    assert pr.head.label == "adapt-bot-fork:adapt/foo-7b-7" and pr.head.sha == done.sha
    assert gh.rest.git.get_ref(
        "adapt-bot-fork", "vllm-ascend", "heads/adapt/foo-7b-7"
    ).parsed_data.object_.sha == (done.sha)
    with pytest.raises(RequestFailed):  # nothing was pushed upstream
        gh.rest.git.get_ref("octo-org", "vllm-ascend", "heads/adapt/foo-7b-7")
    rerun = _deliver(gh, ctx, root, results, draft=True, fork="adapt-bot-fork/vllm-ascend")
    assert rerun.number == done.number and not rerun.created


def test_check_runs_with_buttons_are_created_then_updated(github_standin: Any, staged: Any) -> None:
    ctx, root, results, _ = staged
    gh = client(github_standin)
    done = _deliver(gh, ctx, root, results, draft=True)
    specs = gate_check_runs(collect(ctx.options, results), logs_url="https://adapt.example/jobs/job-7")
    ids = publish_check_runs(gh, REPO, done.sha, specs, external_id="job-7")
    assert set(ids) == {"adapt-bot / dummy gate", "adapt-bot / real gate"}
    runs = {r["name"]: r for r in check_runs_of(github_standin, REPO)}
    real = runs["adapt-bot / real gate"]
    assert (real["status"], real["conclusion"], real["external_id"]) == ("completed", "failure", "job-7")
    assert [a["identifier"] for a in real["actions"]] == ["rerun-real-gate", "cancel"]
    assert runs["adapt-bot / dummy gate"]["conclusion"] == "success"
    assert real["output"]["title"] == "Real-weight gate failed: crashed"

    # the gate passes on rerun: same check runs updated in place, not duplicated
    results["real-gate"] = b.gate("real-gate", MODEL)
    again = publish_check_runs(
        gh, REPO, done.sha, gate_check_runs(collect(ctx.options, results)), external_id="job-7"
    )
    assert again == ids
    assert len(check_runs_of(github_standin, REPO)) == 2
    real = next(r for r in check_runs_of(github_standin, REPO) if r["name"] == "adapt-bot / real gate")
    assert real["conclusion"] == "success" and [a["identifier"] for a in real["actions"]] == [
        "rerun-real-gate"
    ]
    for spec in gate_check_runs(collect(ctx.options, results)):
        for action in spec.actions:
            assert action.identifier in ACTION_INTENTS


def test_button_limits_match_githubs(github_standin: Any, staged: Any) -> None:
    for a in (RERUN_REAL, CANCEL):
        assert len(a.label) <= 20 and len(a.description) <= 40 and len(a.identifier) <= 20
    with pytest.raises(ValueError, match="limits"):
        CheckAction("A label that is far too long", "d", "x")
    with pytest.raises(ValueError, match="at most 3"):
        CheckRunSpec("n", "completed", "success", "t", "s", (CANCEL, CANCEL, CANCEL, CANCEL))
    # and the stand-in enforces what GitHub enforces, so a regression in our limits would fail here
    ctx, root, results, _ = staged
    gh = client(github_standin)
    done = _deliver(gh, ctx, root, results, draft=True)
    token, _ = github_standin.issue_token(INSTALLATION)
    bad = {
        "name": "x",
        "head_sha": done.sha,
        "actions": [{"label": "x" * 21, "description": "d", "identifier": "i"}],
    }
    resp = httpx.post(
        f"{github_standin.api}/repos/{REPO}/check-runs", json=bad, headers={"Authorization": f"token {token}"}
    )
    assert resp.status_code == 422 and "label <= 20" in resp.json()["message"]
    too_many = {**bad, "actions": [{"label": "a", "description": "d", "identifier": "i"}] * 4}
    resp = httpx.post(
        f"{github_standin.api}/repos/{REPO}/check-runs",
        json=too_many,
        headers={"Authorization": f"token {token}"},
    )
    assert resp.status_code == 422


def test_huge_body_is_fitted_and_server_errors_surface(github_standin: Any, staged: Any) -> None:
    from tests.standin.state import bad_gateway

    ctx, root, results, _ = staged
    gh = client(github_standin)
    done = deliver_pr(
        gh, REPO, root, branch="adapt/foo-7b-7", title="[Doc] t", body="x" * 200_000, message="m",
        signoff=bot_signoff("adapt-bot-test", 1),
    )  # fmt: skip
    pr = gh.rest.pulls.get("octo-org", "vllm-ascend", done.number).parsed_data
    assert len(pr.body or "") <= 65_536
    github_standin.inject("POST", "/repos/*/git/blobs", bad_gateway())
    with pytest.raises(RequestFailed):
        _deliver(gh, ctx, root, results, draft=True)


def test_control_plane_entry_delivers_a_job_with_the_app_identity(
    github_standin: Any, staged: Any, app_settings: Any
) -> None:
    """`deliver(job=..., ...)` as bot.tasks calls it: App auth, bot sign-off, draft, check runs."""
    from bot.delivery import deliver
    from bot.github import GitHubClient
    from bot.jobs.model import Job
    from bot.repo_config import RepoConfig

    _ctx, root, results, base_sha = staged
    files = {str(p.relative_to(root)): p.read_text() for p in root.rglob("*") if p.is_file()}
    job = Job(repo=REPO, installation_id=INSTALLATION, issue=7, options=b.options(MODEL))
    github = GitHubClient(app_settings).installation(INSTALLATION)
    config = RepoConfig()
    outcome = deliver(
        job=job, results=results, files=files, github=github, config=config, settings=app_settings
    )
    assert outcome.draft and outcome.created and outcome.branch == "adapt/foo-7b-7"
    from runners.artifacts import render_final_comment

    comment = render_final_comment(job.options, results, outcome.as_delivery(), job_id=job.id)
    assert outcome.pr_url in comment and outcome.sha in comment and "draft until" in comment
    bot = github_standin.bot_user
    commit = github.gh.rest.git.get_commit("octo-org", "vllm-ascend", outcome.sha).parsed_data
    assert commit.message.rstrip().endswith(
        f"Signed-off-by: {bot['login']} <{bot['id']}+{bot['login']}@users.noreply.github.com>"
    )
    assert [p.sha for p in commit.parents] == [base_sha]
    assert {r["name"] for r in check_runs_of(github_standin, REPO)} == {
        "adapt-bot / dummy gate",
        "adapt-bot / real gate",
    }
    assert all(r["external_id"] == job.id for r in check_runs_of(github_standin, REPO))

    results["real-gate"] = b.gate("real-gate", MODEL)
    again = deliver(
        job=job, results=results, files=files, github=github, config=config, settings=app_settings
    )
    assert (again.pr_number, again.created, again.draft) == (outcome.pr_number, False, False)
    assert len(pulls_of(github_standin, REPO)) == 1
    on_head = [r for r in check_runs_of(github_standin, REPO) if r["head_sha"] == again.sha]
    assert sorted((r["name"], r["conclusion"]) for r in on_head) == [
        ("adapt-bot / dummy gate", "success"),
        ("adapt-bot / real gate", "success"),
    ]  # check runs belong to a commit: the new head has its own pair

    # a configured human sign-off replaces the bot identity; unsafe paths are refused
    config = RepoConfig.model_validate({"delivery": {"signoff": "Jane Maintainer <jane@example.com>"}})
    third = deliver(
        job=job, results=results, files=files, github=github, config=config, settings=app_settings
    )
    msg = github.gh.rest.git.get_commit("octo-org", "vllm-ascend", third.sha).parsed_data.message
    assert "Signed-off-by: Jane Maintainer <jane@example.com>" in msg
    from runners.delivery_local import DeliveryError

    with pytest.raises(DeliveryError, match="safe repository path"):
        deliver(
            job=job, results=results, files={"../x": "y"}, github=github, config=config, settings=app_settings
        )


def test_control_plane_delivery_rides_out_5xx_and_rate_limits(
    github_standin: Any, staged: Any, app_settings: Any
) -> None:
    """Through bot.github's retry/throttle policy: transient failures cost retries, not a second PR."""
    from bot.delivery import deliver
    from bot.github import GitHubClient
    from bot.jobs.model import Job
    from bot.repo_config import RepoConfig
    from tests.standin.state import bad_gateway, secondary_rate_limit

    _ctx, root, results, base_sha = staged
    files = {str(p.relative_to(root)): p.read_text() for p in root.rglob("*") if p.is_file()}
    job = Job(repo=REPO, installation_id=INSTALLATION, issue=7, options=b.options(MODEL))
    github = GitHubClient(app_settings).installation(INSTALLATION)
    github_standin.inject("POST", "/repos/*/git/blobs", bad_gateway())
    github_standin.inject("POST", "/repos/*/pulls", secondary_rate_limit(1), bad_gateway())
    github_standin.inject("POST", "/repos/*/check-runs", bad_gateway())
    outcome = deliver(
        job=job, results=results, files=files, github=github, config=RepoConfig(), settings=app_settings
    )
    assert outcome.created and len(pulls_of(github_standin, REPO)) == 1
    assert len(github_standin.requests_to("POST", "/repos/octo-org/vllm-ascend/pulls")) == 3  # 2 faults + 1
    on_head = [r for r in check_runs_of(github_standin, REPO) if r["head_sha"] == outcome.sha]
    assert len(on_head) == 2
    commit = github.gh.rest.git.get_commit("octo-org", "vllm-ascend", outcome.sha).parsed_data
    assert [p.sha for p in commit.parents] == [base_sha]
