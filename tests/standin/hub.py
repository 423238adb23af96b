"""A local Hugging Face hub: a real threaded HTTP server that serves model repos from directories.

What `huggingface_hub` (HfApi, hf_hub_url + get_session, get_safetensors_metadata,
snapshot_download) talks to when `HF_ENDPOINT` points here, answering in the real hub's shapes:

- `GET /api/models/{org}/{name}` and `.../revision/{rev}`: model info (`sha`, `siblings`; with
  `?blobs=true` each sibling has `size`, and LFS files `lfs: {sha256, size, pointerSize}`).
- `HEAD|GET /{org}/{name}/resolve/{rev}/{path}`: the file, with `ETag`, `X-Repo-Commit`,
  `X-Linked-Size` / `X-Linked-Etag` (LFS files), `Accept-Ranges`, and `Range: bytes=a-b` / `a-`
  answered 206 with `Content-Range`. With a CDN host configured, LFS files answer 302 to it
  (a second server, as the real hub does; the client must drop `Authorization` there).
- Errors as the hub sends them, decided by `X-Error-Code`: gated repo without a granted token →
  401/403 `GatedRepo`; private or unknown repo → 401 (no token) / 404 `RepoNotFound`; unknown
  revision → 404 `RevisionNotFound`; unknown file → 404 `EntryNotFound`; injected 5xx.
- Injected latency per request (an RTT), connections cut after N body bytes (resume tests), and a
  request log with the bytes each answer carried (byte-counting tests and the benchmark).

Directories are served as they are (sparse files work: only requested ranges are read). The
LFS "sha256" of a big file is a digest of its path, size and mtime, not of its content: hashing a
sparse 688 GB checkpoint is not an option, and no client here verifies it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

#: files served as LFS (redirected to the CDN when there is one), like the hub's .gitattributes
LFS_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".gguf", ".model", ".tiktoken")
_REPO = r"(?P<repo>[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*)"
_API_RE = re.compile(rf"^/api/models/{_REPO}(?:/revision/(?P<rev>[^/]+))?$")
_TREE_RE = re.compile(rf"^/api/models/{_REPO}/tree/(?P<rev>[^/]+)(?:/(?P<path>.*))?$")
_RESOLVE_RE = re.compile(rf"^/{_REPO}/resolve/(?P<rev>[^/]+)/(?P<path>.+)$")
_CDN_RE = re.compile(r"^/lfs/(?P<repo_key>[^/]+)/(?P<rev>[0-9a-f]{40})/(?P<path>.+)$")
_RANGE_RE = re.compile(r"^bytes=(\d+)-(\d*)$")


@dataclass
class Repo:
    repo_id: str
    root: Path
    sha: str
    gated: bool = False
    private: bool = False
    #: tokens that may read it (gated: accepted the terms; private: members)
    granted: set[str] = field(default_factory=set)

    def files(self) -> list[str]:
        out: list[str] = []
        for dirpath, dirnames, filenames in os.walk(self.root):
            dirnames[:] = sorted(d for d in dirnames if d != ".git")
            for f in sorted(filenames):
                out.append(str((Path(dirpath) / f).relative_to(self.root)))
        return sorted(out)

    def file(self, rel: str) -> Path | None:
        if ".." in Path(rel).parts or rel.startswith("/"):
            return None
        path = self.root / rel
        return path if path.is_file() else None


def lfs_sha256(path: Path) -> str:
    st = path.stat()
    return hashlib.sha256(f"{path.name}:{st.st_size}:{st.st_mtime_ns}".encode()).hexdigest()


def git_blob_sha(path: Path) -> str:
    data = path.read_bytes()
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@dataclass
class Fault:
    """Answer requests whose path matches with `status` (and X-Error-Code), `count` times (-1: always)."""

    pattern: str
    status: int = 503
    count: int = 1
    method: str | None = None


@dataclass
class Cut:
    """Close the connection after `after` body bytes of a GET whose path matches, `count` times."""

    pattern: str
    after: int
    count: int = 1
    #: hold the connection open this long after `after` bytes before closing (a stalled transfer
    #: the client process can be killed in)
    stall_s: float = 0.0


@dataclass
class LogEntry:
    host: str  # "hub" | "cdn"
    method: str
    path: str
    range: str | None
    status: int
    body_bytes: int
    authorization: bool


class HubState:
    def __init__(self) -> None:
        self.repos: dict[str, Repo] = {}
        self.latency_s = 0.0
        #: added once per new connection (what TCP + TLS handshakes cost a client on the real hub)
        self.connect_latency_s = 0.0
        self.faults: list[Fault] = []
        self.cuts: list[Cut] = []
        self.log: list[LogEntry] = []
        self.lock = threading.Lock()
        self.cdn_url: str | None = None
        #: TCP connections accepted per host ("hub" | "cdn"): how well a client reuses its pool
        self.connections: dict[str, int] = {}

    def key(self, repo_id: str) -> str:
        return repo_id.casefold()

    def find(self, repo_id: str) -> Repo | None:
        return self.repos.get(self.key(repo_id))

    def record(self, entry: LogEntry) -> None:
        with self.lock:
            self.log.append(entry)

    def take_fault(self, method: str, path: str) -> Fault | None:
        with self.lock:
            for f in self.faults:
                if f.count != 0 and re.search(f.pattern, path) and (f.method in (None, method)):
                    if f.count > 0:
                        f.count -= 1
                    return f
        return None

    def take_cut(self, path: str) -> Cut | None:
        with self.lock:
            for c in self.cuts:
                if c.count > 0 and re.search(c.pattern, path):
                    c.count -= 1
                    return c
        return None


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "hub-standin/1"
    host_kind = "hub"
    state: HubState

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def setup(self) -> None:  # once per accepted connection
        super().setup()
        with self.state.lock:
            self.state.connections[self.host_kind] = self.state.connections.get(self.host_kind, 0) + 1
        if self.state.connect_latency_s:
            time.sleep(self.state.connect_latency_s)

    # --- plumbing -----------------------------------------------------------------------------
    def _token(self) -> str | None:
        auth = self.headers.get("Authorization") or ""
        return auth[7:].strip() if auth.lower().startswith("bearer ") else None

    def _send(
        self,
        status: int,
        body: bytes = b"",
        headers: dict[str, str] | None = None,
        *,
        content_length: int | None = None,
    ) -> None:
        head_only = self.command == "HEAD"
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body) if content_length is None else content_length))
        # logged before the body goes out: a client returns once it has the body, and a test that
        # reads the log right then must find this request in it
        self._log(status, len(body) if not head_only else 0)
        self.end_headers()
        if not head_only and body:
            self.wfile.write(body)

    def _log(self, status: int, sent: int) -> None:
        self.state.record(
            LogEntry(
                host=self.host_kind,
                method=self.command,
                path=urlsplit(self.path).path,
                range=self.headers.get("Range"),
                status=status,
                body_bytes=sent,
                authorization=bool(self.headers.get("Authorization")),
            )
        )

    def _error(self, status: int, code: str | None, message: str) -> None:
        headers = {"Content-Type": "application/json", "X-Request-Id": "standin-" + code if code else "x"}
        if code:
            headers["X-Error-Code"] = code
        headers["X-Error-Message"] = message
        self._send(status, json.dumps({"error": message}).encode(), headers)

    def _serve_file(self, path: Path, extra: dict[str, str]) -> None:
        size = path.stat().st_size
        start, end, status = 0, size - 1, 200
        rng = self.headers.get("Range")
        headers = {"Accept-Ranges": "bytes", "Content-Type": "application/octet-stream", **extra}
        if rng:
            m = _RANGE_RE.match(rng.strip())
            if not m:
                self._send(416, b"", {"Content-Range": f"bytes */{size}"})
                return
            start = int(m.group(1))
            end = min(int(m.group(2)) if m.group(2) else size - 1, size - 1)
            if start >= size or end < start:
                self._send(416, b"", {"Content-Range": f"bytes */{size}"})
                return
            status = 206
            headers["Content-Range"] = f"bytes {start}-{end}/{size}"
        length = end - start + 1
        if self.command == "HEAD":
            self._send(status, b"", headers, content_length=length)
            return
        cut = self.state.take_cut(urlsplit(self.path).path)
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(length))
        self._log(status, length if cut is None else min(length, max(cut.after, 0)))  # before the body
        self.end_headers()
        sent = 0
        with open(path, "rb", buffering=0) as fh:
            fh.seek(start)
            remaining = length
            while remaining > 0:
                chunk = fh.read(min(remaining, 1 << 20))
                if not chunk:
                    break
                if cut is not None and sent + len(chunk) > cut.after:
                    chunk = chunk[: max(cut.after - sent, 0)]
                    self.wfile.write(chunk)
                    sent += len(chunk)
                    self.wfile.flush()
                    if cut.stall_s:
                        time.sleep(cut.stall_s)
                    self.close_connection = True
                    with contextlib.suppress(OSError):
                        self.connection.shutdown(socket.SHUT_RDWR)
                    return
                self.wfile.write(chunk)
                sent += len(chunk)
                remaining -= len(chunk)

    # --- access -------------------------------------------------------------------------------
    def _repo_for(self, repo_id: str) -> Repo | None:
        """The repo when this request may read it; otherwise answer the hub's error and None."""
        repo = self.state.find(repo_id)
        token = self._token()
        if token is not None and token.startswith("invalid"):
            self._error(401, None, "Invalid credentials in Authorization header")
            return None
        if repo is None or (repo.private and token not in repo.granted):
            # an unknown repo asked without a token answers 401, like a private one
            self._error(401 if token is None else 404, "RepoNotFound", "Repository not found")
            return None
        if repo.gated and token not in repo.granted:
            self._error(
                401 if token is None else 403,
                "GatedRepo",
                f"Access to model {repo.repo_id} is restricted. You must have access to it and be "
                "authenticated to access it. Please log in.",
            )
            return None
        return repo

    def _revision(self, repo: Repo, rev: str) -> bool:
        if unquote(rev) in ("main", repo.sha):
            return True
        self._error(404, "RevisionNotFound", f"Invalid rev id: {unquote(rev)}")
        return False

    def _preamble(self) -> str | None:
        if self.state.latency_s:
            time.sleep(self.state.latency_s)
        path = urlsplit(self.path).path
        fault = self.state.take_fault(self.command, path)
        if fault is not None:
            self._error(fault.status, None, f"injected {fault.status}")
            return None
        return path

    # --- verbs --------------------------------------------------------------------------------
    def do_HEAD(self) -> None:
        self.do_GET()

    def do_GET(self) -> None:
        if self.path.startswith("/_standin/"):
            self._control()
            return
        path = self._preamble()
        if path is None:
            return
        if m := _TREE_RE.match(path):
            self._tree(m.group("repo"), m.group("rev"), unquote(m.group("path") or ""))
        elif m := _API_RE.match(path):
            self._api(m.group("repo"), m.group("rev") or "main")
        elif m := _RESOLVE_RE.match(path):
            self._resolve(m.group("repo"), m.group("rev"), unquote(m.group("path")))
        else:
            self._error(404, None, "Not Found")

    def _control(self) -> None:
        """Test control when the stand-in runs in its own process (`python -m tests.standin.hub`):
        `/_standin/log[?reset=1]` (the request log as JSON), `/_standin/latency?s=0.05[&connect=0.1]`
        (per request [and per new connection]), `/_standin/connections[?reset=1]` (connections
        accepted per host)."""
        url = urlsplit(self.path)
        q = parse_qs(url.query)
        if url.path in ("/_standin/log", "/_standin/connections"):
            log = url.path == "/_standin/log"
            with self.state.lock:
                body = json.dumps(
                    [e.__dict__ for e in self.state.log] if log else self.state.connections
                ).encode()
                if q.get("reset") == ["1"]:
                    (self.state.log if log else self.state.connections).clear()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        elif url.path == "/_standin/latency":
            self.state.latency_s = float(q.get("s", ["0"])[0])
            self.state.connect_latency_s = float(q.get("connect", ["0"])[0])
            self.send_response(204)
            self.send_header("Content-Length", "0")
            self.end_headers()
        else:
            self._error(404, None, "Not Found")

    def _api(self, repo_id: str, rev: str) -> None:
        repo = self._repo_for(repo_id)
        if repo is None or not self._revision(repo, rev):
            return
        blobs = parse_qs(urlsplit(self.path).query).get("blobs") == ["true"]
        siblings: list[dict[str, Any]] = []
        for rel in repo.files():
            entry: dict[str, Any] = {"rfilename": rel}
            if blobs:
                p = repo.root / rel
                size = p.stat().st_size
                entry["size"] = size
                if rel.endswith(LFS_SUFFIXES):
                    entry["blobId"] = lfs_sha256(p)[:40]
                    entry["lfs"] = {"sha256": lfs_sha256(p), "size": size, "pointerSize": 134}
                else:
                    entry["blobId"] = git_blob_sha(p)
            siblings.append(entry)
        author = repo.repo_id.split("/")[0]
        doc = {
            "_id": hashlib.sha1(repo.repo_id.encode()).hexdigest()[:24],
            "id": repo.repo_id,
            "modelId": repo.repo_id,
            "author": author,
            "sha": repo.sha,
            "lastModified": "2026-11-01T00:00:00.000Z",
            "createdAt": "2026-10-01T00:00:00.000Z",
            "private": repo.private,
            "gated": "manual" if repo.gated else False,
            "disabled": False,
            "downloads": 0,
            "likes": 0,
            "tags": ["safetensors"],
            "library_name": "transformers",
            "siblings": siblings,
        }
        self._send(200, json.dumps(doc).encode(), {"Content-Type": "application/json"})

    def _tree(self, repo_id: str, rev: str, under: str) -> None:
        """`list_repo_tree` (one page: the Link header pagination is not needed at these sizes)."""
        repo = self._repo_for(repo_id)
        if repo is None or not self._revision(repo, rev):
            return
        recursive = parse_qs(urlsplit(self.path).query).get("recursive") == ["true"]
        prefix = under.strip("/") + "/" if under.strip("/") else ""
        entries: list[dict[str, Any]] = []
        dirs: set[str] = set()
        for rel in repo.files():
            if not rel.startswith(prefix):
                continue
            rest = rel[len(prefix) :]
            parts = rest.split("/")
            for i in range(1, len(parts)):
                if recursive or i == 1:
                    dirs.add(prefix + "/".join(parts[:i]))
            if "/" in rest and not recursive:
                continue
            p = repo.root / rel
            size = p.stat().st_size
            entry: dict[str, Any] = {"type": "file", "path": rel, "size": size}
            if rel.endswith(LFS_SUFFIXES):
                entry["oid"] = lfs_sha256(p)[:40]
                entry["lfs"] = {"oid": lfs_sha256(p), "size": size, "pointerSize": 134}
            else:
                entry["oid"] = git_blob_sha(p)
            entries.append(entry)
        entries += [{"type": "directory", "path": d, "size": 0, "oid": "0" * 40} for d in sorted(dirs)]
        self._send(200, json.dumps(entries).encode(), {"Content-Type": "application/json"})

    def _resolve(self, repo_id: str, rev: str, rel: str) -> None:
        repo = self._repo_for(repo_id)
        if repo is None or not self._revision(repo, rev):
            return
        path = repo.file(rel)
        if path is None:
            self._error(404, "EntryNotFound", f"{rel} does not exist on revision {repo.sha}")
            return
        headers = {"X-Repo-Commit": repo.sha}
        if rel.endswith(LFS_SUFFIXES):
            sha256 = lfs_sha256(path)
            headers.update(
                {
                    "ETag": f'"{sha256}"',
                    "X-Linked-Etag": f'"{sha256}"',
                    "X-Linked-Size": str(path.stat().st_size),
                }
            )
            if self.state.cdn_url:
                location = f"{self.state.cdn_url}/lfs/{quote(self.state.key(repo.repo_id), safe='')}/"
                location += f"{repo.sha}/{quote(rel)}?X-Amz-Signature=standin"
                self._send(302, b"", {**headers, "Location": location})
                return
        else:
            headers["ETag"] = f'"{git_blob_sha(path)}"'
        self._serve_file(path, headers)


class _CdnHandler(_Handler):
    """The second host LFS files are redirected to; no auth (the URL is the credential)."""

    host_kind = "cdn"

    def do_GET(self) -> None:
        path = self._preamble()
        if path is None:
            return
        m = _CDN_RE.match(path)
        repo = self.state.repos.get(unquote(m.group("repo_key"))) if m else None
        if m is None or repo is None or m.group("rev") != repo.sha:
            self._send(404, b"NoSuchKey")
            return
        file = repo.file(unquote(m.group("path")))
        if file is None:
            self._send(404, b"NoSuchKey")
            return
        self._serve_file(file, {"ETag": f'"{lfs_sha256(file)}"'})


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256

    def handle_error(self, request: Any, client_address: Any) -> None:
        import sys

        if not isinstance(sys.exc_info()[1], ConnectionError):  # a client that gave up (timeouts)
            super().handle_error(request, client_address)


class HubStandin:
    """`with HubStandin() as hub: hub.add_repo("Qwen/Qwen3-8B", dir)`; `hub.url` is the HF_ENDPOINT."""

    def __init__(self, *, cdn: bool = False) -> None:
        self.state = HubState()
        handler = type("Handler", (_Handler,), {"state": self.state})
        self._servers = [_Server(("127.0.0.1", 0), handler)]
        self.url = f"http://127.0.0.1:{self._servers[0].server_address[1]}"
        if cdn:
            cdn_handler = type("CdnHandler", (_CdnHandler,), {"state": self.state})
            self._servers.append(_Server(("127.0.0.1", 0), cdn_handler))
            self.state.cdn_url = f"http://127.0.0.1:{self._servers[1].server_address[1]}"
        self._threads: list[threading.Thread] = []

    def start(self) -> HubStandin:
        for srv in self._servers:
            t = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
            t.start()
            self._threads.append(t)
        return self

    def stop(self) -> None:
        for srv in self._servers:
            srv.shutdown()
            srv.server_close()

    def __enter__(self) -> HubStandin:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- configuration ------------------------------------------------------------------------
    def add_repo(
        self,
        repo_id: str,
        root: Path,
        *,
        sha: str | None = None,
        gated: bool = False,
        private: bool = False,
        granted: set[str] | None = None,
    ) -> Repo:
        if sha is None:
            h = hashlib.sha1(repo_id.encode())
            for dirpath, _dirs, files in sorted(os.walk(root)):
                for f in sorted(files):
                    p = Path(dirpath) / f
                    h.update(f"{p.relative_to(root)}:{p.stat().st_size}".encode())
            sha = h.hexdigest()
        repo = Repo(repo_id, Path(root), sha, gated, private, set(granted or ()))
        self.state.repos[self.state.key(repo_id)] = repo
        return repo

    def set_latency(self, seconds: float) -> None:
        self.state.latency_s = seconds

    def fail(self, pattern: str, status: int = 503, count: int = 1, method: str | None = None) -> Fault:
        fault = Fault(pattern, status, count, method)
        with self.state.lock:
            self.state.faults.append(fault)
        return fault

    def cut(self, pattern: str, after: int, count: int = 1, stall_s: float = 0.0) -> Cut:
        c = Cut(pattern, after, count, stall_s)
        with self.state.lock:
            self.state.cuts.append(c)
        return c

    def reset_log(self) -> None:
        with self.state.lock:
            self.state.log.clear()
            self.state.connections.clear()

    def connections(self) -> dict[str, int]:
        """TCP connections accepted per host ("hub", "cdn") since the last reset_log()."""
        with self.state.lock:
            return dict(self.state.connections)

    def requests(self, where: Callable[[LogEntry], bool] | None = None) -> list[LogEntry]:
        with self.state.lock:
            return [e for e in self.state.log if where is None or where(e)]

    def body_bytes(self, where: Callable[[LogEntry], bool] | None = None) -> int:
        return sum(e.body_bytes for e in self.requests(where))


def main(argv: list[str] | None = None) -> int:
    """Serve repos in this process until killed: `--repo org/name=DIR ... [--cdn]`; prints the URL."""
    import argparse
    import sys

    parser = argparse.ArgumentParser(description="hub stand-in")
    parser.add_argument("--repo", action="append", default=[], metavar="ORG/NAME=DIR")
    parser.add_argument("--cdn", action="store_true")
    parser.add_argument("--rtt", type=float, default=0.0)
    args = parser.parse_args(argv)
    hub = HubStandin(cdn=args.cdn).start()
    for spec in args.repo:
        repo_id, _, root = spec.partition("=")
        hub.add_repo(repo_id, Path(root))
    hub.set_latency(args.rtt)
    sys.stdout.write(hub.url + "\n")
    sys.stdout.flush()
    threading.Event().wait()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
