"""Pre-flight analysis of a ModelScope repo over HTTP: the same AnalysisResult as a local checkout
and as the Hugging Face pre-flight (runners.analysis.hub), from the second model source.

Settings are the `modelscope` SDK's own (modelscope_hub.config.HubConfig, read afresh per call):
endpoint = the argument, else `MODELSCOPE_ENDPOINT`, else the deprecated `MODELSCOPE_DOMAIN`,
else https://modelscope.cn; token = the argument, else `MODELSCOPE_API_TOKEN`, else the SDK's
stored login (`modelscope login`).

Reads:
- the file listing through the SDK (`HubApi.legacy.list_repo_files`: `GET /api/v1/models/{id}/
  repo/files?Revision=&Recursive=True`, its own retries and truncation walk). ModelScope has no
  repo-level commit in that answer; each file carries the commit that last changed it, so the
  pinned revision is the newest of those (a 40-hex revision asked for is kept as given). A
  branch head whose last commit only deleted files pins the commit before it, whose tree still
  has those files: the job then reads that (consistent) older tree.
- config.json, the side JSON files and the index whole, and ONLY the safetensors headers: per
  shard `Range: bytes=0-7`, then `8-(7+N)` on the URL the file redirect ended on (the OSS/CDN
  host), all in parallel through runners.analysis.hub.HubSource, the HF pre-flight's own source.
  Ranges go through a `requests` session of ours: the SDK's session would carry the token's
  `m_session_id` cookie and `Authorization` onto the redirect; ours sends them to the endpoint's
  origin only and follows redirects itself.

Parsing is the local analysis's (scan_checkpoint + build_result), so fields, problems and
messages are the same. Failures are runners.analysis.hub.HubError with ModelScope's reason
(decided by the SDK's exception class, i.e. its status and business code); the token never
appears in a message.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

from runners.analysis import AnalysisError
from runners.analysis.hub import (
    DEFAULT_TIMEOUT_S,
    DEFAULT_WORKERS,
    HubError,
    HubReader,
    HubStats,
    RepoListing,
    _origin,
    analyse_listing,
)
from runners.analysis.model import AnalysisResult
from runners.analysis.registry import Registries

TOKEN_ENV = "MODELSCOPE_API_TOKEN"  # noqa: S105 - the variable's name, not a token
_SHA_RE = re.compile(r"^[0-9a-f]{40}$")
_MAX_REDIRECTS = 5


def resolve_settings(endpoint: str | None = None, token: str | None = None) -> tuple[str, str | None]:
    """(endpoint, token) as the SDK resolves them now (explicit > environment > stored login)."""
    from modelscope_hub.config import HubConfig

    cfg = HubConfig(endpoint=endpoint, token=token)
    return str(cfg.endpoint), cfg.token or None


def ms_error(exc: BaseException, repo_id: str, revision: str | None = None, *, token: bool) -> HubError:
    """One clear message for what the ModelScope SDK raised (its class carries status + code)."""
    from modelscope_hub import errors as e

    rev = f" at revision {revision}" if revision and revision != "master" else ""
    who = f"{repo_id} on ModelScope"
    if isinstance(exc, e.AuthenticationError):
        if token:
            return HubError(
                "bad-token",
                f"ModelScope refused {TOKEN_ENV} (invalid or expired) for {repo_id}: set a valid "
                "access token",
            )
        return HubError(
            "gated",
            f"{who} needs a login (a private or gated model): give the control plane and the "
            f"runners {TOKEN_ENV}, an access token of an account that can see it",
        )
    if isinstance(exc, e.PermissionDeniedError):
        return HubError(
            "gated",
            f"{who} is not open to the bot's account: apply for access on its ModelScope page with "
            f"the account {TOKEN_ENV} belongs to"
            + ("" if token else f" and give the control plane and the runners that token as {TOKEN_ENV}"),
        )
    if isinstance(exc, e.NotExistError):
        return HubError(
            "not-found",
            f"{who} was not found: check the id (org and name); if it is a private model, set "
            f"{TOKEN_ENV} to an access token of an account that can see it",
        )
    if isinstance(exc, e.ServerError | e.RateLimitError):
        status = getattr(exc, "status_code", None)
        said = f"answered {status}" if status else "kept failing"
        return HubError(
            "unavailable",
            f"ModelScope {said} for {repo_id}{rev} (after retries): a hub-side failure, try again later",
            retryable=True,
        )
    if isinstance(exc, e.RequestTimeoutError):
        return HubError(
            "unreachable", f"ModelScope did not answer in time for {repo_id}: try again later", retryable=True
        )
    if isinstance(exc, e.NetworkError):
        return HubError(
            "unreachable",
            f"cannot reach ModelScope for {repo_id}: check MODELSCOPE_ENDPOINT / the network",
            retryable=True,
        )
    if isinstance(exc, e.APIError):
        return HubError(
            "http-error", f"ModelScope answered {getattr(exc, 'status_code', None)} for {repo_id}{rev}"
        )
    return HubError("http-error", f"reading {repo_id} from ModelScope failed: {type(exc).__name__}")


def pinned_commit(files: list[dict[str, Any]], revision: str | None) -> str | None:
    """The commit a listing stands for: the revision asked for when it is a commit, else the
    newest per-file commit (pure)."""
    if revision and _SHA_RE.match(revision):
        return revision
    best: tuple[float, str] | None = None
    for f in files:
        rev = str(f.get("Revision") or "")
        if not _SHA_RE.match(rev):
            continue
        try:
            when = float(f.get("CommittedDate") or 0)
        except (TypeError, ValueError):
            when = 0.0
        if best is None or (when, rev) > best:
            best = (when, rev)
    return best[1] if best else None


@dataclass
class ModelScopeReader(HubReader):
    """HubReader's interface (listing, url, get, stats) over ModelScope, for HubSource."""

    _api: Any = field(default=None, repr=False)
    _session: Any = field(default=None, repr=False)
    #: the raw listing entries of the pinned revision (the runner download reuses them)
    files: list[dict[str, Any]] = field(default_factory=list, repr=False)

    def __post_init__(self) -> None:
        token = self.token if isinstance(self.token, str) else ("" if self.token is False else None)
        self.endpoint, self.token = resolve_settings(self.endpoint, token)

    def api(self) -> Any:
        if self._api is None:
            from modelscope_hub import HubApi
            from modelscope_hub.config import HubConfig

            token = self.token if isinstance(self.token, str) else ""
            self._api = HubApi(HubConfig(endpoint=self.endpoint, token=token))
        return self._api

    def _error(self, exc: BaseException, revision: str | None = None) -> HubError:
        return ms_error(exc, self.repo_id, revision, token=bool(self.token))

    def listing(self, revision: str | None) -> RepoListing:
        from modelscope_hub.errors import HubError as SdkError
        from modelscope_hub.errors import NotExistError

        legacy = self.api().legacy
        try:
            raw = legacy.list_repo_files(
                repo_id=self.repo_id, repo_type="model", revision=revision or "master", recursive=True
            )
        except NotExistError as exc:
            raise self._missing(exc, revision) from None
        except SdkError as exc:
            raise self._error(exc, revision) from None
        self.stats.requests += 1
        blobs = [f for f in raw if (f.get("Type") or "blob") != "tree" and f.get("Path")]
        sha = pinned_commit(blobs, revision)
        if sha is None:
            raise HubError("http-error", f"ModelScope gave no commit for {self.repo_id}")
        self.files = blobs
        return RepoListing(self.repo_id, sha, {str(f["Path"]): int(f.get("Size") or 0) for f in blobs})

    def _missing(self, exc: BaseException, revision: str | None) -> HubError:
        """A 404 for a revision other than the default: the repo may exist without that revision."""
        if revision and revision != "master":
            try:
                self.api().legacy.list_revisions(self.repo_id, "model")
            except Exception:
                return self._error(exc, revision)
            return HubError(
                "revision-not-found", f"{self.repo_id} has no revision {revision!r} on ModelScope"
            )
        return self._error(exc, revision)

    def url(self, filename: str, sha: str) -> str:
        return str(self.api().legacy.get_download_url(self.repo_id, "model", filename, sha))

    def _request_headers(self, url: str) -> dict[str, str]:
        headers = {"Accept-Encoding": "identity", "User-Agent": "adapt-bot (modelscope pre-flight)"}
        if self.token and _origin(url) == _origin(str(self.endpoint)):
            # the SDK sends both: newer endpoints read the bearer, older ones the session cookie
            headers["Authorization"] = f"Bearer {self.token}"
            headers["Cookie"] = f"m_session_id={self.token}"
        return headers

    def get(self, url: str, rng: tuple[int, int] | None = None) -> tuple[bytes, str]:
        """GET (a byte range of) `url`, following redirects ourselves so the token stays on the
        endpoint's origin; retries 429/5xx and dropped connections `max_retries` times."""
        import requests
        from modelscope_hub.errors import HubError as SdkError
        from modelscope_hub.errors import NetworkError, NotExistError, RequestTimeoutError, raise_for_status

        if self._session is None:
            session = requests.Session()
            adapter = requests.adapters.HTTPAdapter(pool_maxsize=DEFAULT_WORKERS, pool_connections=4)
            session.mount("http://", adapter)
            session.mount("https://", adapter)
            self._session = session
        for attempt in range(self.max_retries + 1):
            current = url
            try:
                for _hop in range(_MAX_REDIRECTS + 1):
                    headers = self._request_headers(current)
                    if rng is not None:
                        headers["Range"] = f"bytes={rng[0]}-{rng[1]}"
                    resp = self._session.get(
                        current, headers=headers, allow_redirects=False, timeout=self.timeout
                    )
                    self.stats.requests += 1
                    if resp.status_code in (301, 302, 303, 307, 308) and resp.headers.get("Location"):
                        current = urljoin(current, resp.headers["Location"])
                        continue
                    break
                if resp.status_code in (429, 500, 502, 503, 504) and attempt < self.max_retries:
                    time.sleep(min(2.0, 0.2 * 2**attempt))
                    continue
                raise_for_status(resp)
            except requests.Timeout as exc:
                if attempt < self.max_retries:
                    continue
                raise self._error(RequestTimeoutError(str(exc))) from None
            except requests.ConnectionError as exc:
                if attempt < self.max_retries:
                    time.sleep(0.2)
                    continue
                raise self._error(NetworkError(type(exc).__name__)) from None
            except NotExistError:
                raise HubError(
                    "entry-not-found",
                    f"{self.repo_id} on ModelScope: a file the listing names is not in the repo",
                ) from None
            except SdkError as exc:
                raise self._error(exc) from None
            body = resp.content
            self.stats.body_bytes += len(body)
            return body, current
        raise HubError("unreachable", f"cannot read {self.repo_id} from ModelScope", retryable=True)


def modelscope_preflight(
    repo_id: str,
    *,
    revision: str | None = None,
    endpoint: str | None = None,
    token: str | bool | None = None,
    vllm_root: Path | None = None,
    vllm_ascend_root: Path | None = None,
    vllm_python: Path | None = None,
    registries: Registries | None = None,
    workers: int = DEFAULT_WORKERS,
    timeout: float = DEFAULT_TIMEOUT_S,
    stats: HubStats | None = None,
) -> AnalysisResult:
    """Analyse ModelScope's `repo_id` at `revision` (default: master) without downloading weights.

    `hub_preflight`'s contract for the second source: `analyze()`'s result for the same files,
    `revision` = the pinned commit, `hub_id` = `repo_id`. Raises HubError when ModelScope cannot
    answer, AnalysisError when there is nothing to analyse."""
    started = time.perf_counter()
    reader = ModelScopeReader(repo_id, endpoint=endpoint, token=token, timeout=timeout)
    if stats is not None:
        reader.stats = stats
    listing = reader.listing(revision)
    if "config.json" not in listing.sizes:
        raise AnalysisError(
            "config-missing",
            f"modelscope:{repo_id}@{listing.sha[:12]} has no config.json: not a Hugging Face-format "
            "checkpoint",
        )
    return analyse_listing(
        reader,
        listing,
        repo_id,
        started=started,
        workers=workers,
        registries=registries,
        vllm_root=vllm_root,
        vllm_ascend_root=vllm_ascend_root,
        vllm_python=vllm_python,
    )
