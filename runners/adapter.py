"""The adapter step (issue 14, optional, off by default): a configured command proposes a patch when
a gate fails, and only a patch that passes the gates again is kept.

Where it runs: inside the runner stage that failed (runners.gates.gate.run_gate), so one Celery
task does the adapter attempts and their re-gates on one host. A patch that passes is installed
into `<workspace>/adapter-site` (the candidate's mechanism, runners.candidate), where every later
server of the job finds it (`candidate.ensure` puts it on PYTHONPATH). A later stage on a host
without that workspace rebuilds the site from the stage results' `data.adapter.patch` (the
StageRequest carries them). Patches chain: the real gate's adapter starts from a checkout that
already holds the patch the dummy gate adopted.

The contract with the command (`JobOptions.adapter`: repo config `adapter:` or the CLI's
`--adapter-command`), an argv list started without a shell, cwd = the checkout, in its own process
group, with the runner's environment minus every credential-looking name (the scrub vLLM servers
get, runners.serve.is_credential_name) plus these paths:

- `ADAPTER_CHECKOUT`      a git checkout of the implementation root it may change: the job's
                          candidate at its pinned SHA, else a fresh repository holding an empty vLLM
                          plugin package (runners.candidate.SKELETON); also argv's cwd
- `ADAPTER_SKILL_FILE`    the skill text (SKILL.md of the adaptation workflow, see `skill_file`)
- `ADAPTER_ANALYSIS_FILE` the analysis result (JSON)
- `ADAPTER_FAILURE_FILE`  the failing stage: stage, reason, diagnosis, next step, evidence, and its
                          data (serve argv, ladder, log path) as JSON
- `ADAPTER_HISTORY_FILE`  the earlier attempts of this step (JSON list; empty on the first)
- `ADAPTER_MODEL_DIR`     the checkpoint (read it; do not change it)
- `ADAPTER_ATTEMPT`       1, 2, ...

What it returns is `git diff` of that checkout, computed by the runner with its own git directory
(the checkout's `.git` and everything the command writes outside the checkout are ignored). The
patch must fit the candidate's delivery budget (runners.candidate.budget_problems: text files only,
added or modified, <= 20 files, <= 200 KB). It is applied to a clean checkout, installed for this
job only, and re-gated from the dummy gate (then the real gate when the real gate had failed).
Bounds: `attempts`, `timeout_s` per attempt (the process group is killed), `device_hours` of the
re-gates (runners.accounting); each stop is recorded with its reason.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runners import accounting
from runners import candidate as cand_mod
from runners.contracts import AdapterSpec, StageResult
from runners.serve import is_credential_name
from runners.serve.process import kill_group

ENV_CHECKOUT = "ADAPTER_CHECKOUT"
ENV_SKILL = "ADAPTER_SKILL_FILE"
ENV_ANALYSIS = "ADAPTER_ANALYSIS_FILE"
ENV_FAILURE = "ADAPTER_FAILURE_FILE"
ENV_HISTORY = "ADAPTER_HISTORY_FILE"
ENV_MODEL = "ADAPTER_MODEL_DIR"
ENV_ATTEMPT = "ADAPTER_ATTEMPT"
#: the runner host's own copy of the skill text (optional; see `skill_file`)
SKILL_ENV = "ADAPT_BOT_ADAPTER_SKILL"
#: where vllm-ascend keeps the skill in its tree
SKILL_IN_TREE = ".agents/skills/vllm-ascend-model-adapter/SKILL.md"
STEP_DIR = "adapter"
KILL_GRACE_S = 5.0


def shown_argv(argv: list[str]) -> str:
    """The command as recorded: its name only (arguments may hold prompts or paths)."""
    name = Path(argv[0]).name if argv else "?"
    return name + (f" (+{len(argv) - 1} arguments)" if len(argv) > 1 else "")


def skill_file(ctx: Any, dest: Path) -> Path:
    """The skill text: the host's `ADAPT_BOT_ADAPTER_SKILL` file, else SKILL.md in the job's
    vllm-ascend root, else a file naming where the skill lives (runners.links.SKILL_URL)."""
    from runners.links import SKILL_URL

    configured = os.environ.get(SKILL_ENV)
    root = getattr(ctx, "vllm_ascend_root", None)
    for path in (Path(configured) if configured else None, Path(root) / SKILL_IN_TREE if root else None):
        if path is not None and path.is_file():
            return path
    dest.write_text(f"The adaptation skill (read it before changing code): {SKILL_URL}\n", encoding="utf-8")
    return dest


def child_env(extra: Mapping[str, str], environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The runner's environment without credentials (the vllm serve scrub), plus the contract."""
    base = os.environ if environ is None else environ
    env = {k: v for k, v in base.items() if not is_credential_name(k)}
    env.update(extra)
    return env


@dataclass
class ChildRun:
    exit_code: int | None
    timed_out: bool
    cancelled: bool
    duration_s: float


def run_child(
    argv: list[str], *, cwd: Path, env: dict[str, str], timeout_s: float, log_path: Path, cancel: Any = None
) -> ChildRun:
    """The command in its own process group; the group is killed at `timeout_s` or on cancel."""
    t0 = time.monotonic()
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("wb") as log:
        try:
            proc = subprocess.Popen(
                argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        except OSError as exc:
            log.write(f"could not start the adapter: {exc}\n".encode())
            return ChildRun(None, False, False, time.monotonic() - t0)
        timed_out = cancelled = False
        while proc.poll() is None:
            if time.monotonic() - t0 > timeout_s:
                timed_out = True
            elif cancel is not None and cancel.is_set():
                cancelled = True
            if timed_out or cancelled:
                kill_group(proc.pid, KILL_GRACE_S)  # SIGTERM, SIGKILL after the grace, stragglers too
                break
            time.sleep(0.1)
        rc = proc.wait()
    return ChildRun(None if timed_out or cancelled else rc, timed_out, cancelled, time.monotonic() - t0)


# --------------------------------------------------------------------------- the patch


@dataclass
class Patch:
    text: str
    files: dict[str, str]  # path -> new text content (added or modified)
    problems: list[str] = field(default_factory=list)

    @property
    def size(self) -> int:
        return len(self.text.encode("utf-8"))


def _git_runner(args: list[str], *, git_dir: Path, work_tree: Path, index: Path) -> bytes:
    """git on the runner's OWN git directory and index over the adapter's work tree: nothing the
    adapter wrote into the checkout's `.git` (hooks, config, refs) is read."""
    env = cand_mod.git_env() | {
        "GIT_DIR": str(git_dir),
        "GIT_WORK_TREE": str(work_tree),
        "GIT_INDEX_FILE": str(index),
    }
    proc = subprocess.run(
        ["git", "-c", "core.hooksPath=/dev/null", "-c", "core.fsmonitor=false", *args],
        cwd=work_tree,
        env=env,
        capture_output=True,
        timeout=cand_mod.GIT_TIMEOUT_S,
    )
    if proc.returncode != 0:
        raise cand_mod.CandidateFailed("diff", proc.stderr.decode(errors="replace").strip()[-300:])
    return proc.stdout


def compute_patch(base: Path, base_sha: str, checkout: Path, scratch: Path) -> Patch:
    """`git diff` of `checkout` against `base_sha` of the runner's `base` repository, with the
    budget checked (text files, added or modified, plain paths, no symlinks, size and count)."""
    index = scratch / "adapter.index"
    index.unlink(missing_ok=True)
    kw = {"git_dir": base / ".git", "work_tree": checkout, "index": index}
    _git_runner(["read-tree", base_sha], **kw)
    _git_runner(["add", "-A", "--", "."], **kw)
    raw = _git_runner(["diff", "--cached", "--raw", "--no-renames", "-z", base_sha], **kw).decode()
    numstat = _git_runner(["diff", "--cached", "--numstat", "--no-renames", "-z", base_sha], **kw).decode()
    binary = {line.split("\t", 2)[2] for line in numstat.split("\0") if line.startswith("-\t-\t")}
    fields = [f for f in raw.split("\0") if f]
    entries: list[cand_mod.DiffEntry] = []
    problems: list[str] = []
    for meta, path in zip(fields[0::2], fields[1::2], strict=False):
        parts = meta.split()
        new_mode, letter = parts[1], parts[4][:1]
        if new_mode == "120000":
            problems.append(f"`{path[:80]}` is a symlink (it may point outside the checkout)")
        size = 0 if letter == "D" else len(_git_runner(["cat-file", "blob", parts[3]], **kw))
        entries.append(cand_mod.DiffEntry(path, letter, path in binary, size))
    if not entries:
        return Patch("", {}, ["the adapter changed nothing in the checkout"])
    problems = [*problems, *cand_mod.budget_problems(entries)]
    text = _git_runner(["diff", "--cached", "--no-renames", "--full-index", base_sha], **kw).decode(
        "utf-8", errors="replace"
    )
    files: dict[str, str] = {}
    if not problems:
        for e in entries:
            blob = _git_runner(["show", f":{e.path}"], **kw)
            try:
                files[e.path] = blob.decode("utf-8")
            except UnicodeDecodeError:
                problems.append(f"`{e.path}` is not UTF-8 text")
    return Patch(text, files if not problems else {}, problems)


# --------------------------------------------------------------------------- the step


def _failure_doc(result: StageResult) -> dict[str, Any]:
    keep = ("argv", "log_path", "ladder", "first_failure", "signature", "load_findings", "parity", "smoke")
    return {
        "stage": result.stage,
        "reason": result.reason,
        "diagnosis": result.diagnosis,
        "next_step": result.next_step,
        "evidence": [e.model_dump() for e in result.evidence],
        "data": {k: result.data.get(k) for k in keep if k in result.data},
    }


def _write_json(path: Path, doc: Any) -> Path:
    path.write_text(json.dumps(doc, indent=2, ensure_ascii=False, default=str), encoding="utf-8")
    return path


#: re-gate the job with the installed patch: the stage results, dummy gate first
Regate = Callable[[], list[StageResult]]


def run_step(
    ctx: Any, spec: AdapterSpec, failed: StageResult, regate: Regate, analysis: Mapping[str, Any]
) -> tuple[dict[str, Any], StageResult | None]:
    """Attempts until one patch passes the re-gate or a bound is reached.

    Returns (the `data.adapter` record, the passing re-gated result of the failed stage or None)."""
    root = ctx.workspace.path / STEP_DIR / failed.stage
    root.mkdir(parents=True, exist_ok=True)
    inputs = root / "inputs"
    inputs.mkdir(exist_ok=True)
    skill = skill_file(ctx, inputs / "SKILL.txt")
    analysis_file = _write_json(inputs / "analysis.json", dict(analysis))
    failure_file = _write_json(inputs / "failure.json", _failure_doc(failed))
    record: dict[str, Any] = {
        "command": shown_argv(spec.command),
        "bounds": {"attempts": spec.attempts, "timeout_s": spec.timeout_s, "device_hours": spec.device_hours},
        "skill_file": str(skill),
        "attempts": [],
        "outcome": "bounded",
        "stopped": None,
    }
    started = time.time()
    history: list[dict[str, Any]] = record["attempts"]
    for n in range(1, spec.attempts + 1):
        used_h = accounting.stage_device_seconds(ctx.workspace.logs, started, time.time())["device_seconds"]
        used_h = used_h / 3600
        record["device_hours_used"] = round(used_h, 4)
        if used_h >= spec.device_hours:
            record["stopped"] = (
                f"device-hours: the re-gates used {used_h:.3f} of {spec.device_hours} device-hours "
                f"before attempt {n}"
            )
            break
        if ctx.cancel.is_set():
            record["stopped"] = "cancelled"
            break
        ctx.progress(f"adapter: attempt {n} of {spec.attempts} ({shown_argv(spec.command)})")
        att, passing = _attempt(ctx, spec, n, root, failed, regate, skill, analysis_file, failure_file)
        history.append(att)
        if passing is not None:
            record.update(outcome="passed", attempt=n, patch=att.pop("_patch"), files=att.pop("_files"))
            cand_mod.adopt_patched(ctx, record["patch"])
            record["device_hours_used"] = round(
                accounting.stage_device_seconds(ctx.workspace.logs, started, time.time())["device_seconds"]
                / 3600,
                4,
            )
            return record, passing
        att.pop("_patch", None)
        att.pop("_files", None)
        if att["outcome"] == "cancelled":
            record["stopped"] = "cancelled"
            break
    else:
        record["stopped"] = f"attempts: {spec.attempts} attempt(s) without a patch that passes the gates"
    cand_mod.drop_patched(ctx)
    return record, None


def _attempt(
    ctx: Any,
    spec: AdapterSpec,
    n: int,
    root: Path,
    failed: StageResult,
    regate: Regate,
    skill: Path,
    analysis_file: Path,
    failure_file: Path,
) -> tuple[dict[str, Any], StageResult | None]:
    work = root / f"attempt-{n}"
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    base = work / "base"
    checkout = work / "checkout"
    att: dict[str, Any] = {"attempt": n, "argv": shown_argv(spec.command)}
    try:
        base_sha = cand_mod.implementation_root(ctx, base)
        _clone(base, base_sha, checkout)
    except cand_mod.CandidateFailed as exc:
        return _done(att, root, n, "setup-failed", f"no checkout for the adapter ({exc.step}): {exc}"), None
    history_file = _write_json(
        work / "history.json",
        [{k: v for k, v in a.items() if not k.startswith("_")} for a in _history(root, n)],
    )
    env = child_env(
        {
            ENV_CHECKOUT: str(checkout),
            ENV_SKILL: str(skill),
            ENV_ANALYSIS: str(analysis_file),
            ENV_FAILURE: str(failure_file),
            ENV_HISTORY: str(history_file),
            ENV_MODEL: str(ctx.model_path),
            ENV_ATTEMPT: str(n),
        }
    )
    log_path = ctx.workspace.log_path(f"adapter-{failed.stage}-{n}")
    run = run_child(
        list(spec.command),
        cwd=checkout,
        env=env,
        timeout_s=spec.timeout_s,
        log_path=log_path,
        cancel=ctx.cancel,
    )
    att.update(exit_code=run.exit_code, duration_s=round(run.duration_s, 2), log_path=str(log_path))
    if run.cancelled:
        return _done(att, root, n, "cancelled", "the job was cancelled"), None
    if run.timed_out:
        why = f"timeout: no result within {spec.timeout_s} s; its process group was killed"
        return _done(att, root, n, "timeout", why), None
    if run.exit_code != 0:
        why = f"the command exited with {run.exit_code} (see its log)"
        return _done(att, root, n, "failed", why), None
    try:
        patch = compute_patch(base, base_sha, checkout, work)
    except cand_mod.CandidateFailed as exc:
        return _done(att, root, n, "garbage", f"no diff could be computed: {exc}"), None
    att.update(patch_bytes=patch.size, files=sorted(patch.files) or None)
    if patch.problems:
        outcome = "no-change" if not patch.text else "rejected"
        return _done(att, root, n, outcome, "; ".join(patch.problems)), None
    try:
        cand_mod.install_patched(ctx, patch.text, work / "install")
    except cand_mod.CandidateFailed as exc:
        cand_mod.drop_patched(ctx)
        return _done(att, root, n, "install-failed", f"{exc.step}: {exc}"), None
    ctx.progress(f"adapter: attempt {n} patch installed ({len(patch.files)} file(s)); re-gating")
    results = regate()
    att["regate"] = [
        {"stage": r.stage, "status": r.status, "reason": r.reason, "diagnosis": r.diagnosis} for r in results
    ]
    last = results[-1] if results else None
    if last is not None and last.ok and last.stage == failed.stage and all(r.ok for r in results):
        att.update(_patch=patch.text, _files=patch.files)
        return _done(att, root, n, "passed", "the re-gate passed with this patch"), last
    bad = next((r for r in results if not r.ok), None)
    why = f"the re-gate failed at {bad.stage}: {bad.reason}" if bad else "no re-gate result"
    cand_mod.drop_patched(ctx)
    return _done(att, root, n, "regate-failed", why), None


def _clone(base: Path, base_sha: str, dest: Path) -> None:
    cand_mod.git_local(["clone", "-q", "--no-hardlinks", "--", str(base), str(dest)], base.parent)
    cand_mod.git_local(["checkout", "-q", "--detach", base_sha], dest)


def _history(root: Path, n: int) -> list[dict[str, Any]]:
    out = []
    for i in range(1, n):
        f = root / f"attempt-{i}" / "result.json"
        if f.is_file():
            out.append(json.loads(f.read_text(encoding="utf-8")))
    return out


def _done(att: dict[str, Any], root: Path, n: int, outcome: str, why: str) -> dict[str, Any]:
    att.update(outcome=outcome, detail=why)
    shown = {k: v for k, v in att.items() if not k.startswith("_")}
    _write_json(root / f"attempt-{n}" / "result.json", shown)
    return att


def render_text(record: Mapping[str, Any]) -> str:
    """The step's sentence for the gate's diagnosis (and so the report): templates/gates/adapter.txt.j2."""
    from runners.render import render

    return render("gates/adapter.txt.j2", record=record).strip()


def drop(ctx: Any) -> None:
    """Forget a trial install after an error (runners.gates.gate)."""
    cand_mod.drop_patched(ctx)
