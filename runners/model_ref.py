"""Model references from untrusted text: hub ids, hub URLs and `/models/<name>` paths.

Pure: parsing and validation only; `resolve` is the single place a reference becomes a path,
and it refuses anything that escapes the models root (symlinks included).
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
_URL_RE = re.compile(
    rf"^https?://(?:www\.)?(?P<host>huggingface\.co|hf\.co|modelscope\.cn)/(?:models/)?"
    rf"(?P<org>{_PART})/(?P<name>{_PART})(?:/(?:tree|blob|resolve)/[A-Za-z0-9._/-]*)?/?$"
)
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

    @property
    def display(self) -> str:
        return self.hub_id or f"/models/{self.name}"

    @property
    def slug(self) -> str:
        """Lower-case name safe for branch and file names."""
        return re.sub(r"[^a-z0-9.-]+", "-", self.name.lower()).strip("-.") or "model"


USAGE = (
    "Name the model on its own line as `model: <org>/<name>` (a Hugging Face or ModelScope id, "
    "e.g. `model: Qwen/Qwen3-8B`), a hub URL, or a path `/models/<name>`."
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
        return _hub(m.group("org"), m.group("name"), shown)
    if s.startswith(("http://", "https://")):
        raise ModelRefError(f"`{shown}` is not a huggingface.co or modelscope.cn model URL. {USAGE}")
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


def _hub(org: str, name: str, shown: str) -> ModelRef:
    if ".." in org or ".." in name or "--" in org or "--" in name:
        raise ModelRefError(f"`{shown}` contains '..' or '--'. {USAGE}")
    return ModelRef("hub", f"{org}/{name}", name)


_FIELD_RE = re.compile(
    r"^\s*(?:[-*]\s*)?\**(?:model(?:[ _-]?(?:id|name|path))?)\**\s*[:：]\s*(?P<v>\S.*?)\s*$", re.I
)
_URL_IN_TEXT = re.compile(r"https?://(?:www\.)?(?:huggingface\.co|hf\.co|modelscope\.cn)/[^\s)>\]`'\"]+")
_PATH_IN_TEXT = re.compile(r"(?<![\w/])/models/[^\s)>\]`'\"]+")
_BACKTICKED = re.compile(r"`([^`\n]{3,200})`")
_BARE = re.compile(rf"(?<![\w/.-])({_PART}/{_PART})(?![\w/])")


def find_model_ref(title: str, body: str | None) -> ModelRef:
    """Find the model an issue asks for.

    Order of trust: an explicit `model:` line, a hub URL, a `/models/` path, a backticked id,
    then a bare `org/name` in the title or body. An explicit but invalid value is an error
    (we do not fall back to guessing when the author said something we refuse).
    """
    body = body or ""
    lines = [ln for ln in _outside_code_and_quotes(body)]
    for ln in lines:
        if m := _FIELD_RE.match(ln):
            return parse_model_ref(m.group("v"))
    text = "\n".join([title, *lines])
    for pattern in (_URL_IN_TEXT, _PATH_IN_TEXT):
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


def _outside_code_and_quotes(body: str) -> list[str]:
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


def resolve(ref: ModelRef, models_root: Path) -> Path:
    """Map a reference to a directory inside `models_root`; refuse escapes via symlinks.

    A hub id `org/name` resolves to `<root>/<name>` (the workflow's convention), or
    `<root>/<org>/<name>` when only that exists.
    """
    root = models_root.resolve()
    candidates = [root / ref.name]
    if ref.hub_id:
        candidates.append(root / ref.hub_id)
    chosen = next((c for c in candidates if c.exists()), candidates[0])
    real = chosen.resolve()
    if real != root and root not in real.parents:
        raise ModelRefError(f"{ref.display} resolves outside the models root {root}; refusing to read it.")
    return real
