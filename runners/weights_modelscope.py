"""Weights from ModelScope on the runner: the pinned revision downloaded once into the shared
model cache, with runners.weights' guarantees (runners.weights.ensure_weights dispatches here for
a `modelscope:` reference).

- Identity: the lock and the completion marker are keyed `modelscope--<org>--<name>--<sha>` and
  the files live under `<cache>/modelscope/` (the SDK's cache layout:
  `models/<org>--<name>/snapshots/<sha>/`), so ModelScope's `Qwen/Qwen3-8B` never shares a cache
  entry with Hugging Face's (`<cache>/models--Qwen--Qwen3-8B`).
- One download per revision across concurrent jobs and processes: runners.weights.revision_lock
  (`flock`, released by the kernel when a holder dies); whoever waited finds the marker.
- Resumable, by the SDK itself: modelscope_hub's DownloadManager writes `<file>.incomplete`
  beside the target and continues it with `Range: bytes=<have>-`, after a dropped connection
  (its own retries) and after a killed job (the partial file stays; the next run resumes it).
  Files with a listed SHA-256 are verified before they are moved into place.
- Disk space checked before the first byte: the bytes still missing (the listing's sizes, at
  least the index's `total_size` when the caller knows it) must fit, with runners.weights' margin.
- Progress lines through the callback from the bytes on disk, every `progress_interval_s`.
- Private / gated / missing repos and outages → WeightsError with ModelScope's reason
  (runners.analysis.modelscope_hub.ms_error: MODELSCOPE_API_TOKEN, apply for access, ...).

Endpoint and token are the SDK's settings (MODELSCOPE_ENDPOINT, MODELSCOPE_API_TOKEN, stored
login), not the Hugging Face ones.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path

from runners.model_ref import MODELSCOPE, hub_display
from runners.weights import (
    JOB_PATTERNS,
    Weights,
    WeightsError,
    _wanted,
    cached,
    fill_revision,
    model_cache_dir,
)

#: the SDK's cache_dir inside the shared model cache
CACHE_SUBDIR = "modelscope"
_SHA_RE = re.compile(r"^[0-9a-f]{40}$")


def identity(repo_id: str) -> str:
    """The key of a ModelScope repo in the shared cache's locks and markers (an HF repo id has
    one '/', so this one cannot collide with any)."""
    return f"modelscope/{repo_id}"


def snapshot_dir(cache: Path, repo_id: str, sha: str) -> Path:
    return cache / CACHE_SUBDIR / "models" / repo_id.replace("/", "--") / "snapshots" / sha


def _bytes_on_disk(folder: Path) -> int:
    total = 0
    for dirpath, _dirs, files in os.walk(folder):
        for f in files:
            try:
                total += os.lstat(os.path.join(dirpath, f)).st_size
            except OSError:
                continue
    return total


def _map(exc: BaseException, repo_id: str, revision: str | None, *, token: bool) -> WeightsError:
    from modelscope_hub.errors import FileDownloadError, FileIntegrityError

    from runners.analysis.modelscope_hub import ms_error

    cause: BaseException = exc
    if isinstance(exc, FileDownloadError) and exc.failed_files:
        cause = next(iter(exc.failed_files.values()))
    if isinstance(cause, FileIntegrityError):
        return WeightsError(
            "incomplete",
            f"{repo_id}: a file arrived damaged or incomplete; the next attempt fetches it again",
            retryable=True,
        )
    err = ms_error(cause, repo_id, revision, token=token)
    return WeightsError(err.code, err.message, retryable=err.retryable)


def download(
    repo_id: str,
    revision: str | None,
    *,
    cache: Path | None = None,
    patterns: tuple[str, ...] = JOB_PATTERNS,
    expected_bytes: int | None = None,
    endpoint: str | None = None,
    token: str | bool | None = None,
    progress: Callable[[str], None] | None = None,
    progress_interval_s: float = 10.0,
    free_bytes: int | None = None,
    max_workers: int = 4,
) -> Weights:
    """The snapshot of ModelScope's `repo_id` at `revision` (the pinned commit; a branch or tag
    is resolved as the pre-flight resolves it and reported)."""
    from runners.analysis.hub import HubError
    from runners.analysis.modelscope_hub import ModelScopeReader

    say = progress or (lambda _line: None)
    cache = cache or model_cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    key = identity(repo_id)
    sha = revision if revision and _SHA_RE.match(revision) else None
    if sha is not None and (hit := cached(cache, key, sha)) is not None:
        return Weights(hit, "cache", repo_id, sha)
    reader = ModelScopeReader(repo_id, endpoint=endpoint, token=token)
    try:
        listing = reader.listing(sha or revision)
    except HubError as exc:
        raise WeightsError(exc.code, exc.message, retryable=exc.retryable) from None
    if sha is None:
        sha = listing.sha
        shown = hub_display(repo_id, MODELSCOPE)
        say(f"{shown}: revision {revision or 'master'} is {sha[:12]} (pinned for this job)")
    wanted = _wanted(listing.sizes, patterns)
    files = [f for f in reader.files if f.get("Path") in wanted]
    total = max(sum(wanted.values()), expected_bytes or 0)
    folder = snapshot_dir(cache, repo_id, sha)

    def fetch() -> Path:
        try:
            return Path(
                reader.api().download_repo(
                    repo_id,
                    "model",
                    revision=sha,
                    cache_dir=cache / CACHE_SUBDIR,
                    allow_patterns=list(patterns),
                    file_list=files,
                    max_workers=max_workers,
                )
            )
        except Exception as exc:
            raise _map(exc, repo_id, sha, token=bool(reader.token)) from None

    return fill_revision(
        cache,
        repo_id,
        sha,
        key=key,
        shown=hub_display(repo_id, MODELSCOPE),
        files=len(files),
        total=total,
        on_disk=lambda: _bytes_on_disk(folder),
        fetch=fetch,
        say=say,
        progress_interval_s=progress_interval_s,
        free_bytes=free_bytes,
        marker={"source": "modelscope"},
    )
