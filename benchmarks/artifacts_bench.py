"""Artifact rendering and local delivery: how long they take, side by side.

Prints figures (no assertions):
  - rendering every document of one job (e2e YAML, tutorial, report, runbook, PR body, final comment)
    from the stage results of a real run, and with 200 kB hostile log excerpts;
  - one signed-off commit with adapt-bot's private-index plumbing vs the porcelain sequence a human
    types (switch -c, add, commit -s) on the same sample checkout.
Run: .venv/bin/python benchmarks/artifacts_bench.py
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from runners.artifacts import Delivery, pr_body, render_final_comment, render_report, render_runbook  # noqa: E402
from runners.artifacts.docs import render_tutorial  # noqa: E402
from runners.artifacts.e2e_config import render_e2e_config  # noqa: E402
from runners.artifacts.facts import collect  # noqa: E402
from runners.artifacts.target import detect  # noqa: E402
from runners.contracts import Evidence, JobOptions, StageResult  # noqa: E402
from runners.delivery_local import commit_local  # noqa: E402
from runners.demo.sample_repo import make_sample_repo  # noqa: E402

REAL = ROOT / "tests" / "artifacts" / "data" / "real-run"
SIGNOFF = "adapt-bot[bot] <1+adapt-bot[bot]@users.noreply.github.com>"


def timed(fn, n: int) -> float:  # type: ignore[no-untyped-def]
    samples = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t)
    return statistics.median(samples)


def main() -> None:
    results = {p.stem: StageResult.model_validate_json(p.read_text()) for p in REAL.glob("*.json")}
    options = JobOptions(model="org/Tiny-Llama-1B", issue=12)
    delivery = Delivery(
        commit_sha="0" * 40, branch="adapt/x-12", changed_files=["a"], logs_url="https://x/jobs/1"
    )
    hostile = {k: v.model_copy(deep=True) for k, v in results.items()}
    blob = ("| `x` <script> {{ y }} " * 10_000)[:200_000]
    hostile["real-gate"].evidence = [Evidence(kind="log", text=blob)] * 10

    with tempfile.TemporaryDirectory() as tmp:
        repo = make_sample_repo(Path(tmp) / "repo", "mkdocs")
        target = detect(repo)

        def render_all(res: dict[str, StageResult]) -> None:
            facts = collect(options, res)
            render_e2e_config(facts)
            render_tutorial(facts, target)
            render_report(options, res, delivery)
            render_runbook(options, res, delivery)
            pr_body(options, res, job_id="j", files=["a"])
            render_final_comment(options, res, delivery, job_id="j")

        render_all(results)  # warm the template cache
        normal = timed(lambda: render_all(results), 20)
        big = timed(lambda: render_all(hostile), 20)
        print(f"render all documents, real-run results      : {normal * 1000:8.1f} ms")
        print(f"render all documents, 10 x 200 kB hostile logs: {big * 1000:8.1f} ms  ({big / normal:.1f}x)")

        files = Path(tmp) / "files"
        (files / "docs/source/tutorials/models").mkdir(parents=True)
        facts = collect(options, results)
        (files / "docs/source/tutorials/models/Foo.md").write_text(render_tutorial(facts, target))
        (files / "tests/e2e/models/configs").mkdir(parents=True)
        (files / "tests/e2e/models/configs/Foo.yaml").write_text(render_e2e_config(facts))

        def plumbing() -> None:
            commit_local(repo, files, branch="adapt/foo-1", message="[Doc] Foo", signoff=SIGNOFF)

        def porcelain() -> None:
            git = ["git", "-c", "user.name=a", "-c", "user.email=a@b", "-c", "commit.gpgsign=false"]
            subprocess.run([*git, "switch", "-q", "-C", "manual", "main"], cwd=repo, check=True)
            subprocess.run(["cp", "-r", f"{files}/.", str(repo)], check=True)
            subprocess.run([*git, "add", "docs", "tests"], cwd=repo, check=True)
            subprocess.run([*git, "commit", "-q", "-s", "-m", "[Doc] Foo"], cwd=repo, check=True)
            subprocess.run([*git, "switch", "-q", "main"], cwd=repo, check=True)

        p = timed(plumbing, 10)
        q = timed(porcelain, 10)
        print(f"one signed-off commit, private-index plumbing: {p * 1000:8.1f} ms (checkout untouched)")
        print(f"one signed-off commit, switch/add/commit -s  : {q * 1000:8.1f} ms  (ratio {p / q:.2f}x)")


if __name__ == "__main__":
    main()
