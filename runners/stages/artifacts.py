"""Stage `artifacts`: write the files to commit into `workspace.repo_files/<repo path>`.

Reads the target checkout (docs flavor, nav file, CI lists, existing pages) and the earlier stage
results; writes the e2e config, the tutorial, the nav/toctree registration and, when the job's
`options.artifacts` asks for it (the per-repo config as the control plane read it, never the
runner's copy of the file), the nightly accuracy list and model download list entries. The report
and runbook cite the commit, so the control plane renders their final form at delivery; a preview
without the hash is written to `workspace.artifacts` here.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from runners.artifacts import Delivery, collect, render_report, render_runbook
from runners.artifacts.docs import render_tutorial, tutorial_path
from runners.artifacts.e2e_config import ArtifactError, config_path, render_e2e_config
from runners.artifacts.target import (
    MODEL_LIST,
    NIGHTLY_CONFIG,
    TargetRepoError,
    detect,
    register_mkdocs,
    register_model_list,
    register_nightly,
    register_toctree,
)
from runners.context import StageContext
from runners.contracts import Evidence, StageResult, utcnow


def _write(ctx: StageContext, rel: str, text: str) -> None:
    dest = ctx.workspace.repo_files / rel
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(text, encoding="utf-8")


def run(ctx: StageContext) -> StageResult:
    started = utcnow()
    if ctx.target_repo is None:
        return StageResult(
            stage="artifacts",
            status="failed",
            reason="no-target-repo",
            diagnosis="No target checkout was given: there is nowhere to write the e2e config and tutorial.",
            next_step="Pass --repo PATH (a vllm-ascend checkout) to `adapt-bot run`.",
            started_at=started,
        )
    root = ctx.target_repo
    try:
        target = detect(root)
    except TargetRepoError as exc:
        return StageResult(
            stage="artifacts",
            status="failed",
            reason="bad-target-repo",
            diagnosis=str(exc),
            next_step="Point --repo at a vllm-ascend checkout (main or a release branch).",
            started_at=started,
        )
    facts = collect(ctx.options, ctx.previous)
    written: list[str] = []
    notes: list[str] = []
    missing: list[str] = []

    def put(rel: str, text: str) -> None:
        _write(ctx, rel, text)
        written.append(rel)

    # e2e config: only from measured values; a maintainer's existing baseline is never replaced
    cfg_rel = config_path(facts)
    if (root / cfg_rel).exists():
        notes.append(f"{cfg_rel} already exists in the checkout; left unchanged")
    else:
        try:
            put(cfg_rel, render_e2e_config(facts))
        except ArtifactError as exc:
            missing.append(cfg_rel)
            notes.append(f"{cfg_rel}: {exc}")

    # tutorial: never overwrite a page a human wrote
    tut_rel = tutorial_path(facts)
    if (root / tut_rel).exists():
        notes.append(f"{tut_rel} already exists in the checkout; left unchanged")
    else:
        put(tut_rel, render_tutorial(facts, target))
    tutorial_name = Path(tut_rel).name

    # registration in the docs build
    nav_path = root / target.nav_file
    try:
        original = nav_path.read_text(encoding="utf-8")
        if target.flavor == "mkdocs":
            updated = register_mkdocs(original, tutorial_name)
        else:
            updated = register_toctree(original, tutorial_name)
        if updated != original:
            put(target.nav_file, updated)
        else:
            notes.append(f"{target.nav_file} already lists {tutorial_name}")
    except TargetRepoError as exc:
        missing.append(target.nav_file)
        notes.append(str(exc))

    # optional CI list entries, as the repo's config asks
    wanted = ctx.options.artifacts
    section = wanted.nightly_section
    if section and (root / NIGHTLY_CONFIG).is_file() and cfg_rel in written:
        try:
            text = (root / NIGHTLY_CONFIG).read_text(encoding="utf-8")
            new = register_nightly(
                text,
                facts.names.name,
                tp=facts.tp,
                hardware=ctx.options.hardware,
                section=section,
            )
            if new != text:
                put(NIGHTLY_CONFIG, new)
        except (TargetRepoError, KeyError, TypeError, yaml.YAMLError) as exc:
            notes.append(f"{NIGHTLY_CONFIG}: {exc}")
    if wanted.model_list and facts.names.hub_id and (root / MODEL_LIST).is_file():
        try:
            text = (root / MODEL_LIST).read_text(encoding="utf-8")
            new = register_model_list(text, facts.names.hub_id)
            if new != text:
                put(MODEL_LIST, new)
        except (TargetRepoError, ValueError) as exc:
            notes.append(f"{MODEL_LIST}: {exc}")

    # previews of the human documents (final versions cite the commit; rendered at delivery)
    preview = Delivery(changed_files=written)
    (ctx.workspace.artifacts / "report.zh.md").write_text(
        render_report(ctx.options, ctx.previous, preview), encoding="utf-8"
    )
    (ctx.workspace.artifacts / "runbook.zh.md").write_text(
        render_runbook(ctx.options, ctx.previous, preview), encoding="utf-8"
    )

    evidence = [
        Evidence(kind="file", text=rel, log_path=str(ctx.workspace.repo_files / rel)) for rel in written
    ]
    evidence += [Evidence(kind="note", text=n) for n in notes]
    data = {
        "files": written,
        "flavor": target.flavor,
        "nav_file": target.nav_file,
        "tutorial": tut_rel,
        "e2e_config": cfg_rel,
        "missing": missing,
        "notes": notes,
        "repo_files": str(ctx.workspace.repo_files),
    }
    if missing:
        return StageResult(
            stage="artifacts",
            status="failed",
            reason="incomplete-artifacts",
            diagnosis="; ".join(notes)[:2000],
            next_step="Rerun the missing stage (usually `/adapt rerun accuracy`), then deliver again.",
            evidence=evidence,
            data=data,
            started_at=started,
        )
    return StageResult(stage="artifacts", status="passed", evidence=evidence, data=data, started_at=started)
