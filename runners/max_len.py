"""The longest `--max-model-len` a checkpoint allows, derived the way vLLM derives it.

vLLM refuses to start when `--max-model-len` exceeds the length it derives from the config
(`_get_and_verify_max_len`, vLLM 0.32): the smallest of the text config's length keys
(max_position_embeddings, n_positions, max_seq_len, seq_length, model_max_length,
max_target_positions, max_sequence_length, max_seq_length, seq_len; `model_max_length` wins when
set; the tokenizer_config's `model_max_length` only for pooling models), then multiplied by the rope scaling
`factor` for rope types that do not already count it (not su / longrope / llama3 / yarn /
deepseek_yarn / deepseek_llama_scaling, and not gemma3). The serve plan clamps to this limit
(runners.serve.template_values) with the reason in the evidence, so an Ascend profile's default
32768 never reaches vLLM for a 4096-token model.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runners.analysis.config import ConfigView, JsonFileError, read_json

LENGTH_KEYS = (
    "max_position_embeddings",
    "n_positions",
    "max_seq_len",
    "seq_length",
    "model_max_length",
    "max_target_positions",
    "max_sequence_length",
    "max_seq_length",
    "seq_len",
)
#: rope types whose max_position_embeddings is already the scaled length
_SCALED_ALREADY = ("su", "longrope", "llama3", "yarn", "deepseek_yarn", "deepseek_llama_scaling")


@dataclass(frozen=True)
class ModelLimit:
    tokens: int
    #: how it was derived, for the evidence: e.g. "max_position_embeddings 4096 in config.json"
    basis: str


def _num(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        return None
    return int(value)


def _rope_params(text: dict[str, Any]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for key in ("rope_parameters", "rope_scaling"):
        value = text.get(key)
        if isinstance(value, dict) and value:
            # per-layer-type rope parameters ({"full_attention": {...}, ...}) or one dict
            nested = [v for v in value.values() if isinstance(v, dict)]
            out.extend(nested if nested and all("rope_type" in v or "type" in v for v in nested) else [value])
            break
    return out


def model_limit(config: dict[str, Any], tokenizer_config: dict[str, Any] | None = None) -> ModelLimit | None:
    """vLLM's derived maximum length for this config (pure); None when the config names none."""
    view = ConfigView(config)
    text = view.text
    found: list[tuple[int, str]] = []
    for key in LENGTH_KEYS:
        if (n := _num(text.get(key))) is not None:
            found.append((n, key))
    if not found:
        return None
    tokens, key = min(found)
    if (mml := _num(text.get("model_max_length"))) is not None:
        tokens, key = mml, "model_max_length"
    basis = f"{key} {tokens} in config.json"
    tok_max = _num((tokenizer_config or {}).get("model_max_length"))
    if tok_max is not None and tok_max < tokens:
        tokens, basis = tok_max, f"model_max_length {tok_max} in tokenizer_config.json"
    model_type = str(config.get("model_type") or "")
    factor = 1.0
    for rp in _rope_params(text):
        rope_type = rp.get("rope_type") or rp.get("type") or "default"
        if rope_type not in _SCALED_ALREADY and "gemma3" not in model_type:
            f = rp.get("factor")
            if isinstance(f, int | float) and not isinstance(f, bool) and f > 0:
                factor = float(f)
                basis += f" × rope {rope_type} factor {f:g}"
    return ModelLimit(int(tokens * factor), basis)


def limit_of_dir(model_dir: Path) -> ModelLimit | None:
    """model_limit of a checkpoint directory for a generative model; None when its config cannot
    be read. tokenizer_config.json is not consulted: vLLM 0.32 reads its model_max_length only for
    pooling models with absolute position embeddings (DeepSeek-R1 ships 16384 there and vLLM serves
    163840)."""
    try:
        cfg = read_json(Path(model_dir) / "config.json")
    except JsonFileError:
        return None
    if not isinstance(cfg, dict):
        return None
    return model_limit(cfg)


def clamp(requested: int | None, limit: ModelLimit | None) -> tuple[int | None, str | None]:
    """(value to pass, reason when clamped) — pure."""
    if requested is None or limit is None or requested <= limit.tokens:
        return requested, None
    return limit.tokens, (
        f"--max-model-len {requested} clamped to {limit.tokens}: the model allows no more "
        f"({limit.basis}); vLLM refuses a longer one"
    )
