"""Zero-code rungs for an architecture vLLM does not register (issue 14; the skill's steps 3-4).

Two ways a checkpoint can run without anyone writing model code, each decided here from the
analysis (pure, no I/O except `transformers_causal_lm_names`, which reads one source file):

- Structural match: the checkpoint names an unknown class, but its `model_type` is one transformers
  knows and the registered vLLM implementation of that `model_type` expects exactly these weights.
  The rung serves it with `--hf-overrides '{"architectures": ["<Match>"]}'`. The basis of the match
  (which mapping, which weight layout) is recorded; the gates confirm it, parity checks it.
- Transformers modeling backend: `--model-impl transformers` when the installed transformers defines
  the class (or the checkpoint's own code does and the repository allows remote code). vLLM documents
  its limits (docs/models/supported_models.md, "Transformers"): decoder-only/encoder-only/MoE, full
  and/or sliding attention only; we also skip MXFP4 checkpoints. A skipped rung carries that reason.

Either way the job then runs the model through an override or the Transformers backend, not a native
vLLM implementation; the report says so.
"""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

#: the job must opt in before a rung runs the checkpoint's own code (same words as the remote-code gate)
REMOTE_CODE_SKIP = (
    "the class is the checkpoint's own code (auto_map): it runs only when the repository's config allows "
    "remote code (remote_code: {allow: true}) or the CLI run passes --trust-remote-code"
)

#: rung names, in ladder order (one declaration; runners.gates.ladder and the profiles use them)
OVERRIDE_RUNG = "architecture-override"
TRANSFORMERS_RUNG = "transformers-backend"
ZERO_CODE_RUNGS = (OVERRIDE_RUNG, TRANSFORMERS_RUNG)

_LAYER = re.compile(r"\.\d+\.")
_CAUSAL = "ForCausalLM"
_CAUSAL_MAPPING = "MODEL_FOR_CAUSAL_LM_MAPPING_NAMES"


@dataclass(frozen=True)
class Layout:
    """The weight names (layer index -> N) a registered implementation loads, as far as they tell
    one family from another: what must be there, and what must not."""

    requires: tuple[str, ...]
    forbids: tuple[str, ...] = ()
    note: str = ""


_DECODER = (
    "model.embed_tokens.weight",
    "model.norm.weight",
    "model.layers.N.input_layernorm.weight",
    "model.layers.N.post_attention_layernorm.weight",
    "model.layers.N.self_attn.q_proj.weight",
    "model.layers.N.self_attn.k_proj.weight",
    "model.layers.N.self_attn.v_proj.weight",
    "model.layers.N.self_attn.o_proj.weight",
)
_DENSE_MLP = (
    "model.layers.N.mlp.gate_proj.weight",
    "model.layers.N.mlp.up_proj.weight",
    "model.layers.N.mlp.down_proj.weight",
)
_QK_NORM = ("model.layers.N.self_attn.q_norm.weight", "model.layers.N.self_attn.k_norm.weight")
_QKV_BIAS = (
    "model.layers.N.self_attn.q_proj.bias",
    "model.layers.N.self_attn.k_proj.bias",
    "model.layers.N.self_attn.v_proj.bias",
)
_EXPERTS = ("model.layers.N.mlp.gate.weight", "model.layers.N.mlp.experts.N.gate_proj.weight")

#: model_type -> the layout its registered implementation loads. Data: a family missing here is
#: matched on its model_type alone, and the basis says the layout was not checked.
LAYOUTS: dict[str, Layout] = {
    "llama": Layout(_DECODER + _DENSE_MLP, _QK_NORM + _QKV_BIAS, "Llama: no q/k norms, no q/k/v biases"),
    "mistral": Layout(_DECODER + _DENSE_MLP, _QK_NORM + _QKV_BIAS, "Mistral: the Llama layout"),
    "qwen2": Layout(_DECODER + _DENSE_MLP + _QKV_BIAS, _QK_NORM, "Qwen2: q/k/v biases, no q/k norms"),
    "qwen3": Layout(
        _DECODER + _DENSE_MLP + _QK_NORM, _QKV_BIAS + _EXPERTS[1:], "Qwen3: q/k norms, no biases, dense"
    ),
    "qwen3_moe": Layout(_DECODER + _QK_NORM + _EXPERTS, _QKV_BIAS, "Qwen3-MoE: q/k norms, routed experts"),
}

#: layer kinds the Transformers backend cannot run (vLLM docs: full and/or sliding attention only)
_UNSUPPORTED_LAYER = re.compile(r"linear|mamba|ssm|recurrent|conv", re.IGNORECASE)
#: config keys of hybrid linear-attention / state-space stacks (Qwen3-Next, Nemotron-H)
_NON_ATTENTION_KEYS = ("full_attention_interval", "hybrid_override_pattern")


class StructuralMatch(BaseModel):
    """The registered architecture the checkpoint matches, or why none does."""

    architecture: str | None = None
    basis: list[str] = Field(default_factory=list)
    reason: str = ""


class ZeroCodeRung(BaseModel):
    """One zero-code rung as the ladder will run it (`args`), or why it is skipped."""

    rung: str
    args: list[str] = Field(default_factory=list)
    skip: str | None = None
    #: runs the checkpoint's own code: only with the job's remote-code opt-in (the gate decides)
    remote_code: bool = False
    #: what the report says the model runs through when this rung is the delivery
    runs_through: str = ""


class ZeroCodePlan(BaseModel):
    """What the analysis decided for an unregistered architecture (None in the result otherwise)."""

    match: StructuralMatch
    rungs: list[ZeroCodeRung] = Field(default_factory=list)


def normalise(names: Iterable[str]) -> set[str]:
    """Weight names with every layer/expert index replaced by N (one entry per kind of tensor)."""
    out = set()
    for name in names:
        prev = None
        while prev != name:
            prev, name = name, _LAYER.sub(".N.", name)
        out.add(name)
    return out


def layout_mismatch(layout: Layout, names: set[str]) -> list[str]:
    missing = [n for n in layout.requires if n not in names]
    extra = [n for n in layout.forbids if n in names]
    return [f"missing {n}" for n in missing] + [f"unexpected {n}" for n in extra]


def _by_name(model_type: str, registered: Iterable[str]) -> str | None:
    key = model_type.replace("_", "").replace("-", "").lower()
    for arch in registered:
        if arch.endswith(_CAUSAL) and arch[: -len(_CAUSAL)].replace("_", "").lower() == key:
            return arch
    return None


def structural_match(
    *,
    architecture: str | None,
    model_type: str | None,
    weight_names: Sequence[str] | None,
    is_registered: Callable[[str], bool],
    registered: Iterable[str],
    causal_lm_names: Mapping[str, str] | None,
) -> StructuralMatch:
    """Match an unregistered class to the registered implementation of its model_type."""
    if not architecture or not model_type:
        return StructuralMatch(reason="config.json names no architecture or no model_type")
    basis: list[str] = []
    candidate = None
    if causal_lm_names and (name := causal_lm_names.get(model_type)):
        if is_registered(name):
            candidate = name
            basis.append(f"transformers maps model_type {model_type!r} to {name}, which vLLM registers")
        else:
            return StructuralMatch(
                reason=f"transformers maps model_type {model_type!r} to {name}, which vLLM does not "
                "register either"
            )
    elif causal_lm_names is not None and model_type not in causal_lm_names:
        return StructuralMatch(
            reason=f"the installed transformers knows no causal-LM class for model_type {model_type!r}: "
            "its config cannot even be loaded without the checkpoint's own code"
        )
    else:
        candidate = _by_name(model_type, registered)
        if candidate:
            basis.append(
                f"vLLM registers {candidate}, named after model_type {model_type!r} (no transformers "
                "install was found to confirm the mapping)"
            )
    if candidate is None:
        return StructuralMatch(reason=f"no registered vLLM architecture implements model_type {model_type!r}")
    layout = LAYOUTS.get(model_type)
    if weight_names is None:
        basis.append("weight names unknown (no index, no headers): matched on the config alone")
    elif layout is None:
        basis.append(f"no weight layout is declared for {model_type!r}: weight names not compared")
    else:
        wrong = layout_mismatch(layout, normalise(weight_names))
        if wrong:
            return StructuralMatch(
                reason=f"the weights do not follow {candidate}'s layout ({layout.note}): "
                + "; ".join(wrong[:4])
            )
        basis.append(f"the weight names follow {candidate}'s layout ({layout.note})")
    return StructuralMatch(architecture=candidate, basis=basis)


def override_args(architecture: str) -> list[str]:
    return ["--hf-overrides", json.dumps({"architectures": [architecture]}, separators=(",", ":"))]


def transformers_rung(
    *,
    architecture: str | None,
    in_transformers: bool | None,
    auto_map: Mapping[str, Any] | None,
    quant_method: str | None,
    attention_detail: Mapping[str, Any],
    match: StructuralMatch,
) -> ZeroCodeRung:
    """`--model-impl transformers`, or the documented reason it cannot apply."""
    rung = TRANSFORMERS_RUNG
    if quant_method and "mxfp4" in quant_method.lower():
        return ZeroCodeRung(rung=rung, skip="the Transformers backend does not run MXFP4 checkpoints")
    layer_types = [str(t) for t in (attention_detail.get("layer_types") or {})]
    odd = sorted({t for t in layer_types if _UNSUPPORTED_LAYER.search(t)})
    odd += [k for k in _NON_ATTENTION_KEYS if attention_detail.get(k) is not None]
    if odd:
        return ZeroCodeRung(
            rung=rung,
            skip=f"layers that are not attention ({', '.join(odd)}): vLLM's Transformers backend "
            "supports full and/or sliding attention only",
        )
    base = ["--model-impl", "transformers"]
    via = "vLLM's Transformers modeling backend"
    if in_transformers:
        return ZeroCodeRung(rung=rung, args=base, runs_through=f"{via} ({architecture} from transformers)")
    if auto_map and any(k in auto_map for k in ("AutoModel", "AutoModelForCausalLM")):
        return ZeroCodeRung(
            rung=rung, args=base, remote_code=True, runs_through=f"{via} (the checkpoint's own code)"
        )
    if match.architecture:
        return ZeroCodeRung(
            rung=rung,
            args=[*base, *override_args(match.architecture)],
            runs_through=f"{via} with transformers' {match.architecture}",
        )
    return ZeroCodeRung(
        rung=rung,
        skip=f"transformers defines no {architecture} and the checkpoint ships no code (auto_map) for it",
    )


def plan(*, match: StructuralMatch, tf: ZeroCodeRung) -> ZeroCodePlan:
    override = (
        ZeroCodeRung(
            rung=OVERRIDE_RUNG,
            args=override_args(match.architecture),
            runs_through=f"vLLM's native {match.architecture} through --hf-overrides (architectures)",
        )
        if match.architecture
        else ZeroCodeRung(rung=OVERRIDE_RUNG, skip=match.reason or "no structural match")
    )
    return ZeroCodePlan(match=match, rungs=[override, tf])


# --------------------------------------------------------------------------- transformers mapping (I/O)


def transformers_causal_lm_names(transformers_dir: str | None) -> dict[str, str] | None:
    """model_type -> causal-LM class from transformers' own auto mapping, read as source (never
    imported: the analysis runs without torch). None when no transformers install is known."""
    if not transformers_dir:
        return None
    path = Path(transformers_dir) / "models" / "auto" / "modeling_auto.py"
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"))
    except (OSError, SyntaxError, ValueError):
        return None
    for node in tree.body:
        if (
            isinstance(node, ast.Assign)
            and any(isinstance(t, ast.Name) and t.id == _CAUSAL_MAPPING for t in node.targets)
            and isinstance(node.value, ast.Call)
            and node.value.args
        ):
            try:
                pairs = ast.literal_eval(node.value.args[0])
            except ValueError:
                return None
            return {str(k): str(v) for k, v in pairs if isinstance(v, str)}
    return None
