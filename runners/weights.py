"""Weights on the runner: the local checkout when its provenance matches, else the pinned revision
downloaded once into the shared model cache.

- `/models/<org>/<name>`, or a flat `/models/<name>` whose provenance names `org/name`
  (runners.model_ref.local_checkout): used as is, nothing is downloaded.
- Otherwise `snapshot_download(repo, revision=<pinned sha>, allow_patterns=JOB_PATTERNS)` into
  `ADAPT_BOT_MODEL_CACHE` (a huggingface_hub cache directory, so `HF_ENDPOINT` / `HF_TOKEN` /
  `HF_HUB_OFFLINE` apply as they do for huggingface_hub):
  - one download per revision across concurrent jobs and processes: an exclusive `flock` on
    `<cache>/.adapt-bot-locks/<org>--<name>--<sha>.lock`; whoever waits finds the completion
    marker and downloads nothing;
  - resumable: the LFS files (weights) are fetched first by `fetch_blob` into the cache's blob
    store, continuing `<blob>.adapt-bot-partial` with a Range request after a dropped connection
    and after a killed job (huggingface_hub 2.x deletes its own partial files on failure);
    snapshot_download then fetches the small files and links everything into the snapshot;
  - disk space checked before the first byte: the bytes still missing (sizes from the hub's file
    listing, at least the index's `total_size` when the caller knows it) must fit, with a margin;
  - progress lines through a callback (the status comment), from the bytes present in the blob
    store, every `progress_interval_s`;
  - gated / private / missing repos → WeightsError with the hub's reason (runners.analysis.hub).
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from fnmatch import fnmatch
from pathlib import Path

from runners.model_ref import ModelRef, ModelRefError, local_checkout

#: What a job reads: configs, tokenizer, chat template, remote code, safetensors weights. Never
#: `*.bin` / `*.pt` / `original/` duplicates (they can double the download).
JOB_PATTERNS: tuple[str, ...] = (
    "*.json",
    "*.safetensors",
    "*.model",
    "*.tiktoken",
    "*.txt",
    "*.py",
    "*.jinja",
)
#: free space kept beyond what the download needs
DISK_MARGIN_BYTES = 2 * 1024**3
DISK_MARGIN_FRACTION = 0.05
COMPLETE_DIR = ".adapt-bot-complete"
LOCK_DIR = ".adapt-bot-locks"


class WeightsError(ModelRefError):
    """The weights cannot be made available; `code` as runners.analysis.hub.HubError, plus
    `disk-space`; `retryable` for hub outages."""

    def __init__(self, code: str, message: str, *, retryable: bool = False) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.retryable = retryable


def model_cache_dir() -> Path:
    """`ADAPT_BOT_MODEL_CACHE`, else `~/.cache/adapt-bot/models` (a huggingface_hub cache dir)."""
    env = os.environ.get("ADAPT_BOT_MODEL_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "adapt-bot" / "models"


@dataclass(frozen=True)
class Weights:
    path: Path
    #: "local" (a checkout under the models root), "cache" (already downloaded), "download"
    source: str
    repo_id: str | None
    revision: str | None
    downloaded_bytes: int = 0


def _key(repo_id: str, sha: str) -> str:
    return f"{repo_id.replace('/', '--')}--{sha}"


def _repo_folder(cache: Path, repo_id: str) -> Path:
    return cache / f"models--{repo_id.replace('/', '--')}"


def _blob_bytes(folder: Path) -> int:
    total = 0
    try:
        with os.scandir(folder / "blobs") as it:
            for e in it:
                try:
                    total += e.stat(follow_symlinks=False).st_size
                except OSError:
                    continue
    except OSError:
        return 0
    return total


@contextmanager
def revision_lock(
    cache: Path, repo_id: str, sha: str, on_wait: Callable[[], None] | None = None
) -> Iterator[None]:
    """Exclusive per (repo, revision) across processes: `flock`, released by the kernel if the
    holder dies (a killed job never leaves the lock behind)."""
    d = cache / LOCK_DIR
    d.mkdir(parents=True, exist_ok=True)
    fd = os.open(d / f"{_key(repo_id, sha)}.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if on_wait is not None:
                on_wait()
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _complete_marker(cache: Path, repo_id: str, sha: str) -> Path:
    return cache / COMPLETE_DIR / f"{_key(repo_id, sha)}.json"


def cached(cache: Path, repo_id: str, sha: str) -> Path | None:
    """The snapshot of a revision this cache finished downloading, or None."""
    try:
        doc = json.loads(_complete_marker(cache, repo_id, sha).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    path = Path(doc.get("path", ""))
    return path if path.is_dir() else None


def _wanted(sizes: dict[str, int], patterns: tuple[str, ...]) -> dict[str, int]:
    return {p: s for p, s in sizes.items() if any(fnmatch(p, pat) for pat in patterns)}


def check_disk_space(cache: Path, need_bytes: int, *, free_bytes: int | None = None) -> None:
    """Refuse before the first byte when the missing bytes (plus a margin) do not fit."""
    cache.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(cache).free if free_bytes is None else free_bytes
    margin = max(DISK_MARGIN_BYTES, int(need_bytes * DISK_MARGIN_FRACTION))
    if need_bytes + margin > free:
        raise WeightsError(
            "disk-space",
            f"the download needs {need_bytes / 1e9:.1f} GB (+{margin / 1e9:.1f} GB margin) but only "
            f"{free / 1e9:.1f} GB are free in the model cache {cache}: free space there, or point "
            "ADAPT_BOT_MODEL_CACHE at a larger volume",
        )


def _map(exc: BaseException, repo_id: str, revision: str | None) -> WeightsError:
    from huggingface_hub import errors

    from runners.analysis.hub import hub_error

    cause: BaseException = exc
    if isinstance(exc, errors.LocalEntryNotFoundError) and exc.__cause__ is not None:
        cause = exc.__cause__  # snapshot_download wraps hub outages this way
    if isinstance(cause, OSError) and "Consistency check failed" in str(cause):
        return WeightsError(
            "incomplete", f"{repo_id}: a file arrived incomplete; the next attempt resumes it", retryable=True
        )
    err = hub_error(cause, repo_id, revision)
    return WeightsError(err.code, err.message, retryable=err.retryable)


#: one resumable GET writes in pieces of this size
_PIECE = 1 << 20
_ATTEMPTS = 5


def fetch_blob(
    url: str,
    blob: Path,
    size: int,
    *,
    endpoint: str | None,
    token: str | bool | None,
    timeout: float = 60.0,
) -> int:
    """Download one LFS file to `blob`, continuing `<blob>.adapt-bot-partial` if a killed job left
    one (Range: bytes=<have>-), and after a dropped connection (up to _ATTEMPTS). Returns the
    bytes transferred. huggingface_hub (2.x) drops a partial file on failure, so this is ours.

    The token goes to the hub only: the redirect to the CDN leaves it behind (httpx drops
    Authorization on a cross-origin redirect)."""
    import httpx2
    from huggingface_hub.errors import HfHubHTTPError
    from huggingface_hub.utils import build_hf_headers, get_session, hf_raise_for_status

    if blob.exists():
        return 0
    partial = blob.with_name(blob.name + ".adapt-bot-partial")
    got = 0
    last_error: BaseException | None = None
    for _attempt in range(_ATTEMPTS):
        have = partial.stat().st_size if partial.exists() else 0
        if have > size:
            partial.unlink()
            have = 0
        if have == size:
            break
        headers = build_hf_headers(token=token)
        headers["Accept-Encoding"] = "identity"
        if have:
            headers["Range"] = f"bytes={have}-"
        try:
            with get_session().stream(
                "GET", url, headers=headers, follow_redirects=True, timeout=timeout
            ) as resp:
                hf_raise_for_status(resp)
                mode = "ab" if have and resp.status_code == 206 else "wb"
                with open(partial, mode) as fh:
                    for piece in resp.iter_bytes(_PIECE):
                        fh.write(piece)
                        got += len(piece)
                    fh.flush()
                    os.fsync(fh.fileno())
        except HfHubHTTPError as exc:  # the hub's answer: retry its outages only
            status = getattr(getattr(exc, "response", None), "status_code", None)
            if status is None or (status < 500 and status != 429):
                raise
            last_error = exc
            time.sleep(0.5)
            continue
        except (httpx2.TransportError, OSError) as exc:
            last_error = exc  # dropped connection: continue from what is on disk
            time.sleep(0.2)
            continue
    else:
        raise last_error if last_error is not None else OSError(f"{blob.name}: download incomplete")
    if partial.stat().st_size != size:
        raise OSError(f"Consistency check failed: {blob.name} has {partial.stat().st_size} of {size} bytes")
    partial.replace(blob)
    return got


def _prefetch_lfs(
    repo_id: str,
    sha: str,
    lfs: dict[str, tuple[str, int]],
    folder: Path,
    *,
    endpoint: str | None,
    token: str | bool | None,
    workers: int = 4,
) -> int:
    """Big files first, into the blob store snapshot_download uses (blobs/<sha256>): it then only
    links them into the snapshot. Parallel, resumable (fetch_blob)."""
    from concurrent.futures import ThreadPoolExecutor

    from huggingface_hub import hf_hub_url

    (folder / "blobs").mkdir(parents=True, exist_ok=True)

    def one(item: tuple[str, tuple[str, int]]) -> int:
        name, (sha256, size) = item
        url = hf_hub_url(repo_id, name, revision=sha, endpoint=endpoint)
        return fetch_blob(url, folder / "blobs" / sha256, size, endpoint=endpoint, token=token)

    with ThreadPoolExecutor(max_workers=workers) as pool:
        return sum(pool.map(one, sorted(lfs.items())))


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
) -> Weights:
    """The snapshot of `repo_id` at `revision` (pinned SHA; a branch is resolved and reported)."""
    from huggingface_hub import HfApi, snapshot_download

    say = progress or (lambda _line: None)
    cache = cache or model_cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    api = HfApi(endpoint=endpoint, token=token)
    sha = revision if revision and len(revision) == 40 else None
    if sha is not None and (hit := cached(cache, repo_id, sha)) is not None:
        return Weights(hit, "cache", repo_id, sha)
    try:
        info = api.model_info(repo_id, revision=sha or revision, files_metadata=True)
    except Exception as exc:
        raise _map(exc, repo_id, revision) from None
    if sha is None:
        sha = str(info.sha)
        say(f"{repo_id}: revision {revision or 'main'} is {sha[:12]} (pinned for this job)")
    sizes = {s.rfilename: int(s.size or 0) for s in info.siblings or []}
    wanted = _wanted(sizes, patterns)
    lfs = {
        s.rfilename: (s.lfs.sha256, int(s.lfs.size))
        for s in info.siblings or []
        if s.lfs is not None and s.rfilename in wanted and s.lfs.sha256
    }
    total = max(sum(wanted.values()), expected_bytes or 0)
    folder = _repo_folder(cache, repo_id)

    def fetch() -> Path:
        try:
            _prefetch_lfs(repo_id, sha, lfs, folder, endpoint=endpoint, token=token)
            return Path(
                snapshot_download(
                    repo_id,
                    revision=sha,
                    cache_dir=cache,
                    allow_patterns=list(patterns),
                    endpoint=endpoint,
                    token=token,
                )
            )
        except Exception as exc:
            raise _map(exc, repo_id, sha) from None

    return fill_revision(
        cache,
        repo_id,
        sha,
        key=repo_id,
        shown=repo_id,
        files=len(wanted),
        total=total,
        on_disk=lambda: _blob_bytes(folder),
        fetch=fetch,
        say=say,
        progress_interval_s=progress_interval_s,
        free_bytes=free_bytes,
    )


def fill_revision(
    cache: Path,
    repo_id: str,
    sha: str,
    *,
    key: str,
    shown: str,
    files: int,
    total: int,
    on_disk: Callable[[], int],
    fetch: Callable[[], Path],
    say: Callable[[str], None],
    progress_interval_s: float,
    free_bytes: int | None = None,
    marker: dict[str, str] | None = None,
) -> Weights:
    """Either hub's download under the guarantees both keep: one download per revision (the
    lock on `key`, the cache re-checked once held), the missing bytes checked against the disk
    first, progress from `on_disk()` every `progress_interval_s`, and the completion marker
    written only after `fetch()` (which raises WeightsError) returned the snapshot."""
    short = f"{shown}@{sha[:12]}"
    waiting = f"{short}: another job is downloading this revision; waiting for it"
    with revision_lock(cache, key, sha, on_wait=lambda: say(waiting)):
        if (hit := cached(cache, key, sha)) is not None:
            return Weights(hit, "cache", repo_id, sha)
        present = on_disk()
        check_disk_space(cache, max(0, total - present), free_bytes=free_bytes)
        say(f"{short}: downloading {files} files, {total / 1e9:.2f} GB into {cache}")
        stop = threading.Event()

        def report() -> None:
            last = -1
            while not stop.wait(progress_interval_s):
                now = on_disk()
                if now != last and total:
                    pct = min(100, 100 * now // total)
                    say(f"{short}: {now / 1e9:.2f} of {total / 1e9:.2f} GB ({pct} %)")
                    last = now

        watcher = threading.Thread(target=report, name="weights-progress", daemon=True)
        watcher.start()
        started = time.monotonic()
        try:
            path = fetch()
        finally:
            stop.set()
            watcher.join(5)
        got = max(0, on_disk() - present)
        done = _complete_marker(cache, key, sha)
        done.parent.mkdir(parents=True, exist_ok=True)
        tmp = done.with_suffix(".tmp")
        doc = {"path": str(path), "repo_id": repo_id, **(marker or {}), "revision": sha, "bytes": total}
        tmp.write_text(json.dumps(doc))
        tmp.replace(done)
        say(f"{short}: downloaded {got / 1e9:.2f} GB in {time.monotonic() - started:.0f} s")
        return Weights(path, "download", repo_id, sha, got)


def ensure_weights(
    ref: ModelRef,
    *,
    models_root: Path,
    revision: str | None = None,
    progress: Callable[[str], None] | None = None,
    cache: Path | None = None,
    endpoint: str | None = None,
    token: str | bool | None = None,
    expected_bytes: int | None = None,
    progress_interval_s: float = 10.0,
) -> Weights:
    """The checkpoint directory a job runs on: a matching local checkout, else the cache download.

    A `/models/<name>` reference never downloads (it names a local directory); a hub id whose
    local directory is missing or belongs to another org (or hub) downloads `revision`; a
    ModelScope reference from ModelScope (runners.weights_modelscope, with the SDK's own endpoint
    and token settings: `endpoint` / `token` here are Hugging Face's).
    """
    found = local_checkout(ref, models_root, revision)
    if found is not None and found.path.is_dir():
        return Weights(found.path, "local", ref.hub_id, revision or found.provenance.revision)
    if ref.hub_id is None:
        raise ModelRefError(f"{ref.display} is not on this runner: no directory {models_root / ref.name}")
    if ref.source == "modelscope":
        from runners import weights_modelscope

        return weights_modelscope.download(
            ref.hub_id,
            revision,
            cache=cache,
            expected_bytes=expected_bytes,
            progress=progress,
            progress_interval_s=progress_interval_s,
        )
    return download(
        ref.hub_id,
        revision,
        cache=cache,
        endpoint=endpoint,
        token=token,
        expected_bytes=expected_bytes,
        progress=progress,
        progress_interval_s=progress_interval_s,
    )
