"""The shrunk model a feature probe runs on (issue 13): dummy weights, fewer layers, fewer experts.

A probe answers "does vLLM switch this feature on for this architecture" (ACLGraph capture, expert
parallel, MTP drafting, the multimodal path). The answer comes from the architecture's code path,
not from the layer count or the trained weights, so the probe does not need to load 700 GB and
capture graphs for 61 layers: vLLM's own model-initialization tests build every architecture with
`hf_overrides` that cut layers the same way. What cannot be cut without changing the code path is
kept, and each keep is said:

- the layer count is cut to the smallest prefix that still holds every kind of layer the config
  declares (`layer_types`, `hybrid_override_pattern`, dense-then-MoE via `first_k_dense_replace`,
  `decoder_sparse_step`, `full_attention_interval`, `sliding_window_pattern`), never below the
  profile's `min_layers`;
- experts are cut only where routing does not depend on their grouping (no `n_group` > 1), to a
  multiple of the probe's device count (expert parallel splits them) and at least twice top-k;
- MTP layers (`num_nextn_predict_layers`) are kept: MTP is one of the probed features;
- a layer count held only in a sub-config (multimodal `text_config`) is not cut: vLLM's
  `--hf-overrides` updates the top-level config, so the probe runs full size and says so.

Pure: config dict in, overrides + reasons out. The serve argv gets the overrides merged with any
`--hf-overrides` the job's serve recipe already carries (a zero-code architecture override), since
vLLM reads one `--hf-overrides` value and the last one given wins.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

LAYER_KEY = "num_hidden_layers"
EXPERT_KEYS = ("num_experts", "num_local_experts", "n_routed_experts")
TOP_K_KEYS = ("num_experts_per_tok", "moe_topk", "num_experts_per_token")
HF_OVERRIDES = "--hf-overrides"


@dataclass(frozen=True)
class Shrink:
    """What a probe's model is cut to: `overrides` for `--hf-overrides`, and why each part."""

    overrides: dict[str, Any] = field(default_factory=dict)
    layers: tuple[int, int] | None = None  # (kept, of)
    experts: tuple[int, int] | None = None
    notes: tuple[str, ...] = ()

    @property
    def shrunk(self) -> bool:
        return bool(self.overrides)

    def summary(self) -> str:
        """One line for the evidence and the report: what the probe ran on."""
        parts = []
        if self.layers:
            parts.append(f"{self.layers[0]} of {self.layers[1]} layers")
        if self.experts:
            parts.append(f"{self.experts[0]} of {self.experts[1]} experts")
        what = ", ".join(parts) if parts else "full size"
        return f"shrunk model (dummy weights, {what})" if parts else f"dummy weights, {what}"

    def data(self) -> dict[str, Any]:
        return {
            "overrides": self.overrides,
            "layers": list(self.layers) if self.layers else None,
            "experts": list(self.experts) if self.experts else None,
            "notes": list(self.notes),
            "summary": self.summary(),
        }


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def _prefix_with_all(seq: Sequence[Any]) -> int:
    """Length of the shortest prefix holding every distinct element of `seq`."""
    want = set(seq)
    seen: set[Any] = set()
    for i, item in enumerate(seq, 1):
        seen.add(item)
        if seen == want:
            return i
    return len(seq)


def _layers_needed(cfg: Mapping[str, Any], total: int, min_layers: int) -> tuple[int, list[str]]:
    """The fewest leading layers that keep every layer kind; the reasons that raised the count."""
    need = min(max(1, min_layers), total)
    why: list[str] = []

    def at_least(n: int, reason: str) -> None:
        nonlocal need
        n = min(n, total)
        if n > need:
            need = n
            why.append(reason)

    types = cfg.get("layer_types")
    if isinstance(types, list) and len(types) == total and all(isinstance(t, str) for t in types):
        at_least(_prefix_with_all(types), "every entry kind of layer_types")
    pattern = cfg.get("hybrid_override_pattern")
    if isinstance(pattern, str) and len(pattern) == total:
        at_least(_prefix_with_all(pattern), "every kind in hybrid_override_pattern")
    if (k := _int(cfg.get("first_k_dense_replace"))) is not None:
        at_least(k + 1, f"first_k_dense_replace={k} (dense layers, then MoE)")
    for key in ("decoder_sparse_step", "full_attention_interval", "sliding_window_pattern"):
        if (step := _int(cfg.get(key))) is not None and step > 1:
            at_least(step, f"{key}={step}")
    if (period := _int(cfg.get("attn_layer_period"))) is not None:
        offset = cfg.get("attn_layer_offset")
        at_least(period + (offset if isinstance(offset, int) else 0), "attn_layer_period/offset")
    return need, why


def plan(
    cfg: Mapping[str, Any] | None,
    *,
    min_layers: int,
    min_experts: int,
    devices: int,
) -> Shrink:
    """The overrides that cut `cfg` for a probe on `devices` devices (see the module docstring)."""
    if not isinstance(cfg, Mapping):
        return Shrink(notes=("no config.json to cut: the probe runs full size",))
    overrides: dict[str, Any] = {}
    notes: list[str] = []
    layers: tuple[int, int] | None = None
    total = _int(cfg.get(LAYER_KEY))
    if total is None:
        sub = cfg.get("text_config")
        where = "text_config" if isinstance(sub, Mapping) and _int(sub.get(LAYER_KEY)) else "the config"
        notes.append(f"layer count not cut: it is in {where}, which --hf-overrides does not reach")
    else:
        need, why = _layers_needed(cfg, total, min_layers)
        if need < total:
            overrides[LAYER_KEY] = need
            if isinstance(cfg.get("layer_types"), list):
                overrides["layer_types"] = list(cfg["layer_types"][:need])
            if isinstance(cfg.get("hybrid_override_pattern"), str):
                overrides["hybrid_override_pattern"] = cfg["hybrid_override_pattern"][:need]
            layers = (need, total)
        else:
            notes.append(f"layers kept ({total}): " + (", ".join(why) or f"at the minimum of {min_layers}"))
        if why and need < total:
            notes.append(f"kept {need} layers for " + ", ".join(why))
    experts = _experts(cfg, min_experts=min_experts, devices=devices, notes=notes)
    if experts is not None:
        key, kept, of = experts
        overrides[key] = kept
        return Shrink(overrides, layers, (kept, of), tuple(notes))
    return Shrink(overrides, layers, None, tuple(notes))


def _experts(
    cfg: Mapping[str, Any], *, min_experts: int, devices: int, notes: list[str]
) -> tuple[str, int, int] | None:
    key = next((k for k in EXPERT_KEYS if _int(cfg.get(k))), None)
    if key is None:
        return None
    total = int(cfg[key])
    if (groups := _int(cfg.get("n_group"))) is not None and groups > 1:
        notes.append(f"experts kept ({total}): routing groups them (n_group={groups})")
        return None
    top_k = next((int(cfg[k]) for k in TOP_K_KEYS if _int(cfg.get(k))), 1)
    step = max(1, devices)
    kept = math.ceil(max(min_experts, 2 * top_k) / step) * step
    if kept >= total:
        notes.append(f"experts kept ({total}): at the minimum for top-{top_k} on {devices} device(s)")
        return None
    return key, kept, total


def hf_overrides_of(argv: Sequence[str]) -> dict[str, Any]:
    """The `--hf-overrides` object already in `argv` (the last one: vLLM keeps the last), or {}."""
    found: dict[str, Any] = {}
    for i, arg in enumerate(argv):
        text = None
        if arg == HF_OVERRIDES and i + 1 < len(argv):
            text = argv[i + 1]
        elif arg.startswith(HF_OVERRIDES + "="):
            text = arg.split("=", 1)[1]
        if text is not None:
            try:
                value = json.loads(text)
            except ValueError:
                continue
            if isinstance(value, dict):
                found = value
    return found


def probe_args(shrink: Shrink, recipe_args: Sequence[str]) -> list[str]:
    """`--hf-overrides` for the probe: the recipe's own overrides with the cut on top, or []."""
    if not shrink.shrunk:
        return []
    merged = {**hf_overrides_of(recipe_args), **shrink.overrides}
    return [HF_OVERRIDES, json.dumps(merged, separators=(",", ":"))]
