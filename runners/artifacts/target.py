"""Read the target checkout (vllm-ascend) and register a new tutorial / CI entries in it.

Docs tooling drifted between branches (MkDocs on main, Sphinx/MyST on release branches), so the
flavor is detected from the files present, never assumed. Every edit is a line insertion located
with `yaml.compose` marks (or JSON positions): the rest of the file — comments, `!ENV` tags,
ordering, indentation — stays byte-for-byte as the maintainers wrote it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import yaml

Flavor = Literal["mkdocs", "sphinx"]

TUTORIAL_DIR = "docs/source/tutorials/models"
TUTORIAL_INDEX = f"{TUTORIAL_DIR}/index.md"
NIGHTLY_CONFIG = ".github/workflows/configs/nightly_config.yaml"
MODEL_LIST = ".github/workflows/misc/model_dataset_list.json"
E2E_CONFIG_DIR = "tests/e2e/models/configs"


class TargetRepoError(ValueError):
    """The checkout does not look like vllm-ascend where it matters; the message says what is missing."""


@dataclass(frozen=True)
class TargetRepo:
    root: Path
    flavor: Flavor
    #: repo-relative path of the file that registers tutorials (mkdocs.yml or the toctree index.md)
    nav_file: str
    #: existing tutorials use numbered sections (`## 1 Introduction`)
    numbered_sections: bool
    #: `{{ vllm_ascend_version }}` (MkDocs macros) or `|vllm_ascend_version|` (MyST substitution)
    version_macro: str


def _mkdocs_file(root: Path) -> Path | None:
    for name in ("mkdocs.yml", "mkdocs.yaml"):
        if (root / name).is_file():
            return root / name
    return None


def _has_toctree(text: str) -> bool:
    return re.search(r"^(:{3,}|`{3,})\{toctree\}", text, re.M) is not None


def detect(root: Path) -> TargetRepo:
    """Which docs system the checkout uses, from its files (main: MkDocs; release branches: Sphinx)."""
    root = root.resolve()
    if not (root / TUTORIAL_DIR).is_dir():
        raise TargetRepoError(
            f"{root} has no {TUTORIAL_DIR}/: not a vllm-ascend checkout (or a very old one)"
        )
    mk = _mkdocs_file(root)
    index = root / TUTORIAL_INDEX
    numbered = _numbered(root / TUTORIAL_DIR)
    if mk is not None and "tutorials/models/" in mk.read_text(encoding="utf-8"):
        return TargetRepo(root, "mkdocs", mk.name, numbered, "{{ vllm_ascend_version }}")
    if index.is_file() and _has_toctree(index.read_text(encoding="utf-8")):
        return TargetRepo(root, "sphinx", TUTORIAL_INDEX, numbered, "|vllm_ascend_version|")
    raise TargetRepoError(
        f"{root}: found neither a mkdocs.yml whose nav lists tutorials/models/ nor a toctree in "
        f"{TUTORIAL_INDEX}; cannot register the tutorial"
    )


#: how many existing tutorial pages `detect_from` reads to decide the section style (API calls)
NUMBERED_SAMPLE = 12


def detect_from(
    read: Callable[[str], str | None],
    listdir: Callable[[str], list[str] | None],
    label: str,
) -> TargetRepo:
    """`detect` on files read through callables: the PR's base branch through the GitHub contents
    API at delivery time (bot.delivery), so the docs form follows the branch the PR merges into,
    not the runner's checkout. `read(path)` is a file's text or None; `listdir(dir)` its file
    names or None. `root` of the result is `Path(label)` (nothing is read from it)."""
    names = listdir(TUTORIAL_DIR)
    if names is None:
        raise TargetRepoError(f"{label} has no {TUTORIAL_DIR}/: not a vllm-ascend branch (or a very old one)")
    pages = sorted(n for n in names if n.endswith(".md") and n != "index.md")
    numbered = total = 0
    for name in pages[-NUMBERED_SAMPLE:]:
        text = read(f"{TUTORIAL_DIR}/{name}") or ""
        if re.search(r"^## (?:\d+\s+)?Introduction\s*$", text, re.M):
            total += 1
            numbered += bool(re.search(r"^## 1\.? Introduction\s*$", text, re.M))
    is_numbered = total == 0 or numbered * 2 >= total
    for name in ("mkdocs.yml", "mkdocs.yaml"):
        mk = read(name)
        if mk is not None:
            if "tutorials/models/" in mk:
                return TargetRepo(Path(label), "mkdocs", name, is_numbered, "{{ vllm_ascend_version }}")
            break
    index = read(TUTORIAL_INDEX)
    if index is not None and _has_toctree(index):
        return TargetRepo(Path(label), "sphinx", TUTORIAL_INDEX, is_numbered, "|vllm_ascend_version|")
    raise TargetRepoError(
        f"{label}: found neither a mkdocs.yml whose nav lists tutorials/models/ nor a toctree in "
        f"{TUTORIAL_INDEX}; cannot register the tutorial"
    )


def _numbered(tutorials: Path) -> bool:
    """Most recent template: `## 1 Introduction`. Decide by majority of the existing pages."""
    numbered = total = 0
    for page in sorted(tutorials.glob("*.md")):
        if page.name == "index.md":
            continue
        text = page.read_text(encoding="utf-8", errors="replace")
        if re.search(r"^## (?:\d+\s+)?Introduction\s*$", text, re.M):
            total += 1
            numbered += bool(re.search(r"^## 1\.? Introduction\s*$", text, re.M))
    return total == 0 or numbered * 2 >= total


# ------------------------------------------------------------------------------------------ mkdocs


class _AnyTagLoader(yaml.SafeLoader):
    """Composes/loads mkdocs.yml, whose `!ENV` and `!!python/name:` tags SafeLoader refuses."""


def _ignore_tag(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> object:
    if isinstance(node, yaml.ScalarNode):
        return loader.construct_scalar(node)
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node)
    return None


_AnyTagLoader.add_multi_constructor("!", _ignore_tag)
_AnyTagLoader.add_multi_constructor("tag:yaml.org,2002:python/", _ignore_tag)


def load_mkdocs(text: str) -> dict:
    data = yaml.load(text, Loader=_AnyTagLoader)  # noqa: S506 - the loader is SafeLoader + tag passthrough
    return data if isinstance(data, dict) else {}


def _map_get(node: yaml.Node, key: str) -> yaml.Node | None:
    if not isinstance(node, yaml.MappingNode):
        return None
    for k, v in node.value:
        if isinstance(k, yaml.ScalarNode) and k.value == key:
            return v
    return None


def _find_model_tutorials(nav: yaml.Node) -> yaml.SequenceNode | None:
    """The sequence that lists tutorials/models/*.md (under Getting Started → Model Tutorials on main)."""
    best: yaml.SequenceNode | None = None
    stack: list[yaml.Node] = [nav]
    while stack:
        node = stack.pop()
        if isinstance(node, yaml.SequenceNode):
            if any(
                isinstance(item, yaml.ScalarNode) and item.value.startswith("tutorials/models/")
                for item in node.value
            ):
                best = node
            stack.extend(node.value)
        elif isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                if (
                    isinstance(k, yaml.ScalarNode)
                    and k.value == "Model Tutorials"
                    and isinstance(v, yaml.SequenceNode)
                ):
                    return v
                stack.append(v)
    return best


def _entry_value(item: yaml.Node) -> str | None:
    if isinstance(item, yaml.ScalarNode):
        return item.value
    if isinstance(item, yaml.MappingNode) and len(item.value) == 1:
        v = item.value[0][1]
        return v.value if isinstance(v, yaml.ScalarNode) else None
    return None


def register_mkdocs(text: str, tutorial: str) -> str:
    """Add `- tutorials/models/<Name>.md` at the end of the Model Tutorials nav list."""
    entry = f"tutorials/models/{tutorial}"
    root = yaml.compose(text, Loader=_AnyTagLoader)
    nav = _map_get(root, "nav") if root is not None else None
    if nav is None:
        raise TargetRepoError("mkdocs.yml has no `nav:`; cannot register the tutorial")
    seq = _find_model_tutorials(nav)
    if seq is None or not seq.value:
        raise TargetRepoError("mkdocs.yml nav has no Model Tutorials list (tutorials/models/...)")
    if any(_entry_value(item) == entry for item in seq.value):
        return text
    last = seq.value[-1]
    lines = text.splitlines(keepends=True)
    dash_line = lines[last.start_mark.line]
    indent = re.match(r"\s*", dash_line).group(0)  # type: ignore[union-attr]
    end_line = last.end_mark.line if last.end_mark.column > 0 else last.end_mark.line - 1
    insert_at = end_line + 1
    newline = "\r\n" if dash_line.endswith("\r\n") else "\n"
    if insert_at > 0 and not lines[insert_at - 1].endswith(("\n", "\r")):
        lines[insert_at - 1] += newline
    lines.insert(insert_at, f"{indent}- {entry}{newline}")
    out = "".join(lines)
    check = load_mkdocs(out)
    if entry not in _flatten(check.get("nav")):
        raise TargetRepoError("mkdocs.yml edit did not produce the nav entry; file left unchanged")
    return out


def _flatten(node: object) -> list[str]:
    if isinstance(node, str):
        return [node]
    if isinstance(node, list):
        return [x for item in node for x in _flatten(item)]
    if isinstance(node, dict):
        return [x for v in node.values() for x in _flatten(v)]
    return []


def mkdocs_nav_entries(text: str) -> list[str]:
    return _flatten(load_mkdocs(text).get("nav"))


# ------------------------------------------------------------------------------------------ sphinx

_TOCTREE = re.compile(r"^(?P<fence>:{3,}|`{3,})\{toctree\}[^\n]*\n(?P<body>.*?)^(?P=fence)\s*$", re.M | re.S)


def toctree_entries(text: str) -> list[str]:
    m = _TOCTREE.search(text)
    if not m:
        return []
    return [
        ln.strip() for ln in m.group("body").splitlines() if ln.strip() and not ln.strip().startswith(":")
    ]


def register_toctree(text: str, tutorial: str) -> str:
    """Append `<Name>.md` to the toctree in tutorials/models/index.md (suffix style of the file)."""
    m = _TOCTREE.search(text)
    if not m:
        raise TargetRepoError(f"{TUTORIAL_INDEX} has no {{toctree}} block; cannot register the tutorial")
    entries = toctree_entries(text)
    stem = tutorial[:-3] if tutorial.endswith(".md") else tutorial
    if stem in entries or f"{stem}.md" in entries:
        return text
    with_suffix = sum(e.endswith(".md") for e in entries) * 2 >= len(entries)
    line = f"{stem}.md" if with_suffix else stem
    body = m.group("body")
    if body and not body.endswith("\n"):
        body += "\n"
    new_body = f"{body}{line}\n"
    return text[: m.start("body")] + new_body + text[m.end("body") :]


# ---------------------------------------------------------------------------------------- CI lists


def register_nightly(text: str, stem: str, *, tp: int, hardware: str = "a2", section: str = "pr_only") -> str:
    """Add the config stem to a `<hw>.accuracy.<section>` group running on enough NPUs.

    The group chosen is the one whose runner (`linux-aarch64-a2b3-N`) has the fewest NPUs >= tp.
    """
    root = yaml.compose(text)
    acc = _map_get(_map_get(root, hardware) or yaml.MappingNode("", []), "accuracy") if root else None
    groups = _map_get(acc, section) if acc is not None else None
    if not isinstance(groups, yaml.SequenceNode):
        raise TargetRepoError(f"{NIGHTLY_CONFIG} has no {hardware}.accuracy.{section} list")
    data = yaml.safe_load(text)
    for g in data[hardware]["accuracy"][section] or []:
        if stem in (g.get("model_list") or []):
            return text
    best: tuple[int, yaml.SequenceNode] | None = None
    for gnode in groups.value:
        os_node, lst = _map_get(gnode, "os"), _map_get(gnode, "model_list")
        if (
            not isinstance(os_node, yaml.ScalarNode)
            or not isinstance(lst, yaml.SequenceNode)
            or not lst.value
        ):
            continue
        m = re.search(r"-(\d+)$", os_node.value)
        if m and int(m.group(1)) >= tp and (best is None or int(m.group(1)) < best[0]):
            best = (int(m.group(1)), lst)
    if best is None:
        raise TargetRepoError(
            f"{NIGHTLY_CONFIG}: no {hardware}.accuracy.{section} group runs on >= {tp} NPUs; add one by hand"
        )
    last = best[1].value[-1]
    lines = text.splitlines(keepends=True)
    indent = re.match(r"\s*", lines[last.start_mark.line]).group(0)  # type: ignore[union-attr]
    lines.insert(last.start_mark.line + 1, f"{indent}- {stem}\n")
    out = "".join(lines)
    yaml.safe_load(out)  # still valid
    return out


def register_model_list(text: str, model_id: str) -> str:
    """Add the hub id to `models` in model_dataset_list.json (CI pre-downloads what is listed)."""
    data = json.loads(text)
    models = data.get("models")
    if not isinstance(models, list) or not models:
        raise TargetRepoError(f"{MODEL_LIST} has no non-empty `models` list")
    if model_id in models:
        return text
    start = text.index('"models"')
    last = json.dumps(models[-1], ensure_ascii=False)
    pos = text.index(last, start) + len(last)
    line_start = text.rfind("\n", 0, pos) + 1
    indent = re.match(r"[ \t]*", text[line_start:]).group(0)  # type: ignore[union-attr]
    out = text[:pos] + ",\n" + indent + json.dumps(model_id, ensure_ascii=False) + text[pos:]
    if json.loads(out).get("models") != [*models, model_id]:
        raise TargetRepoError(f"{MODEL_LIST} edit did not round-trip; file left unchanged")
    return out
