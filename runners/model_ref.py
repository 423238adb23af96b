"""Model references from untrusted text: hub ids, hub URLs and `/models/<name>` paths.

Parsing and validation are pure; `local_checkout` / `resolve` are the single place a reference
becomes a path: they refuse anything that escapes the models root (symlinks included), and they
treat the org as part of a hub model's identity (a flat `<root>/<name>` is used for `org/name`
only when its provenance says it holds `org/name`).

The hub is part of the identity too: Hugging Face is the default; a modelscope.cn URL or an
explicit `modelscope:<org>/<name>` names the ModelScope repo (`hf:` / `huggingface:` say Hugging
Face explicitly). `ModelRef.display` keeps the prefix, so the job's `model` option round-trips.
ModelScope's `Qwen/Qwen3-8B` is not taken to be Hugging Face's: a local checkout serves a
reference only when its provenance names that hub (see provenance_matches).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

MAX_REF_LEN = 200
# Hugging Face / ModelScope repo name rules: letters, digits, '-', '_', '.', at most 96 characters,
# not starting or ending with '-' or '.', no '--' or '..'.
_PART = r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9])?"
HUB_ID_RE = re.compile(rf"^(?P<org>{_PART})/(?P<name>{_PART})$")
#: the hub sites whose model URLs name a repo (modelscope.ai: ModelScope's international site, the
#: same repo ids; which site is read is the operator's MODELSCOPE_ENDPOINT / _DOMAIN)
_HOSTS = r"huggingface\.co|hf\.co|modelscope\.cn|modelscope\.ai"
_URL_RE = re.compile(
    rf"^https?://(?:www\.)?(?P<host>{_HOSTS})/(?:models/)?"
    rf"(?P<org>{_PART})/(?P<name>{_PART})"
    r"(?:/(?:tree|blob|resolve|file/view)/[A-Za-z0-9._/-]*|/(?:summary|files))?/?$"
)
#: `modelscope:org/name`, `hf:org/name`: the hub named explicitly
_SOURCE_PREFIX = re.compile(r"^(?P<src>modelscope|huggingface|hf):(?=[A-Za-z0-9])", re.I)
Source = Literal["huggingface", "modelscope"]
HUGGINGFACE: Source = "huggingface"
MODELSCOPE: Source = "modelscope"
#: how comments and pages name each hub
HUB_NAMES: dict[str, str] = {HUGGINGFACE: "Hugging Face", MODELSCOPE: "ModelScope"}


def hub_display(hub_id: str, source: str) -> str:
    """A hub repo as the bot names it: ModelScope's keep `modelscope:`, so they are never taken
    for Hugging Face's repo of the same org/name (parse_model_ref reads it back)."""
    return f"modelscope:{hub_id}" if source == MODELSCOPE else hub_id


_PATH_RE = re.compile(rf"^/models/(?P<name>{_PART})/?$")
_FORBIDDEN = re.compile(r"\.\.|--|[;&|`$<>\\\"'*?!(){}\[\]\s]")
# Things that look like org/name but are not models.
_NOT_MODELS = re.compile(r"^(vllm-project|huggingface|pytorch|ascend|github|docs|issues|pull)/", re.I)


class ModelRefError(ValueError):
    """The text does not name a usable model; the message says what to write instead."""


@dataclass(frozen=True)
class ModelRef:
    kind: Literal["hub", "path"]
    #: `org/name` for hub references, None for /models paths
    hub_id: str | None
    #: directory name under the models root
    name: str
    #: the hub a `hub` reference is read from (always HUGGINGFACE for /models paths)
    source: Source = HUGGINGFACE

    @property
    def display(self) -> str:
        """What the job stores as its `model`: parse_model_ref(display) gives this ref back."""
        return hub_display(self.hub_id, self.source) if self.hub_id else f"/models/{self.name}"

    @property
    def slug(self) -> str:
        """Lower-case name safe for branch and file names."""
        return re.sub(r"[^a-z0-9.-]+", "-", self.name.lower()).strip("-.") or "model"


USAGE = (
    "Name the model on its own line as `model: <org>/<name>` (a Hugging Face id, e.g. "
    "`model: Qwen/Qwen3-8B`; `model: modelscope:<org>/<name>` for ModelScope), a hub URL, or a "
    "path `/models/<name>`."
)


def parse_model_ref(text: str) -> ModelRef:
    """Parse one reference; raise ModelRefError with an actionable message."""
    s = text.strip().strip("`").strip()
    if not s:
        raise ModelRefError(f"No model given. {USAGE}")
    if len(s) > MAX_REF_LEN:
        raise ModelRefError(f"Model reference is longer than {MAX_REF_LEN} characters. {USAGE}")
    shown = s[:80]
    if m := _URL_RE.match(s):
        source: Source = MODELSCOPE if "modelscope" in m.group("host") else HUGGINGFACE
        return _hub(m.group("org"), m.group("name"), shown, source)
    if p := _SOURCE_PREFIX.match(s):
        source = MODELSCOPE if p.group("src").lower() == "modelscope" else HUGGINGFACE
        rest = s[p.end() :]
        if _FORBIDDEN.search(rest) or not (m := HUB_ID_RE.match(rest)):
            form = f"{p.group('src')}:<org>/<name>"
            raise ModelRefError(f"`{shown}` is not a hub id of the form {form}. {USAGE}")
        return _hub(m.group("org"), m.group("name"), shown, source)
    if s.startswith(("http://", "https://")):
        raise ModelRefError(
            f"`{shown}` is not a huggingface.co, modelscope.cn or modelscope.ai model URL. {USAGE}"
        )
    if _FORBIDDEN.search(s):
        raise ModelRefError(
            f"`{shown}` contains characters a model id cannot have ('..', '--', spaces or shell "
            f"metacharacters). {USAGE}"
        )
    if m := _PATH_RE.match(s):
        return ModelRef("path", None, m.group("name"))
    if s.startswith("/"):
        raise ModelRefError(f"`{shown}` is not a path of the form /models/<name>. {USAGE}")
    if m := HUB_ID_RE.match(s):
        return _hub(m.group("org"), m.group("name"), shown)
    raise ModelRefError(f"`{shown}` is not a model id of the form <org>/<name>. {USAGE}")


def _hub(org: str, name: str, shown: str, source: Source = HUGGINGFACE) -> ModelRef:
    if ".." in org or ".." in name or "--" in org or "--" in name:
        raise ModelRefError(f"`{shown}` contains '..' or '--'. {USAGE}")
    return ModelRef("hub", f"{org}/{name}", name, source)


_FIELD_RE = re.compile(
    r"^\s*(?:[-*]\s*)?\**(?:model(?:[ _-]?(?:id|name|path))?)\**\s*[:：]\s*(?P<v>\S.*?)\s*$", re.I
)
_URL_IN_TEXT = re.compile(rf"https?://(?:www\.)?(?:{_HOSTS})/[^\s)>\]`'\"]+")
_PATH_IN_TEXT = re.compile(r"(?<![\w/])/models/[^\s)>\]`'\"]+")
_PREFIXED_IN_TEXT = re.compile(rf"(?<![\w/.:-])(?:modelscope|huggingface|hf):{_PART}/{_PART}(?![\w/])", re.I)
_BACKTICKED = re.compile(r"`([^`\n]{3,200})`")
_BARE = re.compile(rf"(?<![\w/.:-])({_PART}/{_PART})(?![\w/])")


def find_model_ref(title: str, body: str | None) -> ModelRef:
    """Find the model an issue asks for.

    Order of trust: an explicit `model:` line, a hub URL, a `/models/` path, a hub-prefixed id
    (`modelscope:org/name`), a backticked id, then a bare `org/name` in the title or body (never
    the `org/name` of a prefixed one: that would silently change its hub). An explicit but
    invalid value is an error (we do not fall back to guessing when the author said something
    we refuse).
    """
    body = body or ""
    lines = [ln for ln in outside_code_and_quotes(body)]
    for ln in lines:
        if m := _FIELD_RE.match(ln):
            return parse_model_ref(m.group("v"))
    text = "\n".join([title, *lines])
    for pattern in (_URL_IN_TEXT, _PATH_IN_TEXT, _PREFIXED_IN_TEXT):
        if m := pattern.search(text):
            return parse_model_ref(m.group(0).rstrip(".,;:"))
    for m in _BACKTICKED.finditer(text):
        try:
            ref = parse_model_ref(m.group(1))
        except ModelRefError:
            continue
        if ref.hub_id and not _NOT_MODELS.match(ref.hub_id):
            return ref
    for source in (title, "\n".join(lines)):
        for m in _BARE.finditer(source):
            cand = m.group(1).rstrip(".")
            if _NOT_MODELS.match(cand) or not re.search(r"[A-Za-z]{2}", cand.split("/")[1]):
                continue
            try:
                return parse_model_ref(cand)
            except ModelRefError:
                continue
    raise ModelRefError(f"I could not find which model to adapt in this issue. {USAGE}")


def outside_code_and_quotes(body: str) -> list[str]:
    out: list[str] = []
    fence: str | None = None
    for ln in body.splitlines():
        stripped = ln.lstrip()
        if fence is None and (stripped.startswith("```") or stripped.startswith("~~~")):
            fence = stripped[:3]
            continue
        if fence is not None:
            if stripped.startswith(fence):
                fence = None
            continue
        if stripped.startswith(">"):
            continue
        out.append(ln)
    return out


#: A file in a flat `<root>/<name>` checkout that says which hub repo (and revision) it holds:
#: JSON `{"repo_id": "Qwen/Qwen3-8B", "revision": "<40-hex sha>", "source": "huggingface"}`
#: (revision optional; source "huggingface" (the default when absent), "modelscope", or a list of
#: both when the operator knows the two hubs' repos hold the same files).
PROVENANCE_FILE = ".adapt-bot-source"
#: What `hf download --local-dir` leaves next to each file: `<commit sha>\n<etag>\n<time>`.
_HF_LOCAL_META = Path(".cache") / "huggingface" / "download" / "config.json.metadata"
_SHA_RE = re.compile(r"^[0-9a-f]{40}$")


@dataclass(frozen=True)
class Provenance:
    """Why a local directory is taken to hold a hub repo."""

    #: "layout" (`<root>/<org>/<name>`), "marker" (PROVENANCE_FILE) or "revision" (the hub's own
    #: download metadata names the pinned commit)
    basis: str
    repo_id: str | None = None
    revision: str | None = None
    #: the hubs this checkout stands for
    sources: tuple[str, ...] = (HUGGINGFACE,)


def read_provenance(directory: Path) -> Provenance | None:
    """The PROVENANCE_FILE of a checkout, or None when absent or unusable."""
    import json

    try:
        raw = (directory / PROVENANCE_FILE).read_bytes()[:4096]
        doc = json.loads(raw)
    except (OSError, ValueError):
        return None
    if not isinstance(doc, dict) or not isinstance(doc.get("repo_id"), str):
        return None
    rev = doc.get("revision")
    raw_src = doc.get("source", HUGGINGFACE)
    listed = [raw_src] if isinstance(raw_src, str) else raw_src if isinstance(raw_src, list) else []
    sources = tuple(str(x).lower() for x in listed if str(x).lower() in (HUGGINGFACE, MODELSCOPE))
    if not sources:
        return None  # a source we do not know: the marker cannot vouch for either hub
    return Provenance(
        "marker", doc["repo_id"], rev if isinstance(rev, str) and _SHA_RE.match(rev) else None, sources
    )


def write_provenance(
    directory: Path, repo_id: str, revision: str | None = None, source: str | list[str] = HUGGINGFACE
) -> Path:
    """Mark a flat checkout as holding `repo_id` from `source` (operators, and tests)."""
    import json

    path = directory / PROVENANCE_FILE
    doc = {"repo_id": repo_id, "revision": revision, "source": source}
    path.write_text(json.dumps(doc) + "\n", encoding="utf-8")
    return path


def _hf_local_dir_revision(directory: Path) -> str | None:
    try:
        first = (directory / _HF_LOCAL_META).read_text(encoding="utf-8").split("\n", 1)[0].strip()
    except (OSError, UnicodeDecodeError):
        return None
    return first if _SHA_RE.match(first) else None


def provenance_matches(directory: Path, ref: ModelRef, revision: str | None = None) -> Provenance | None:
    """Does the flat `<root>/<name>` directory hold `ref`'s repo? The org and the hub are part of
    the identity.

    A marker must name the same `org/name` (hub ids compare case-insensitively, as the hub does),
    list `ref.source` among its sources and, when both a pinned revision and a marked one are
    known, the same commit. Without a marker, Hugging Face's own `--local-dir` metadata naming the
    pinned commit is accepted for a Hugging Face reference: a 40-hex commit of that repo cannot
    belong to another one by accident. Anything else is not a match.
    """
    if ref.hub_id is None:
        return Provenance("layout")
    mark = read_provenance(directory)
    if mark is not None:
        if mark.repo_id is None or mark.repo_id.casefold() != ref.hub_id.casefold():
            return None
        if ref.source not in mark.sources:
            return None
        if revision and mark.revision and mark.revision != revision:
            return None
        return mark
    if ref.source == HUGGINGFACE and revision and _hf_local_dir_revision(directory) == revision:
        return Provenance("revision", ref.hub_id, revision)
    return None


@dataclass(frozen=True)
class LocalCheckout:
    path: Path
    provenance: Provenance


def _inside(root: Path, candidate: Path, ref: ModelRef) -> Path:
    real = candidate.resolve()
    if real != root and root not in real.parents:
        raise ModelRefError(f"{ref.display} resolves outside the models root {root}; refusing to read it.")
    return real


def local_checkout(ref: ModelRef, models_root: Path, revision: str | None = None) -> LocalCheckout | None:
    """The local directory that holds `ref`, or None (then the runner downloads it).

    - `/models/<name>`: `<root>/<name>` (the author named the directory itself).
    - `org/name`: `<root>/<org>/<name>` (the layout carries the org), else the flat `<root>/<name>`
      only when its provenance names `org/name` (see provenance_matches). So
      `attacker-org/Qwen3-8B` never resolves to a `/models/Qwen3-8B` that holds `Qwen/Qwen3-8B`.
      The layout alone stands for Hugging Face (what it always meant); a ModelScope reference
      uses either directory only when its marker lists "modelscope", and a marker in the nested
      directory that does not list the reference's hub rules it out for that hub.
    Refuses (ModelRefError) any candidate that leads out of the root through a symlink.
    """
    root = models_root.resolve()
    if ref.hub_id is None:
        flat = root / ref.name
        if not flat.exists():
            return None
        return LocalCheckout(_inside(root, flat, ref), Provenance("layout"))
    nested = root / ref.hub_id
    if nested.exists():
        real = _inside(root, nested, ref)
        mark = read_provenance(real) if real.is_dir() else None
        if mark is not None and mark.repo_id is not None and mark.repo_id.casefold() == ref.hub_id.casefold():
            if ref.source in mark.sources:
                return LocalCheckout(real, mark)
        elif ref.source == HUGGINGFACE:
            return LocalCheckout(real, Provenance("layout", ref.hub_id, None))
    flat = root / ref.name
    if flat.exists():
        real = _inside(root, flat, ref)
        if real.is_dir() and (prov := provenance_matches(real, ref, revision)) is not None:
            return LocalCheckout(real, prov)
    return None


def flat_mismatch(ref: ModelRef, models_root: Path) -> str | None:
    """Why `<root>/<name>` was not used for `ref` (for messages), or None when it does not exist."""
    if ref.hub_id is None:
        return None
    flat = models_root / ref.name
    if not flat.is_dir():
        return None
    mark = read_provenance(flat)
    held = f"it holds {mark.repo_id}" if mark and mark.repo_id else f"it has no {PROVENANCE_FILE} marker"
    if (
        mark
        and mark.repo_id
        and mark.repo_id.casefold() == ref.hub_id.casefold()
        and ref.source not in mark.sources
    ):
        held = f"its {PROVENANCE_FILE} marker says it came from {', '.join(mark.sources)}, not {ref.source}"
    return f"{flat} exists but is not used for {ref.display}: {held}"


def resolve(ref: ModelRef, models_root: Path, revision: str | None = None) -> Path:
    """Map a reference to a directory inside `models_root`; refuse escapes via symlinks.

    Returns the matching local checkout (see local_checkout); when there is none, the path it
    would have (`<root>/<name>` for a path reference, `<root>/<org>/<name>` for a hub id), which
    does not exist — callers check `is_dir()` and download or say it is not downloaded.
    """
    found = local_checkout(ref, models_root, revision)
    if found is not None:
        return found.path
    root = models_root.resolve()
    return root / (ref.hub_id or ref.name)
