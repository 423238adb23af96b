"""Does serving this checkpoint need its own Python (`--trust-remote-code`), and may it run? (pure)

The rule follows what vLLM 0.32 does with a checkpoint's `auto_map` (vllm/transformers_utils/
config.py, model_executor/models/registry.py, tokenizers/hf.py), read as source, never imported:
- the MODEL class: an architecture vLLM (or vllm-ascend) registers is built from vLLM's own code;
  otherwise vLLM falls back to the Transformers backend, which takes the class from the installed
  transformers if it defines it, else from `auto_map["AutoModel..."]` — remote code;
- the CONFIG class: a `model_type` the installed transformers or vLLM's own config registry knows
  is read without the checkpoint's code; otherwise `auto_map["AutoConfig"]` is needed;
- the TOKENIZER: `tokenizer_config.json` `auto_map["AutoTokenizer"]` with a `tokenizer_class` that
  transformers does not define.

The analysis reads the files named above as text; it never imports the checkpoint's code (nor
transformers, nor vLLM). The opt-in is the job's `trust_remote_code` (CLI `--trust-remote-code`,
repo config `remote_code.allow`). The flag is passed only when the code is needed and allowed, so a
checkpoint vLLM serves natively is served without it, and the e2e YAML / tutorial carry it only then.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runners.analysis.model import Problem, Support

#: The opt-in, as a user gives it (quoted in the blocking message).
HOW_TO_ALLOW = (
    "allow it explicitly: `adapt-bot run|gate ... --trust-remote-code` on the command line, or "
    "`remote_code: {allow: true}` in the repository's .github/adapt-bot.yml for GitHub jobs"
)


@dataclass(frozen=True)
class Need:
    #: True / False, or None when no vLLM registry was found to tell.
    required: bool | None
    #: Which parts need the code: "model", "config", "tokenizer".
    parts: tuple[str, ...]
    reason: str


def _text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")[:4_000_000]
    except OSError:
        return ""


def transformers_knows_model_type(transformers_dir: str | None, model_type: str) -> bool | None:
    """`("<model_type>", "<X>Config")` in the installed transformers' auto mappings (text search)."""
    if not transformers_dir:
        return None
    auto = Path(transformers_dir) / "models" / "auto"
    text = _text(auto / "configuration_auto.py") + _text(auto / "auto_mappings.py")
    if not text:
        return None
    return f'("{model_type}",' in text


def vllm_knows_model_type(vllm_registry_source: str | None, model_type: str) -> bool | None:
    """vLLM's own config classes (`_CONFIG_REGISTRY` in vllm/transformers_utils/config.py)."""
    if not vllm_registry_source:
        return None
    # .../vllm/model_executor/models/registry.py -> .../vllm/transformers_utils/config.py
    cfg_py = Path(vllm_registry_source).parents[2] / "transformers_utils" / "config.py"
    text = _text(cfg_py)
    if not text:
        return None
    start = text.find("_CONFIG_REGISTRY")
    block = text[start : start + 20_000] if start >= 0 else ""
    return f"    {model_type}=" in block or f'"{model_type}":' in block


def transformers_knows_tokenizer(transformers_dir: str | None, tokenizer_class: str) -> bool | None:
    if not transformers_dir:
        return None
    text = _text(Path(transformers_dir) / "models" / "auto" / "tokenization_auto.py")
    if not text:
        return None
    base = tokenizer_class.removesuffix("Fast")
    return any(f'"{name}"' in text for name in (tokenizer_class, base, base + "Fast")) or base in (
        "PreTrainedTokenizer",
        "TokenizersBackend",
    )


def _auto_keys(auto_map: Any, prefix: str) -> list[str]:
    return (
        [k for k in auto_map if isinstance(k, str) and k.startswith(prefix)]
        if isinstance(auto_map, dict)
        else []
    )


def assess(
    *,
    arch: str | None,
    model_type: str | None,
    auto_map: Mapping[str, Any] | None,
    tokenizer_config: Any,
    support: Support,
    transformers_defines_arch: bool | None,
    transformers_dir: str | None,
) -> Need:
    """Which parts of serving need the checkpoint's code (see the module docstring)."""
    tok_map = tokenizer_config.get("auto_map") if isinstance(tokenizer_config, dict) else None
    if not auto_map and not tok_map:
        return Need(False, (), "no auto_map: the checkpoint ships no code vLLM would run")
    parts: list[str] = []
    unknown: list[str] = []
    native: list[str] = []
    if _auto_keys(auto_map, "AutoModel"):
        if support.vllm_ascend.verdict == "registered" or support.vllm.verdict == "registered":
            native.append(f"vLLM builds {arch} from its own code ({support.reason})")
        elif support.vllm.verdict == "unknown":
            unknown.append("model (no vLLM registry found to tell whether the architecture is native)")
        elif transformers_defines_arch:
            native.append(f"the installed transformers defines {arch} (Transformers backend, no remote code)")
        else:
            parts.append("model")
    if _auto_keys(auto_map, "AutoConfig") and model_type:
        tf = transformers_knows_model_type(transformers_dir, model_type)
        vl = vllm_knows_model_type(support.vllm.source, model_type)
        if tf or vl:
            native.append(f"model_type {model_type!r} is known to {'transformers' if tf else 'vLLM'}")
        elif tf is None and vl is None:
            unknown.append(f"config (cannot tell whether model_type {model_type!r} is known)")
        else:
            parts.append("config")
    if _auto_keys(tok_map, "AutoTokenizer"):
        cls = tokenizer_config.get("tokenizer_class") if isinstance(tokenizer_config, dict) else None
        known = transformers_knows_tokenizer(transformers_dir, cls) if isinstance(cls, str) and cls else False
        if known:
            native.append(f"transformers defines the tokenizer class {cls}")
        elif known is None:
            unknown.append("tokenizer (no transformers install found)")
        else:
            parts.append("tokenizer")
    if parts:
        what = {
            "model": f"the model class ({arch} is registered neither in vLLM nor in vllm-ascend, and "
            "transformers does not define it)",
            "config": f"the config class (model_type {model_type!r} is known to neither transformers "
            "nor vLLM)",
            "tokenizer": "the tokenizer class (tokenizer_config.json auto_map; transformers does not "
            "define it)",
        }
        return Need(
            True,
            tuple(parts),
            "serving runs the checkpoint's own Python for " + "; ".join(what[p] for p in parts),
        )
    if unknown:
        return Need(None, (), "auto_map present; cannot tell whether it is needed: " + "; ".join(unknown))
    return Need(False, (), "auto_map present but not needed: " + "; ".join(native))


@dataclass(frozen=True)
class Decision:
    #: Pass `--trust-remote-code` to this serve.
    flag: bool
    #: The blocking `remote-code-not-allowed` problem, when the code is needed and not allowed.
    problem: Problem | None


def decide(analysis: Mapping[str, Any], allowed: bool) -> Decision:
    """The serve flag and the refusal for one job, from the analysis data and the opt-in."""
    present = bool(analysis.get("remote_code"))
    required = analysis.get("remote_code_required")
    reason = str(analysis.get("remote_code_reason") or "")
    if required is True and not allowed:
        files = ", ".join(analysis.get("remote_code_files") or []) or "its *.py files"
        return Decision(
            False,
            Problem.of(
                "remote-code-not-allowed",
                f"{reason} ({files}); remote code runs only on an explicit opt-in, so no server was "
                f"started — {HOW_TO_ALLOW}",
            ),
        )
    return Decision(flag=allowed and present and required is not False, problem=None)


def config_auto_map(model_dir: Path) -> bool:
    """Whether config.json or tokenizer_config.json has an auto_map (when no analysis is stored)."""
    for name in ("config.json", "tokenizer_config.json"):
        try:
            doc = json.loads((model_dir / name).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(doc, dict) and isinstance(doc.get("auto_map"), dict) and doc["auto_map"]:
            return True
    return False


def serve_args(
    remote_code_args: Sequence[str], allowed: bool, analysis: Mapping[str, Any] | None, model_dir: Path
) -> list[str]:
    """The profile's remote-code flags for this serve, or none (see `decide`)."""
    if not allowed:
        return []
    data: Mapping[str, Any] = (
        analysis
        if analysis is not None
        else {"remote_code": config_auto_map(model_dir), "remote_code_required": None}
    )
    return list(remote_code_args) if decide(data, allowed).flag else []
