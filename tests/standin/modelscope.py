"""A local ModelScope hub: a real threaded HTTP server serving model repos from directories.

What the `modelscope` SDK (modelscope_hub 0.5: HubApi, its legacy `/api/v1` client and its
DownloadManager) talks to when `MODELSCOPE_ENDPOINT` (or the deprecated `MODELSCOPE_DOMAIN`)
points here, in the real service's shapes:

- `GET /api/v1/models/{org}/{name}/repo/files?Revision=&Recursive=&Root=`: `{"Code": 200, "Data":
  {"Files": [...]}}`, each entry `Name`, `Path`, `Type` (blob|tree), `Size`, `Sha256`, `IsLFS`,
  `Revision` (the commit that last changed the file) and `CommittedDate` (epoch seconds).
- `GET /api/v1/models/{org}/{name}/revisions`: `RevisionMap` with the `master` branch.
- `GET /api/v1/models/{org}/{name}/repo?Revision=&FilePath=`: the file, `Range: bytes=a-b|a-`
  answered 206 with `Content-Range`; with a CDN host, LFS files answer 302 to it (the client
  must not carry the token there: neither `Authorization` nor the `m_session_id` cookie).
- `GET /api/v1/repos/internalAccelerationInfo` (the SDK's region probe): 404, as off Aliyun.
- Errors with ModelScope's JSON body (`Code`, `Message`, `RequestId`): an invalid token → 401;
  a private repo → 401 without a token, 404 with one that is not a member; a gated repo whose
  terms the token's account has not accepted → 403; unknown repo / revision / file → 404;
  injected 5xx. Token: `Authorization: Bearer` or the `m_session_id` cookie (the SDK sends both).

The request log, faults (HubStandin.fail), connection cuts (HubStandin.cut) and latency are the
HF stand-in's (tests.standin.hub): this server reuses its state, file serving and log. Each repo
is one commit (`Repo.sha`) except README.md, which is dated to an older one (`older_sha`): the
pinned revision is the newest commit the listing shows. Sha256 is the real digest for files up
to HASH_LIMIT bytes (the SDK verifies it), and absent above (sparse test files of terabytes).
"""

from __future__ import annotations

import hashlib
import json
import re
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

from tests.standin.hub import LFS_SUFFIXES, HubStandin, LogEntry, Repo, _Handler, _Server

HASH_LIMIT = 256 * 1024 * 1024
CDN_HOST = "127.0.0.2"
#: CommittedDate of a repo's newest commit, and of the older one README.md carries
NEWEST_DATE = 1_780_000_000
OLDER_DATE = 1_770_000_000
_REPO = r"(?P<repo>[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*)"
_FILES_RE = re.compile(rf"^/api/v1/models/{_REPO}/repo/files$")
_REVISIONS_RE = re.compile(rf"^/api/v1/models/{_REPO}/revisions$")
_FILE_RE = re.compile(rf"^/api/v1/models/{_REPO}/repo$")
_CDN_RE = re.compile(r"^/oss/(?P<repo_key>[^/]+)/(?P<rev>[0-9a-f]{40})/(?P<path>.+)$")
_HASHES: dict[tuple[str, int, int], str] = {}


def older_sha(repo: Repo) -> str:
    return hashlib.sha1(f"older:{repo.sha}".encode()).hexdigest()


def content_sha256(path: Path) -> str | None:
    """The file's real SHA-256 (cached per path, size and mtime), None past HASH_LIMIT."""
    st = path.stat()
    if st.st_size > HASH_LIMIT:
        return None
    key = (str(path), st.st_size, st.st_mtime_ns)
    if key not in _HASHES:
        h = hashlib.sha256()
        with open(path, "rb") as fh:
            while block := fh.read(1 << 20):
                h.update(block)
        _HASHES[key] = h.hexdigest()
    return _HASHES[key]


class _MsHandler(_Handler):
    server_version = "modelscope-standin/1"

    def _token(self) -> str | None:
        auth = self.headers.get("Authorization") or ""
        if auth.lower().startswith("bearer "):
            return auth[7:].strip() or None
        morsel = SimpleCookie(self.headers.get("Cookie") or "").get("m_session_id")
        return morsel.value if morsel is not None and morsel.value else None

    def _log(self, status: int, sent: int) -> None:
        cookie = "m_session_id" in (self.headers.get("Cookie") or "")
        self.state.record(
            LogEntry(
                host=self.host_kind,
                method=self.command,
                path=urlsplit(self.path).path,
                range=self.headers.get("Range"),
                status=status,
                body_bytes=sent,
                authorization=bool(self.headers.get("Authorization")) or cookie,
            )
        )

    def _error(self, status: int, code: str | None, message: str) -> None:
        body = {
            "Code": status,
            "Message": message,
            "RequestId": f"standin-{code or status}",
            "Success": False,
        }
        self._send(status, json.dumps(body).encode(), {"Content-Type": "application/json"})

    def _ok(self, data: Any) -> None:
        body = {"Code": 200, "Data": data, "Message": "success", "RequestId": "standin", "Success": True}
        self._send(200, json.dumps(body).encode(), {"Content-Type": "application/json"})

    def _repo_for(self, repo_id: str) -> Repo | None:
        repo = self.state.find(repo_id)
        token = self._token()
        if token is not None and token.startswith("invalid"):
            self._error(401, "bad-token", "the access token is invalid or expired")
            return None
        if repo is None or (repo.private and token not in repo.granted):
            if token is None and repo is not None:
                self._error(401, "login", "please log in: this model is private")
            else:
                self._error(404, "not-found", f"model {repo_id} does not exist")
            return None
        if repo.gated and token not in repo.granted:
            self._error(403, "gated", f"you have not been granted access to model {repo.repo_id}")
            return None
        return repo

    def _revision(self, repo: Repo, rev: str) -> bool:
        if rev in ("master", repo.sha):
            return True
        self._error(404, "revision", f"revision {rev} of {repo.repo_id} does not exist")
        return False

    def do_GET(self) -> None:
        if self.path.startswith("/_standin/"):
            self._control()
            return
        path = self._preamble()
        if path is None:
            return
        q = {k: v[0] for k, v in parse_qs(urlsplit(self.path).query).items()}
        if m := _FILES_RE.match(path):
            self._files(m.group("repo"), q.get("Revision", "master"), q.get("Root") or "")
        elif m := _REVISIONS_RE.match(path):
            repo = self._repo_for(m.group("repo"))
            if repo is not None:
                branch = {"Revision": "master", "CreatedAt": OLDER_DATE, "ShowName": "master"}
                self._ok({"RevisionMap": {"Branches": [branch], "Tags": []}})
        elif m := _FILE_RE.match(path):
            self._file(m.group("repo"), q.get("Revision", "master"), q.get("FilePath", ""))
        else:
            self._error(404, None, "Not Found")

    def _files(self, repo_id: str, rev: str, root: str) -> None:
        repo = self._repo_for(repo_id)
        if repo is None or not self._revision(repo, rev):
            return
        prefix = root.strip("/") + "/" if root.strip("/") else ""
        old = older_sha(repo)
        entries: list[dict[str, Any]] = []
        dirs: set[str] = set()
        for rel in repo.files():
            if not rel.startswith(prefix):
                continue
            parts = rel.split("/")
            dirs.update("/".join(parts[:i]) for i in range(1, len(parts)))
            p = repo.root / rel
            newest = rel != "README.md"
            entries.append(
                {
                    "Name": parts[-1],
                    "Path": rel,
                    "Type": "blob",
                    "Size": p.stat().st_size,
                    "Sha256": content_sha256(p),
                    "IsLFS": rel.endswith(LFS_SUFFIXES),
                    "Revision": repo.sha if newest else old,
                    "CommittedDate": NEWEST_DATE if newest else OLDER_DATE,
                    "CommitMessage": "upload" if newest else "readme",
                }
            )
        for d in sorted(dirs):
            if d.startswith(prefix.rstrip("/")):
                entries.append({"Name": d.rsplit("/", 1)[-1], "Path": d, "Type": "tree", "Size": 0})
        self._ok({"Files": entries})

    def _file(self, repo_id: str, rev: str, rel: str) -> None:
        repo = self._repo_for(repo_id)
        if repo is None or not self._revision(repo, rev):
            return
        path = repo.file(rel)
        if path is None:
            self._error(404, "file", f"file {rel} does not exist in {repo.repo_id}")
            return
        if rel.endswith(LFS_SUFFIXES) and self.state.cdn_url:
            location = f"{self.state.cdn_url}/oss/{quote(self.state.key(repo.repo_id), safe='')}/"
            location += f"{repo.sha}/{quote(rel)}?Signature=standin"
            self._send(302, b"", {"Location": location})
            return
        self._serve_file(path, {"ETag": f'"{content_sha256(path) or "big"}"'})


class _MsCdnHandler(_MsHandler):
    """The OSS host LFS files are redirected to; no auth (the signed URL is the credential)."""

    host_kind = "cdn"

    def do_GET(self) -> None:
        path = self._preamble()
        if path is None:
            return
        m = _CDN_RE.match(path)
        repo = self.state.repos.get(unquote(m.group("repo_key"))) if m else None
        file = repo.file(unquote(m.group("path"))) if m and repo and m.group("rev") == repo.sha else None
        if file is None:
            self._send(404, b"NoSuchKey")
            return
        self._serve_file(file, {})


class ModelScopeStandin(HubStandin):
    """`with ModelScopeStandin(cdn=True) as ms: ms.add_repo("Qwen/Qwen3-8B", dir)`; `ms.url` is
    the MODELSCOPE_ENDPOINT. add_repo / fail / cut / requests / set_latency as the HF stand-in."""

    def __init__(self, *, cdn: bool = False) -> None:
        super().__init__(cdn=False)
        # the same server and state, answering as ModelScope
        self._servers[0].RequestHandlerClass = type("Handler", (_MsHandler,), {"state": self.state})
        if cdn:
            # the OSS host on another loopback address: another host name, as in production, so
            # cookie scoping (by host, not port) is exercised for real
            handler = type("CdnHandler", (_MsCdnHandler,), {"state": self.state})
            self._servers.append(_Server((CDN_HOST, 0), handler))
            self.state.cdn_url = f"http://{CDN_HOST}:{self._servers[1].server_address[1]}"
