"""A contributor branch (`--candidate`), installed for ONE job: fetch, install, put it on the path.

The control plane pinned the candidate to a commit SHA and built its clone URL from its own settings
(runners.contracts.Candidate); this module fetches exactly that commit into the job's workspace and
installs it with the vLLM environment's own python into `<workspace>/candidate-site` (`pip install
--no-deps --no-build-isolation --target`), never into the shared environment. Every server of the
job then starts with `PYTHONPATH=<workspace>/candidate-site`, where vLLM's plugin loader (entry
point group `vllm.general_plugins`, read by importlib.metadata from sys.path) finds it - the way
vllm-ascend registers its models. git and pip run as argv lists (no shell); the URL and SHA are
never user text (the SHA is checked against 40 hex digits by the contract, and again here).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runners.contracts import Candidate

SITE_DIR = "candidate-site"
CHECKOUT_DIR = "candidate"
MARKER = ".adapt-candidate-sha"
LOG_NAME = "candidate-install"
#: how far back the merge-base with the candidate repo's default branch is looked for
HISTORY_DEPTH = 200
GIT_TIMEOUT_S = 600
PIP_TIMEOUT_S = 900
_SHA = re.compile(r"[0-9a-f]{40}")


class CandidateFailed(RuntimeError):
    """The candidate could not be fetched or installed; the message names the step and the log."""

    def __init__(self, step: str, message: str, log_path: Path | None = None) -> None:
        super().__init__(message)
        self.step = step
        self.log_path = log_path


def _git_env() -> dict[str, str]:
    keep = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR")
    env = {k: os.environ[k] for k in keep if k in os.environ}
    env.update(GIT_TERMINAL_PROMPT="0", GIT_CONFIG_NOSYSTEM="1")
    return env


def git_env() -> dict[str, str]:
    """The environment every git/pip run of the runner gets: no credentials, no prompts."""
    return _git_env()


def git(args: list[str], cwd: Path | None = None, *, timeout: float = GIT_TIMEOUT_S) -> str:
    """`git <args>` (argv list), stdout; CandidateFailed with git's last words on failure."""
    try:
        proc = subprocess.run(
            ["git", *args], cwd=cwd, env=_git_env(), capture_output=True, text=True, timeout=timeout
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise CandidateFailed("git", f"git {args[0]} did not finish: {exc}") from None
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        raise CandidateFailed("git", f"git {args[0]} failed: {' / '.join(tail)[:400]}")
    return proc.stdout


def resolve_local(path: str, ref: str) -> Candidate:
    """The CLI's local repository `path@ref` pinned to a commit (`git rev-parse`); the URL is the path."""
    repo = Path(path)
    if not (repo / ".git").exists() and not (repo / "HEAD").is_file():
        raise CandidateFailed("resolve", f"{path} is not a git repository")
    try:
        sha = git(["rev-parse", "--verify", "--end-of-options", f"{ref}^{{commit}}"], cwd=repo).strip()
    except CandidateFailed:
        raise CandidateFailed("resolve", f"{path} has no branch, tag or commit `{ref}`") from None
    return Candidate(repo=str(repo.resolve()), ref=ref, sha=sha, url=str(repo.resolve()))


def resolve_remote(repo: str, ref: str, url: str) -> Candidate:
    """The CLI's `owner/repo@ref` pinned through `git ls-remote` (a full SHA is taken as written)."""
    if _SHA.fullmatch(ref):
        return Candidate(repo=repo, ref=ref, sha=ref, url=url)
    out = git(
        [
            "ls-remote",
            "--end-of-options",
            url,
            f"refs/heads/{ref}",
            f"refs/tags/{ref}",
            f"refs/tags/{ref}^{{}}",
        ]
    )
    shas = {name: sha for sha, _, name in (line.partition("\t") for line in out.splitlines())}
    sha = shas.get(f"refs/tags/{ref}^{{}}") or shas.get(f"refs/heads/{ref}") or shas.get(f"refs/tags/{ref}")
    if not sha:
        raise CandidateFailed("resolve", f"{repo} has no branch or tag `{ref}`")
    return Candidate(repo=repo, ref=ref, sha=sha, url=url)


def fetch(cand: Candidate, dest: Path) -> Path:
    """Exactly `cand.sha` from `cand.url`, checked out detached in a fresh `dest`."""
    if not _SHA.fullmatch(cand.sha):
        raise CandidateFailed("fetch", "the candidate's commit is not a 40-digit SHA")
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    git(["init", "-q", str(dest)])
    git(["fetch", "-q", "--depth", "1", "--end-of-options", cand.url, cand.sha], cwd=dest)
    git(["checkout", "-q", "--detach", "FETCH_HEAD"], cwd=dest)
    head = git(["rev-parse", "HEAD"], cwd=dest).strip()
    if head != cand.sha:
        raise CandidateFailed("fetch", f"fetched {head[:12]}, expected {cand.sha[:12]}")
    return dest


def default_branch(url: str) -> str | None:
    """The remote's default branch (`git ls-remote --symref <url> HEAD`), None if it has none."""
    out = git(["ls-remote", "--symref", "--end-of-options", url, "HEAD"])
    for line in out.splitlines():
        if line.startswith("ref: refs/heads/") and line.endswith("\tHEAD"):
            return line[len("ref: refs/heads/") : -len("\tHEAD")]
    return None


@dataclass(frozen=True)
class ChangedFiles:
    base_branch: str | None
    merge_base: str | None
    files: list[str]
    note: str = ""


def changed_files(cand: Candidate, checkout: Path, *, depth: int = HISTORY_DEPTH) -> ChangedFiles:
    """The files `cand.sha` changed against its merge-base with the repo's default branch, looked
    for within `depth` commits of each side (bounded history, never a full clone)."""
    branch = default_branch(cand.url)
    if branch is None:
        return ChangedFiles(None, None, [], "the candidate repository has no default branch")
    git(["fetch", "-q", f"--depth={depth}", "--end-of-options", cand.url, cand.sha], cwd=checkout)
    git(
        ["fetch", "-q", f"--depth={depth}", "--end-of-options", cand.url, f"refs/heads/{branch}"],
        cwd=checkout,
    )
    base_tip = git(["rev-parse", "FETCH_HEAD"], cwd=checkout).strip()
    try:
        base = git(["merge-base", cand.sha, base_tip], cwd=checkout).strip()
    except CandidateFailed:
        return ChangedFiles(branch, None, [], f"no merge-base with {branch} within {depth} commits")
    out = git(["diff", "--name-only", "--no-renames", "-z", base, cand.sha], cwd=checkout)
    return ChangedFiles(branch, base, sorted(p for p in out.split("\0") if p))


def vllm_python(prof: Any) -> Path:
    """The python of the profile's vLLM environment (the `vllm` script's sibling when it is one)."""
    first = Path(prof.vllm_command()[0])
    return first if first.name.startswith("python") else first.parent / "python"


def install(checkout: Path, site: Path, python: Path, log_path: Path) -> None:
    """`<python> -m pip install --no-deps --no-build-isolation --target <site> <checkout>`, for this
    job only; the whole pip output goes to `log_path`."""
    if site.exists():
        shutil.rmtree(site)
    site.mkdir(parents=True)
    argv = [
        str(python), "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--no-input",
        "--disable-pip-version-check", "--target", str(site), str(checkout),
    ]  # fmt: skip
    env = _git_env() | {"PIP_NO_INPUT": "1", "PIP_CONFIG_FILE": os.devnull}
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("w", encoding="utf-8") as log:
        log.write("$ " + " ".join(argv) + "\n")
        log.flush()
        try:
            rc = subprocess.run(
                argv, stdout=log, stderr=subprocess.STDOUT, env=env, timeout=PIP_TIMEOUT_S, check=False
            ).returncode
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise CandidateFailed("install", f"pip did not finish: {exc}", log_path) from None
    if rc != 0:
        raise CandidateFailed("install", f"pip install of the candidate failed (exit {rc})", log_path)


def site_env(site: Path) -> dict[str, str]:
    return {"PYTHONPATH": str(site)}


def ensure(ctx: Any) -> dict[str, str]:
    """The env addition for a server of this job: {} without a candidate; else the candidate
    installed once per job and SHA (a marker in the site directory), then PYTHONPATH to it.

    An adapter patch that passed (runners.adapter) wins: `<workspace>/adapter-site` holds the
    implementation root WITH the patch, installed the same way. A later stage on another host (no
    shared workspace) rebuilds it from the earlier stage result's `data.adapter.patch`."""
    root: Path = ctx.workspace.path
    adapted = adapter_site(ctx)
    if adapted is not None:
        return site_env(adapted)
    cand: Candidate | None = getattr(ctx.options, "candidate", None)
    if cand is None:
        return {}
    site = root / SITE_DIR
    marker = site / MARKER
    if marker.is_file() and marker.read_text(encoding="utf-8").strip() == cand.sha:
        return site_env(site)
    ctx.progress(f"candidate: fetching {cand.repo}@{cand.sha[:12]} and installing it for this job")
    checkout = fetch(cand, root / CHECKOUT_DIR)
    install(checkout, site, vllm_python(ctx.profile), ctx.workspace.log_path(LOG_NAME))
    marker.write_text(cand.sha + "\n", encoding="utf-8")
    return site_env(site)


# -- the adapter step's implementation root (runners.adapter uses these; kept here, next to the
# candidate they extend, because runners.candidate must not import runners.serve) ----------------
ADAPTER_SITE = "adapter-site"
ADAPTER_MARKER = ".adapt-adapter-patch"
#: the package a job without a candidate hands the adapter: an empty vLLM plugin, laid out like one
SKELETON_PACKAGE = "adapt_bot_plugin"
SKELETON: dict[str, str] = {
    "pyproject.toml": f"""[build-system]
requires = ["setuptools"]
build-backend = "setuptools.build_meta"

[project]
name = "{SKELETON_PACKAGE.replace("_", "-")}"
version = "0.0.0"

[project.entry-points."vllm.general_plugins"]
{SKELETON_PACKAGE} = "{SKELETON_PACKAGE}:register"

[tool.setuptools]
packages = ["{SKELETON_PACKAGE}"]
""",
    f"{SKELETON_PACKAGE}/__init__.py": '"""A vLLM general plugin: register the model with vLLM here."""\n\n\n'
    "def register() -> None:\n"
    '    """Called by vLLM in every process (entry point group `vllm.general_plugins`)."""\n',
}
_SEED_ENV = {
    "GIT_AUTHOR_NAME": "adapt-bot",
    "GIT_AUTHOR_EMAIL": "adapt-bot@localhost",
    "GIT_COMMITTER_NAME": "adapt-bot",
    "GIT_COMMITTER_EMAIL": "adapt-bot@localhost",
    "GIT_AUTHOR_DATE": "2000-01-01T00:00:00Z",
    "GIT_COMMITTER_DATE": "2000-01-01T00:00:00Z",
}


def git_local(args: list[str], cwd: Path) -> str:
    """git on a repository the runner made itself (fixed identity and dates, no hooks)."""
    proc = subprocess.run(
        ["git", "-c", "core.hooksPath=/dev/null", *args],
        cwd=cwd,
        env=_git_env() | _SEED_ENV,
        capture_output=True,
        text=True,
        timeout=GIT_TIMEOUT_S,
    )
    if proc.returncode != 0:
        raise CandidateFailed("git", f"git {args[0]} failed: {proc.stderr.strip()[-300:]}")
    return proc.stdout


def seed_skeleton(dest: Path) -> str:
    """A fresh git repository at `dest` holding the empty plugin package, committed; its SHA."""
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    git_local(["init", "-q", "-b", "main", "."], dest)
    for rel, text in SKELETON.items():
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        (dest / rel).write_text(text, encoding="utf-8")
    git_local(["add", "--", *SKELETON], dest)
    git_local(["commit", "-q", "-m", "empty vLLM plugin package (adapt-bot adapter step)"], dest)
    return git_local(["rev-parse", "HEAD"], dest).strip()


def implementation_root(ctx: Any, dest: Path, adopted: list[str] | None = None) -> str:
    """The root the adapter may change, checked out fresh at `dest`: the candidate at its pinned
    SHA when the job has one, else the plugin skeleton; then every patch an earlier stage of the
    job adopted (`adopted`, default: from `ctx.previous`), each committed, so a later stage's
    adapter builds on them. Returns the base commit."""
    cand: Candidate | None = getattr(ctx.options, "candidate", None)
    if cand is not None:
        fetch(cand, dest)
    else:
        seed_skeleton(dest)
    for i, patch in enumerate(passed_patches(ctx.previous) if adopted is None else adopted, 1):
        _git_apply(dest, patch)
        git_local(["commit", "-q", "-m", f"adopted adapter patch {i}"], dest)
    return git_local(["rev-parse", "HEAD"], dest).strip()


def _git_apply(dest: Path, patch: str) -> None:
    proc = subprocess.run(
        ["git", "-c", "core.hooksPath=/dev/null", "apply", "--index", "--whitespace=nowarn", "-"],
        cwd=dest,
        env=_git_env(),
        input=patch,
        capture_output=True,
        text=True,
        timeout=GIT_TIMEOUT_S,
    )
    if proc.returncode != 0:
        raise CandidateFailed("apply", f"the patch does not apply: {proc.stderr.strip()[-300:]}")


def apply_patch(base: Path, base_sha: str, patch: str, dest: Path) -> None:
    """A clean clone of `base` at `base_sha` in `dest`, with `patch` applied (`git apply`, which
    refuses paths outside the tree); CandidateFailed("apply") when it does not apply."""
    if dest.exists():
        shutil.rmtree(dest)
    git_local(["clone", "-q", "--no-hardlinks", "--", str(base), str(dest)], base.parent)
    git_local(["checkout", "-q", "--detach", base_sha], dest)
    _git_apply(dest, patch)


def patch_digest(patch: str) -> str:
    import hashlib

    return hashlib.sha256(patch.encode("utf-8")).hexdigest()


#: present while a patch is on trial in the stage that runs the adapter (runners.adapter)
ADAPTER_TRIAL = ".adapt-adapter-trial"


def install_patched(ctx: Any, patch: str, work: Path, adopted: list[str] | None = None) -> Path:
    """The implementation root (with the patches adopted before) plus `patch`, applied to a clean
    checkout and installed into `<workspace>/adapter-site` for this job only (the candidate's
    mechanism), marked as on trial; the site path."""
    base = work / "base"
    base_sha = implementation_root(ctx, base, adopted)
    applied = work / "applied"
    apply_patch(base, base_sha, patch, applied)
    site = ctx.workspace.path / ADAPTER_SITE
    install(applied, site, vllm_python(ctx.profile), ctx.workspace.log_path("adapter-install"))
    (site / ADAPTER_TRIAL).write_text(patch_digest(patch) + "\n", encoding="utf-8")
    return site


def adopt_patched(ctx: Any, patch: str) -> None:
    """The patch on trial passed: later servers of the job keep it (the marker names its digest)."""
    site = ctx.workspace.path / ADAPTER_SITE
    (site / ADAPTER_MARKER).write_text(patch_digest(patch) + "\n", encoding="utf-8")
    (site / ADAPTER_TRIAL).unlink(missing_ok=True)


def drop_patched(ctx: Any) -> None:
    """Forget a trial install (a patch that did not pass never reaches a later server)."""
    shutil.rmtree(ctx.workspace.path / ADAPTER_SITE, ignore_errors=True)


def passed_patches(previous: Any) -> list[str]:
    """The patches earlier stages of this job adopted (`data.adapter.patch`), in stage order."""
    out: list[str] = []
    for res in dict(previous or {}).values():
        data = getattr(res, "data", None) or {}
        adapter = data.get("adapter") if isinstance(data, dict) else None
        if isinstance(adapter, dict) and adapter.get("outcome") == "passed" and adapter.get("patch"):
            out.append(str(adapter["patch"]))
    return out


def adapter_site(ctx: Any) -> Path | None:
    """The installed adapter site for this job: a patch on trial in this stage, the adopted one as
    installed on this host, or rebuilt from the adopted patches earlier stages recorded (another
    host, no shared workspace); None when the job has none."""
    site = ctx.workspace.path / ADAPTER_SITE
    if (site / ADAPTER_TRIAL).is_file():
        return site
    marker = site / ADAPTER_MARKER
    adopted = passed_patches(getattr(ctx, "previous", None))
    if not adopted:
        return site if marker.is_file() else None
    if marker.is_file() and marker.read_text(encoding="utf-8").strip() == patch_digest(adopted[-1]):
        return site
    ctx.progress("adapter: re-applying the adopted patch(es) on this host")
    install_patched(ctx, adopted[-1], ctx.workspace.path / "adapter" / "reapply", adopted[:-1])
    adopt_patched(ctx, adopted[-1])
    return site


def record(ctx: Any) -> dict[str, Any] | None:
    """What the first runner stage records about the candidate (repo, sha, changed files, install
    log); None without one. Installs it if no server has yet (a failure is recorded, not raised)."""
    cand: Candidate | None = getattr(ctx.options, "candidate", None)
    if cand is None:
        return None
    out: dict[str, Any] = {"repo": cand.repo, "ref": cand.ref, "sha": cand.sha}
    try:
        ensure(ctx)
        changed = changed_files(cand, ctx.workspace.path / CHECKOUT_DIR)
        out.update(
            base_branch=changed.base_branch,
            merge_base=changed.merge_base,
            files=changed.files,
            note=changed.note,
        )
    except CandidateFailed as exc:
        out.update(error=f"{exc.step}: {exc}")
    out["install_log"] = str(ctx.workspace.log_path(LOG_NAME))
    return out


#: the next step when a candidate cannot be fetched or installed (runners.serve reports it)
FIX = (
    "fix the candidate branch (it must be pip-installable without dependencies), push, "
    "and run `/adapt run --candidate ...` again"
)


def failure_text(ctx: Any, exc: CandidateFailed) -> str:
    """The diagnosis runners.serve reports (reason `candidate-install`) when `ensure` fails."""
    cand = ctx.options.candidate
    return f"the candidate {cand.repo}@{cand.sha[:12]} could not be set up for this job ({exc.step}): {exc}"


# -- delivery: the candidate's minimal diff (computed by the control plane itself, from git) -------
#: the size/scope budget a candidate's diff must fit to join the bot's single commit
DIFF_MAX_FILES = 20
DIFF_MAX_BYTES = 200 * 1024


@dataclass(frozen=True)
class DiffEntry:
    path: str
    status: str  # git's name-status letter: A, M, D, T, ...
    binary: bool
    size: int  # bytes at the candidate's commit (0 for a deletion)


def _unsafe_path(path: str) -> bool:
    parts = path.split("/")
    return (
        not path
        or path.startswith("/")
        or "\\" in path
        or any(p in ("", ".", "..") for p in parts)
        or parts[0] == ".git"
        or any(ord(c) < 32 for c in path)
    )


def budget_problems(entries: list[DiffEntry]) -> list[str]:
    """Why a diff may not join the commit (empty = it fits). Pure."""
    problems: list[str] = []
    if not entries:
        problems.append("the candidate changes no file against its merge-base")
    if len(entries) > DIFF_MAX_FILES:
        problems.append(f"it changes {len(entries)} files (at most {DIFF_MAX_FILES})")
    total = sum(e.size for e in entries)
    if total > DIFF_MAX_BYTES:
        problems.append(f"its changed files hold {total} bytes (at most {DIFF_MAX_BYTES})")
    for e in entries:
        if _unsafe_path(e.path):
            problems.append(f"`{e.path[:80]}` is not a plain path inside the repository")
        elif e.binary:
            problems.append(f"`{e.path}` is a binary file")
        elif e.status == "D":
            problems.append(f"it deletes `{e.path}` (deletions are not delivered automatically)")
        elif e.status not in ("A", "M"):
            problems.append(f"`{e.path}` changes type or mode ({e.status})")
    return problems


def _git_bytes(args: list[str], cwd: Path) -> bytes:
    proc = subprocess.run(["git", *args], cwd=cwd, env=_git_env(), capture_output=True, timeout=GIT_TIMEOUT_S)
    if proc.returncode != 0:
        raise CandidateFailed("diff", f"git {args[0]} failed: {proc.stderr.decode(errors='replace')[-300:]}")
    return proc.stdout


@dataclass(frozen=True)
class CandidateDiff:
    base_branch: str
    merge_base: str
    files: dict[str, bytes]  # path -> content at the candidate's commit


def candidate_diff(cand: Candidate, workdir: Path) -> CandidateDiff:
    """The files `cand.sha` changed vs its merge-base with the candidate repo's default branch,
    with their contents at that commit, checked against the budget; CandidateFailed("budget"|...)
    names what does not fit. Run by the control plane on its own fetch (never runner output)."""
    checkout = fetch(cand, workdir)
    changed = changed_files(cand, checkout)
    if changed.merge_base is None or changed.base_branch is None:
        raise CandidateFailed("diff", changed.note or "no merge-base")
    rng = [changed.merge_base, cand.sha]
    status = git(["diff", "--name-status", "--no-renames", "-z", *rng], cwd=checkout).split("\0")
    numstat = git(["diff", "--numstat", "--no-renames", "-z", *rng], cwd=checkout).split("\0")
    binary = {line.split("\t", 2)[2] for line in numstat if line.startswith("-\t-\t")}
    entries: list[DiffEntry] = []
    pairs = [p for p in status if p]
    for letter, path in zip(pairs[0::2], pairs[1::2], strict=False):
        size = 0
        if letter != "D":
            size = int(git(["cat-file", "-s", f"{cand.sha}:{path}"], cwd=checkout).strip() or 0)
        entries.append(DiffEntry(path, letter[:1], path in binary, size))
    problems = budget_problems(entries)
    if problems:
        raise CandidateFailed(
            "budget", "the candidate's diff does not fit the delivery budget: " + "; ".join(problems)
        )
    files = {e.path: _git_bytes(["cat-file", "blob", f"{cand.sha}:{e.path}"], checkout) for e in entries}
    return CandidateDiff(changed.base_branch, changed.merge_base, files)


def delivered_files(cand: Candidate) -> dict[str, bytes]:
    """`candidate_diff` in a throw-away directory: the files the single commit carries."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="adapt-candidate-") as tmp:
        return candidate_diff(cand, Path(tmp) / "checkout").files


# -- delivery of an adapter patch (runners.adapter) --------------------------------------------------


def adopted_adapter(results: Any) -> tuple[str, dict[str, Any]] | None:
    """(stage, `data.adapter`) of the last passing stage whose adapter patch the job adopted."""
    found = None
    for stage, res in dict(results or {}).items():
        data = getattr(res, "data", None) or {}
        rec = data.get("adapter") if isinstance(data, dict) else None
        if isinstance(rec, dict) and rec.get("outcome") == "passed" and getattr(res, "ok", False):
            found = (str(stage), rec)
    return found


def adapter_files(results: Any, already: dict[str, bytes] | None = None) -> dict[str, bytes]:
    """The files the adopted adapter patches deliver (path -> content; a later stage's wins),
    checked again here against the candidate budget (the runner that recorded them is not
    trusted), together with the candidate's own files (`already`) when the job has both;
    CandidateFailed("budget") otherwise."""
    files: dict[str, bytes] = {}
    for res in dict(results or {}).values():
        data = getattr(res, "data", None) or {}
        rec = data.get("adapter") if isinstance(data, dict) else None
        if not (isinstance(rec, dict) and rec.get("outcome") == "passed" and getattr(res, "ok", False)):
            continue
        raw = rec.get("files")
        texts = isinstance(raw, dict) and all(
            isinstance(k, str) and isinstance(v, str) for k, v in raw.items()
        )
        if not texts or not isinstance(raw, dict):
            raise CandidateFailed("budget", "the adapter's recorded files are not a path -> text mapping")
        files.update({k: v.encode("utf-8") for k, v in raw.items()})
    if not files:
        return {}
    union = {**(already or {}), **files}
    entries = [DiffEntry(p, "M", b"\0" in data, len(data)) for p, data in union.items()]
    problems = budget_problems(entries)
    if problems:
        raise CandidateFailed(
            "budget", "the adapter's patch does not fit the delivery budget: " + "; ".join(problems)
        )
    return files


def adapter_rationale(results: Any) -> str | None:
    """The PR body's sentence naming the files that came from the adapter (templates/artifacts)."""
    found = adopted_adapter(results)
    if found is None:
        return None
    from runners.render import render

    stage, rec = found
    return render("artifacts/adapter_files.txt.j2", stage=stage, record=rec).strip()
