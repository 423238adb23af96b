"""Pre-flight analysis of a hub repo over HTTP: the same AnalysisResult as a local checkout.

Reads, through `huggingface_hub` (so `HF_ENDPOINT`, `HF_TOKEN`, `HF_HUB_OFFLINE` and the stored
login behave exactly as they do for `huggingface_hub` itself):
- one `model_info(..., files_metadata=True)`: the pinned commit SHA and every file with its size;
- config.json, the side JSON files and the safetensors index (GET, in parallel);
- ONLY the safetensors headers: per shard `Range: bytes=0-7` on the resolve URL (the hub
  redirects LFS files to its CDN; the second read goes straight to the CDN URL the first one
  ended on), then `Range: bytes=8-(7+N)`. All shards in parallel, so the wall time is a few
  round trips, not 163 of them. `strategy="speculative"` reads `0-(K-1)` first (one round
  trip, more bytes), like `get_safetensors_metadata`; benchmarks/bench_hub_preflight.py
  measures both.

huggingface_hub sends every request through one shared `httpx2.Client` per process, built by its
client factory; the default keeps 20 idle connections (httpx2's limits), so with 64 readers each
reader past 20 would open a new connection (a new TLS handshake on the real hub) for nearly every
request. `size_hub_pool` replaces that default factory, through huggingface_hub's own
`set_client_factory`, by one that builds the same client (same hooks, redirects, timeout, env
proxies and CA settings) with a pool of one connection per reader and origin.

Parsing is the local analysis's own (runners.analysis.checkpoint.scan_checkpoint through a
`CheckpointSource`, `header_length`, `parse_header`, `parse_json`, `build_result`): same fields,
same problems, same messages. Failures of the hub itself are `HubError`s (code, message,
retryable) decided by the exception class `huggingface_hub` raises from `X-Error-Code`, never by
the status alone; the token never appears in a message.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from runners.analysis import AnalysisError, build_result
from runners.analysis.checkpoint import INDEX_NAME, SIDE_JSON, scan_checkpoint
from runners.analysis.config import ConfigView, JsonFileError, check_json_size, parse_json
from runners.analysis.model import AnalysisResult
from runners.analysis.registry import Registries, RegistryError, load_registries
from runners.analysis.safetensors_headers import HeaderError, ShardHeader, header_length, parse_header

#: parallel header reads. Each shard costs three sequential round trips (resolve -> 302, CDN 0-7,
#: CDN 8-(7+N)), so a DeepSeek-V3's 163 shards take ceil(163 / workers) waves of 3 RTTs: 6 waves at
#: 32, 3 at 64 (benchmarks/bench_hub_preflight.py --compare: ~0.3 s less at 50 ms RTT). Past 64 the
#: client's CPU (GIL: HTTP + header JSON) is the limit, not the waves; still bounded.
DEFAULT_WORKERS = 64
#: origins a reader keeps a connection to: the hub (resolve -> 302) and the CDN it redirects to
ORIGINS_PER_READER = 2
#: first read of the speculative strategy (what get_safetensors_metadata reads)
SPECULATIVE_BYTES = 100_000
DEFAULT_TIMEOUT_S = 10.0


class HubError(Exception):
    """The hub could not answer: `code` in gated | not-found | revision-not-found | bad-token |
    entry-not-found | unavailable | unreachable | offline; `retryable` for the transient ones."""

    def __init__(self, code: str, message: str, *, retryable: bool = False) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.retryable = retryable


def hub_error(exc: BaseException, repo_id: str, revision: str | None = None) -> HubError:
    """Map what huggingface_hub raised to one clear message (by exception class / X-Error-Code)."""
    import httpx2  # huggingface_hub's HTTP client
    from huggingface_hub import errors as e

    status = getattr(getattr(exc, "response", None), "status_code", None)
    rev = f" at revision {revision}" if revision and revision != "main" else ""
    if isinstance(exc, e.GatedRepoError):
        return HubError(
            "gated",
            f"{repo_id} is a gated repo: accept its terms on the hub with the account the bot's "
            "token belongs to, and give the control plane and the runners that token as HF_TOKEN "
            "(a read token)" + (" — the current token has not been granted access" if status == 403 else ""),
        )
    if isinstance(exc, e.RevisionNotFoundError):
        return HubError("revision-not-found", f"{repo_id} has no revision {revision!r} on the hub")
    if isinstance(exc, e.RepositoryNotFoundError):
        return HubError(
            "not-found",
            f"{repo_id} was not found on the hub: check the id (org and name); if it is a private repo, "
            "set HF_TOKEN to a read token of an account that can see it",
        )
    if isinstance(exc, e.EntryNotFoundError):
        return HubError("entry-not-found", f"{repo_id}{rev}: a file the index names is not in the repo")
    if isinstance(exc, e.OfflineModeIsEnabled):
        return HubError(
            "offline", f"{repo_id} is not downloaded and HF_HUB_OFFLINE is set: the hub is not asked"
        )
    if isinstance(exc, e.HfHubHTTPError) and status == 401:
        return HubError("bad-token", "the hub refused HF_TOKEN (invalid or expired): set a valid read token")
    if isinstance(exc, e.HfHubHTTPError) and status is not None and (status >= 500 or status == 429):
        return HubError(
            "unavailable",
            f"the hub answered {status} for {repo_id}{rev} (after retries): a hub-side failure, "
            "try again later",
            retryable=True,
        )
    if isinstance(exc, httpx2.TimeoutException):
        return HubError(
            "unreachable", f"the hub did not answer in time for {repo_id}: try again later", retryable=True
        )
    if isinstance(exc, httpx2.TransportError):
        return HubError(
            "unreachable",
            f"cannot reach the hub for {repo_id} ({type(exc).__name__}): check HF_ENDPOINT / the network",
            retryable=True,
        )
    if isinstance(exc, e.HfHubHTTPError):
        return HubError("http-error", f"the hub answered {status} for {repo_id}{rev}")
    return HubError("http-error", f"reading {repo_id} from the hub failed: {type(exc).__name__}")


@dataclass
class HubStats:
    """What the pre-flight cost: for the benchmark and the byte-counting tests."""

    requests: int = 0
    body_bytes: int = 0
    header_bytes: int = 0
    metadata_bytes: int = 0
    wall_s: float = 0.0
    #: seconds spent on HTTP (listing, JSON files, headers) and on parsing/analysis
    fetch_s: float = 0.0
    parse_s: float = 0.0


@dataclass
class RepoListing:
    repo_id: str
    sha: str
    #: path -> size in bytes, every file of the revision
    sizes: dict[str, int]

    @property
    def top_level(self) -> list[str]:
        """What a local `list_dir` of the checkout would show: files and first-level directories."""
        names = {PurePosixPath(p).parts[0] for p in self.sizes}
        return sorted(names)


def _origin(url: str) -> tuple[str, str, int | None]:
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    return parts.scheme, parts.hostname or "", parts.port


class SizedClientFactory:
    """huggingface_hub's default client with room for `keepalive` idle connections.

    The client is built by `base` (huggingface_hub's default factory) and rebuilt from its public
    settings with a larger pool: event hooks (offline mode, request ids), redirects, timeout and
    `trust_env` (HTTP(S)_PROXY / NO_PROXY / SSL_CERT_FILE from the environment, as httpx2 reads
    them) stay exactly huggingface_hub's.
    """

    def __init__(self, base: Callable[[], Any], keepalive: int) -> None:
        self.base = base
        self.keepalive = keepalive

    def __call__(self) -> Any:
        import httpx2

        template = self.base()
        try:
            return httpx2.Client(
                event_hooks=template.event_hooks,
                follow_redirects=template.follow_redirects,
                timeout=template.timeout,
                trust_env=template.trust_env,
                headers=template.headers,
                limits=httpx2.Limits(
                    max_connections=max(self.keepalive, 100), max_keepalive_connections=self.keepalive
                ),
            )
        finally:
            template.close()


_POOL_LOCK = threading.Lock()


def size_hub_pool(workers: int) -> int | None:
    """Make huggingface_hub's shared client keep a connection per reader and origin; the pool size
    in effect, or None when the process has its own client factory (left alone: it is theirs).

    Process-wide on purpose: huggingface_hub has one client per process by design, and a second
    client of our own would bypass a factory an operator set and huggingface_hub's retry helper.
    The only change is a larger keep-alive ceiling (idle connections still expire after 5 s), so
    other users of huggingface_hub in the process are not changed otherwise. Installing a factory
    closes the current client once (huggingface_hub rebuilds it on the next request); a larger
    `workers` later grows it, a smaller one keeps it.
    """
    from huggingface_hub.utils import _http as hf_http  # the module of set_client_factory's state

    want = max(1, workers) * ORIGINS_PER_READER
    with _POOL_LOCK:
        current: Any = getattr(hf_http, "_GLOBAL_CLIENT_FACTORY", None)
        default: Any = getattr(hf_http, "default_client_factory", None)
        if isinstance(current, SizedClientFactory):
            if current.keepalive >= want:
                return current.keepalive
            base = current.base
        elif current is not None and current is default:
            base = current
        else:
            return None
        hf_http.set_client_factory(SizedClientFactory(base, want))
        return want


@dataclass
class HubReader:
    """HTTP through huggingface_hub's session, headers and error mapping; counts what it reads."""

    repo_id: str
    endpoint: str | None = None
    token: str | bool | None = None
    timeout: float = DEFAULT_TIMEOUT_S
    max_retries: int = 2
    stats: HubStats = field(default_factory=HubStats)
    _headers: dict[str, str] | None = field(default=None, repr=False)

    def listing(self, revision: str | None) -> RepoListing:
        from huggingface_hub import HfApi

        api = HfApi(endpoint=self.endpoint, token=self.token)
        try:
            info = api.model_info(self.repo_id, revision=revision, files_metadata=True, timeout=self.timeout)
        except Exception as exc:
            raise hub_error(exc, self.repo_id, revision) from None
        self.stats.requests += 1
        if not info.sha:
            raise HubError("http-error", f"the hub gave no commit SHA for {self.repo_id}")
        sizes = {s.rfilename: int(s.size or (s.lfs.size if s.lfs else 0) or 0) for s in info.siblings or []}
        return RepoListing(info.id or self.repo_id, info.sha, sizes)

    def url(self, filename: str, sha: str) -> str:
        from huggingface_hub import hf_hub_url

        return hf_hub_url(self.repo_id, filename, revision=sha, endpoint=self.endpoint)

    def get(self, url: str, rng: tuple[int, int] | None = None) -> tuple[bytes, str]:
        """GET (a byte range of) `url`, following the hub's redirect; body and the final URL."""
        from huggingface_hub import constants
        from huggingface_hub.utils import build_hf_headers, hf_raise_for_status, http_backoff

        if constants.HF_HUB_OFFLINE:
            from huggingface_hub.errors import OfflineModeIsEnabled

            raise hub_error(OfflineModeIsEnabled("offline"), self.repo_id)
        if self._headers is None:  # built once: it reads the token and the user agent (~1 ms)
            self._headers = build_hf_headers(token=self.token)
        headers = dict(self._headers)
        if _origin(url) != _origin(self.endpoint or constants.ENDPOINT):
            # a CDN URL the hub redirected to (the second range read): the token stays home
            headers.pop("authorization", None)
            headers.pop("Authorization", None)
        headers["Accept-Encoding"] = "identity"
        if rng is not None:
            headers["Range"] = f"bytes={rng[0]}-{rng[1]}"
        try:
            # the session drops Authorization when the redirect leaves the hub's host (CDN)
            resp = http_backoff(
                "GET",
                url,
                headers=headers,
                follow_redirects=True,
                timeout=self.timeout,
                max_retries=self.max_retries,
                base_wait_time=0.2,
                max_wait_time=2,
                retry_on_status_codes=(429, 500, 502, 503, 504),
            )
            hf_raise_for_status(resp)
        except HubError:
            raise
        except Exception as exc:
            raise hub_error(exc, self.repo_id) from None
        body = resp.content
        self.stats.requests += 1 + len(resp.history)
        self.stats.body_bytes += len(body)
        return body, str(resp.url)


@dataclass
class HubSource:
    """A CheckpointSource over the hub: JSON files fetched whole, shard headers prefetched."""

    reader: HubReader
    listing: RepoListing
    jsons: dict[str, bytes] = field(default_factory=dict)
    #: parsed documents (the 9 MB index of a DeepSeek-V3 is parsed once, not twice)
    parsed: dict[str, Any] = field(default_factory=dict)
    headers: dict[str, ShardHeader | HeaderError] = field(default_factory=dict)

    def fetch_json(self, name: str) -> None:
        size = self.listing.sizes.get(name, 0)
        try:
            check_json_size(name, size)
        except JsonFileError:
            return  # read_json raises the same error without reading
        body, _ = self.reader.get(self.reader.url(name, self.listing.sha))
        self.jsons[name] = body
        if name == INDEX_NAME:
            # parsed here, in the reader thread, while the header reads still wait on the network
            # (~0.1 s for the 9 MB index of a DeepSeek-V3); a bad index is left for read_json,
            # which raises the same error the scan always got
            with contextlib.suppress(JsonFileError):
                self.parsed[name] = parse_json(name, body)

    def read_json(self, name: str) -> tuple[Any, int]:
        check_json_size(name, self.listing.sizes.get(name, 0))
        if name not in self.jsons:
            self.fetch_json(name)
        raw = self.jsons[name]
        doc = self.parsed[name] if name in self.parsed else parse_json(name, raw)
        self.parsed[name] = doc
        self.reader.stats.metadata_bytes += len(raw)
        return doc, len(raw)

    def fetch_header(self, name: str, strategy: str = "exact") -> None:
        size = self.listing.sizes.get(name, 0)
        url = self.reader.url(name, self.listing.sha)
        try:
            if strategy == "speculative":
                first, final = self.reader.get(url, (0, min(SPECULATIVE_BYTES, max(size, 1)) - 1))
                n = header_length(name, size, first[:8])
                raw = first[8 : 8 + n]
                if len(raw) < n and len(first) >= min(SPECULATIVE_BYTES, size):
                    more, _ = self.reader.get(final, (len(first), 7 + n))
                    raw += more
            else:
                head, final = self.reader.get(url, (0, 7)) if size >= 8 else (b"", url)
                n = header_length(name, size, head)
                raw, _ = self.reader.get(final, (8, 7 + n)) if n else (b"", final)
            if len(raw) < n:
                raise HeaderError(
                    "header-truncated", f"{name}: file ended after {len(raw)} of {n} header bytes"
                )
            self.headers[name] = parse_header(raw[:n], path=Path(name), file_size=size)
        except HeaderError as exc:
            self.headers[name] = exc

    def read_header(self, name: str) -> ShardHeader:
        if name not in self.headers:
            self.fetch_header(name)
        got = self.headers[name]
        if isinstance(got, HeaderError):
            raise got
        self.reader.stats.header_bytes += got.bytes_read
        return got


def hub_preflight(
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
    strategy: str = "exact",
    timeout: float = DEFAULT_TIMEOUT_S,
    stats: HubStats | None = None,
) -> AnalysisResult:
    """Analyse `repo_id` at `revision` (default: the default branch) without downloading weights.

    The result is `analyze()`'s for the same files, with `revision` set to the pinned commit SHA
    and `hub_id` to the repo; every later stage uses that SHA. Raises HubError when the hub cannot
    answer, AnalysisError when there is nothing to analyse (no config.json, config not JSON).
    """
    started = time.perf_counter()
    size_hub_pool(workers)
    reader = HubReader(repo_id, endpoint=endpoint, token=token, timeout=timeout)
    if stats is not None:
        reader.stats = stats
    listing = reader.listing(revision)
    where = f"{repo_id}@{listing.sha[:12]}"
    if "config.json" not in listing.sizes:
        raise AnalysisError(
            "config-missing", f"{where} has no config.json: not a Hugging Face checkpoint repo"
        )
    return analyse_listing(
        reader,
        listing,
        repo_id,
        hub_id=listing.repo_id,
        started=started,
        workers=workers,
        strategy=strategy,
        registries=registries,
        vllm_root=vllm_root,
        vllm_ascend_root=vllm_ascend_root,
        vllm_python=vllm_python,
    )


def analyse_listing(
    reader: Any,
    listing: RepoListing,
    repo_id: str,
    *,
    hub_id: str | None = None,
    started: float,
    workers: int = DEFAULT_WORKERS,
    strategy: str = "exact",
    registries: Registries | None = None,
    vllm_root: Path | None = None,
    vllm_ascend_root: Path | None = None,
    vllm_python: Path | None = None,
) -> AnalysisResult:
    """The pre-flight after the listing, for either hub's reader (HubReader, ModelScopeReader):
    the JSON files and the shard headers read in parallel, then the local analysis's own scan and
    result, pinned to the listing's commit (`hub_id`: the repo as the hub names it, default
    `repo_id`). `started` is when the pre-flight began (its stats)."""
    names = listing.top_level
    name_set = set(names)
    source = HubSource(reader, listing)
    jsons = ["config.json", *[n for n in SIDE_JSON if n in name_set]]
    jsons += [n for n in names if n.endswith(".safetensors.index.json")]
    # JSON files and every top-level shard's header at once: waiting for the 9 MB index of a
    # DeepSeek-V3 before the first header read costs its download. A shard the index does not
    # list has its header read too (8 + N bytes; the scan reports it as shard-not-in-index).
    shards = sorted(n for n in names if n.endswith(".safetensors"))
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        futures = [pool.submit(source.fetch_json, n) for n in jsons]
        futures += [pool.submit(source.fetch_header, s, strategy) for s in shards]
        for f in futures:
            f.result()
    reader.stats.fetch_s = time.perf_counter() - started
    try:
        check_json_size("config.json", listing.sizes["config.json"])
        raw_cfg = parse_json("config.json", source.jsons["config.json"])
    except JsonFileError as exc:
        code = "config-not-json" if exc.code == "not-json" else "config-invalid"
        raise AnalysisError(code, f"cannot analyse: {exc.message}") from None
    if not isinstance(raw_cfg, dict):
        raise AnalysisError("config-invalid", "cannot analyse: config.json is JSON but not an object")
    if registries is None:
        try:
            registries = load_registries(vllm_root, vllm_ascend_root, vllm_python)
        except RegistryError as exc:
            raise AnalysisError("bad-registry-root", str(exc)) from None
    scan = scan_checkpoint(Path(repo_id), names, source=source)
    result = build_result(Path(repo_id), ConfigView(raw_cfg), scan, registries)
    reader.stats.wall_s = time.perf_counter() - started
    reader.stats.parse_s = reader.stats.wall_s - reader.stats.fetch_s
    return result.model_copy(update={"revision": listing.sha, "hub_id": hub_id or repo_id})
