"""Local delivery: exactly one signed-off commit on `adapt/<slug>-<issue>` on top of the base.

Built with git plumbing on a private index (hash-object, read-tree, update-index, write-tree,
commit-tree, update-ref), the same blobs → tree → commit → ref sequence the GitHub Git Database API
uses. So the user's working tree, index and current branch are never touched, a rerun simply points
the branch at a fresh single commit on the base, and what goes in is exactly the intended files.
Code changes that came with the job (a patch file or a candidate branch) go into the same commit.
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

_IDENTITY = re.compile(r"^\s*(?P<name>[^<>\n]+?)\s*<(?P<email>[^<>\s]+@[^<>\s]+)>\s*$")
_BRANCH = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,200}$")


class DeliveryError(RuntimeError):
    """Delivery refused or failed; the message says why and what to do."""


@dataclass(frozen=True)
class LocalCommit:
    sha: str
    branch: str
    base: str
    files: tuple[str, ...]


def parse_identity(signoff: str) -> tuple[str, str]:
    m = _IDENTITY.match(signoff)
    if not m:
        raise DeliveryError(f"sign-off identity must look like 'Name <email@host>', got {signoff!r}")
    return m.group("name"), m.group("email")


def _git(repo: Path, *args: str, env: dict[str, str] | None = None, input_: str | None = None) -> str:
    full_env = {**os.environ, **(env or {})}
    proc = subprocess.run(
        ["git", "-c", "commit.gpgsign=false", *args],
        cwd=repo,
        env=full_env,
        input=input_,
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise DeliveryError(f"git {args[0]} failed: {proc.stderr.strip()[:2000]}")
    return proc.stdout


def with_signoff(message: str, signoff: str) -> str:
    """The message with a `Signed-off-by:` trailer (not duplicated if already there)."""
    trailer = f"Signed-off-by: {signoff.strip()}"
    body = message.rstrip()
    if trailer in body.splitlines():
        return body + "\n"
    last_para = body.rsplit("\n\n", 1)[-1] if "\n\n" in body else ""
    trailer_block = bool(last_para) and all(re.match(r"^[A-Za-z-]+: ", ln) for ln in last_para.splitlines())
    return f"{body}\n{trailer}\n" if trailer_block else f"{body}\n\n{trailer}\n"


def collect_files(files_root: Path) -> list[str]:
    """Repo-relative paths of the regular files under `files_root` (symlinks refused)."""
    out: list[str] = []
    for path in sorted(files_root.rglob("*")):
        rel = path.relative_to(files_root).as_posix()
        if path.is_symlink():
            raise DeliveryError(f"{rel}: symlinks are not delivered")
        if path.is_file():
            if rel.startswith(".git/") or rel == ".git" or "/.git/" in rel:
                raise DeliveryError(f"{rel}: refusing to write inside .git")
            out.append(rel)
    return out


def commit_local(
    repo: Path,
    files_root: Path,
    *,
    branch: str,
    message: str,
    signoff: str,
    base: str | None = None,
    patch: Path | None = None,
    candidate: str | None = None,
    deleted: Sequence[str] = (),
    author: str | None = None,
) -> LocalCommit:
    """Create ONE signed-off commit on `branch` = base + (files under files_root, patch/candidate).

    `signoff` is the trailer identity ("Name <email>"); it is also the committer/author unless
    `author` is given. Re-running replaces the branch with a new single commit on the base.
    """
    repo = repo.resolve()
    if not _BRANCH.match(branch) or ".." in branch or branch.endswith((".lock", "/", ".")):
        raise DeliveryError(f"{branch!r} is not a valid branch name")
    name, email = parse_identity(signoff)
    a_name, a_email = parse_identity(author) if author else (name, email)
    _git(repo, "rev-parse", "--git-dir")
    base_sha = _git(repo, "rev-parse", "--verify", f"{base or 'HEAD'}^{{commit}}").strip()
    files = collect_files(files_root) if files_root.is_dir() else []

    with tempfile.TemporaryDirectory(prefix="adapt-index-") as tmp:
        env = {
            "GIT_INDEX_FILE": str(Path(tmp) / "index"),
            "GIT_AUTHOR_NAME": a_name,
            "GIT_AUTHOR_EMAIL": a_email,
            "GIT_COMMITTER_NAME": name,
            "GIT_COMMITTER_EMAIL": email,
        }
        _git(repo, "read-tree", base_sha, env=env)
        if candidate:
            cand_sha = _git(repo, "rev-parse", "--verify", f"{candidate}^{{commit}}").strip()
            diff = _git(repo, "diff", "--binary", f"{base_sha}...{cand_sha}")
            if diff.strip():
                _git(repo, "apply", "--cached", "--whitespace=nowarn", "-", env=env, input_=diff)
        if patch is not None:
            if not patch.is_file():
                raise DeliveryError(f"patch {patch} does not exist")
            _git(repo, "apply", "--cached", "--whitespace=nowarn", str(patch.resolve()), env=env)
        for rel in files:
            blob = _git(repo, "hash-object", "-w", "--", str(files_root / rel)).strip()
            mode = "100755" if os.access(files_root / rel, os.X_OK) else "100644"
            _git(repo, "update-index", "--add", "--cacheinfo", f"{mode},{blob},{rel}", env=env)
        for rel in deleted:
            _git(repo, "update-index", "--force-remove", "--", rel, env=env)
        tree = _git(repo, "write-tree", env=env).strip()
        base_tree = _git(repo, "rev-parse", f"{base_sha}^{{tree}}").strip()
        if tree == base_tree:
            raise DeliveryError("nothing to commit: the files are identical to the base")
        sha = _git(
            repo,
            "commit-tree",
            tree,
            "-p",
            base_sha,
            "-F",
            "-",
            env=env,
            input_=with_signoff(message, signoff),
        ).strip()
    _git(repo, "update-ref", "-m", "adapt-bot: deliver", f"refs/heads/{branch}", sha)
    changed = verify_single_commit(repo, branch, base_sha, signoff)
    return LocalCommit(sha=sha, branch=branch, base=base_sha, files=tuple(changed))


def verify_single_commit(repo: Path, branch: str, base: str, signoff: str) -> list[str]:
    """Check with git itself: exactly one commit on top of base, carrying the sign-off."""
    count = int(_git(repo, "rev-list", "--count", f"{base}..refs/heads/{branch}").strip())
    if count != 1:
        raise DeliveryError(f"{branch} has {count} commits on top of {base[:12]}, expected exactly 1")
    parents = _git(repo, "rev-list", "--parents", "-n", "1", f"refs/heads/{branch}").split()
    if parents[1:] != [base]:
        raise DeliveryError(f"{branch}'s commit is not a child of {base[:12]}")
    trailers = _git(
        repo, "log", "-1", "--format=%(trailers:key=Signed-off-by,valueonly)", f"refs/heads/{branch}"
    )
    if signoff.strip() not in [t.strip() for t in trailers.splitlines()]:
        raise DeliveryError(f"{branch}'s commit lacks 'Signed-off-by: {signoff}'")
    return [p for p in _git(repo, "diff", "--name-only", base, f"refs/heads/{branch}").splitlines() if p]
