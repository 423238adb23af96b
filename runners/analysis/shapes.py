"""Tensor shapes from the shard headers against the shapes config.json implies (pure).

vLLM builds every parameter from config.json and then copies the checkpoint's tensor into it; a
tensor whose header shape differs crashes the real-weight load (`Attempted to load weight ...`)
after minutes of start-up, and the dummy gate, which never reads the weights, passes. Comparing
the headers with the config names the contradiction before any server starts:
`model.layers.1.mlp.down_proj.weight [128, 192], config implies [128, 256]`.

Only the layouts of known families are checked (llama / mistral / qwen2 / qwen3 dense, qwen2-moe /
qwen3-moe / mixtral / deepseek-moe experts, DeepSeek MLA): for any other family a name like
`q_proj` may mean something else (Qwen3-Next's gated q_proj is twice as wide), and a false
contradiction would stop a servable job. Packed quantized tensors (int4/int8 `qweight`,
`weight_packed`, MXFP4 blocks) are not compared; fp8 weights keep their logical shape and are.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from runners.analysis.config import ConfigView
from runners.analysis.model import Problem

#: Language-model `model_type`s whose tensor layout the rules below describe.
FAMILIES = frozenset(
    {
        "llama",
        "mistral",
        "qwen2",
        "qwen3",
        "qwen2_moe",
        "qwen3_moe",
        "mixtral",
        "deepseek_v2",
        "deepseek_v3",
        "deepseek_v32",
        "kimi_k2",
        "qwen2_5_vl",
        "qwen2_5_vl_text",
        "qwen2_vl",
        "qwen2_vl_text",
        "qwen3_vl_text",
        "qwen3_vl_moe_text",
    }
)

#: Header dtypes whose shape is the logical (unpacked) shape.
_LOGICAL_DTYPES = frozenset({"F16", "BF16", "F32", "F64", "F8_E4M3", "F8_E5M2", "F8_E4M3FNUZ", "F8_E5M2FNUZ"})
#: First name components of vision / audio towers: their layers are not the language model's.
_TOWER_PARTS = frozenset(
    {
        "visual",
        "vision_tower",
        "vision_model",
        "vision_encoder",
        "vit",
        "vpm",
        "image_encoder",
        "audio_tower",
        "audio_encoder",
        "multi_modal_projector",
        "mm_projector",
        "mlp1",
    }
)
_TOWER_PREFIXES = tuple(f"{first}{part}." for first in ("", "model.", "thinker.") for part in _TOWER_PARTS)
#: Quantization side tensors (scales, zero points, group indices): their weight is what is checked.
_SIDE_SUFFIXES = (
    "_scale_inv",
    "_scale",
    ".scales",
    ".qzeros",
    ".g_idx",
    "_zero_point",
    "e_score_correction_bias",
)
#: How many tensor names one contradiction message quotes besides the first.
EXAMPLES = 3


@dataclass(frozen=True)
class Dims:
    """The config numbers the shapes follow; None where the config does not say."""

    hidden: int
    vocab: int | None
    heads: int | None
    kv_heads: int | None
    head_dim: int | None
    intermediate: int | None
    moe_intermediate: int | None
    experts: int | None
    shared_experts: int | None
    shared_intermediate: int | None
    q_lora: int | None
    kv_lora: int | None
    qk_nope: int | None
    qk_rope: int | None
    v_head: int | None


def family_of(cfg: ConfigView) -> str | None:
    text_type = cfg.text.get("model_type") if cfg.text is not cfg.top else None
    for mt in (text_type, cfg.model_type):
        if isinstance(mt, str) and mt in FAMILIES:
            return mt
    return None


def dims_of(cfg: ConfigView) -> Dims | None:
    """The dimensions of a known family's config, or None (unknown family, no hidden_size)."""
    if family_of(cfg) is None or cfg.hidden_size is None or cfg.get("block_configs") is not None:
        return None
    moe = cfg.moe() or {}
    heads = cfg.num_attention_heads
    return Dims(
        hidden=cfg.hidden_size,
        vocab=cfg.int_("vocab_size"),
        heads=heads,
        kv_heads=cfg.num_key_value_heads or heads,
        head_dim=cfg.head_dim,
        intermediate=cfg.int_("intermediate_size"),
        moe_intermediate=cfg.int_("moe_intermediate_size") or cfg.int_("intermediate_size"),
        experts=moe.get("experts"),
        shared_experts=cfg.int_("n_shared_experts"),
        shared_intermediate=cfg.int_("shared_expert_intermediate_size"),
        q_lora=cfg.int_("q_lora_rank"),
        kv_lora=cfg.int_("kv_lora_rank"),
        qk_nope=cfg.int_("qk_nope_head_dim"),
        qk_rope=cfg.int_("qk_rope_head_dim"),
        v_head=cfg.int_("v_head_dim"),
    )


Expected = tuple[str, tuple[int, ...], str]  # (rule, shape, which config keys)


def _mul(*values: int | None) -> int | None:
    out = 1
    for v in values:
        if v is None:
            return None
        out *= v
    return out


def _shape(rule: str, why: str, *dims: int | None) -> Expected | None:
    if any(d is None for d in dims):
        return None
    return rule, tuple(d for d in dims if d is not None), why


def _attention(mod: str, leaf: str, d: Dims) -> Expected | None:
    h = d.hidden
    if d.kv_lora:  # MLA (DeepSeek-V2/V3): low-rank q and kv projections
        qk = None if d.qk_nope is None or d.qk_rope is None else d.qk_nope + d.qk_rope
        if leaf != "weight":
            return None
        if mod == "q_proj" and not d.q_lora:
            return _shape(
                "mla-q",
                "num_attention_heads × (qk_nope_head_dim + qk_rope_head_dim), hidden_size",
                _mul(d.heads, qk),
                h,
            )
        if mod == "q_a_proj":
            return _shape("mla-q-a", "q_lora_rank, hidden_size", d.q_lora, h)
        if mod == "q_a_layernorm":
            return _shape("mla-q-a-norm", "q_lora_rank", d.q_lora)
        if mod == "q_b_proj":
            return _shape(
                "mla-q-b",
                "num_attention_heads × (qk_nope_head_dim + qk_rope_head_dim), q_lora_rank",
                _mul(d.heads, qk),
                d.q_lora,
            )
        if mod == "kv_a_proj_with_mqa":
            rank = None if d.qk_rope is None else d.kv_lora + d.qk_rope
            return _shape("mla-kv-a", "kv_lora_rank + qk_rope_head_dim, hidden_size", rank, h)
        if mod == "kv_a_layernorm":
            return _shape("mla-kv-a-norm", "kv_lora_rank", d.kv_lora)
        if mod == "kv_b_proj":
            nv = None if d.qk_nope is None or d.v_head is None else d.qk_nope + d.v_head
            return _shape(
                "mla-kv-b",
                "num_attention_heads × (qk_nope_head_dim + v_head_dim), kv_lora_rank",
                _mul(d.heads, nv),
                d.kv_lora,
            )
        if mod == "o_proj":
            return _shape(
                "mla-o", "hidden_size, num_attention_heads × v_head_dim", h, _mul(d.heads, d.v_head)
            )
        return None
    q = _mul(d.heads, d.head_dim)
    kv = _mul(d.kv_heads, d.head_dim)
    if leaf == "weight":
        if mod == "q_proj":
            return _shape("q", "num_attention_heads × head_dim, hidden_size", q, h)
        if mod in ("k_proj", "v_proj"):
            return _shape(mod[0], "num_key_value_heads × head_dim, hidden_size", kv, h)
        if mod == "o_proj":
            return _shape("o", "hidden_size, num_attention_heads × head_dim", h, q)
        if mod in ("q_norm", "k_norm"):
            return _shape(mod, "head_dim", d.head_dim)
    elif leaf == "bias":
        if mod == "q_proj":
            return _shape("q-bias", "num_attention_heads × head_dim", q)
        if mod in ("k_proj", "v_proj"):
            return _shape(mod[0] + "-bias", "num_key_value_heads × head_dim", kv)
    return None


_GATE_UP = ("gate_proj", "up_proj")


def _mlp(mod: str, inter: int | None, h: int, key: str, rule: str) -> Expected | None:
    if mod in _GATE_UP:
        return _shape(rule, f"{key}, hidden_size", inter, h)
    if mod == "down_proj":
        return _shape(rule + "-down", f"hidden_size, {key}", h, inter)
    return None


def expected_shape(parts: list[str], d: Dims) -> Expected | None:
    """What config.json implies for the tensor named by `parts` (its name split at dots), or None."""
    if len(parts) < 2:
        return None
    leaf, mod = parts[-1], parts[-2]
    parent = parts[-3] if len(parts) >= 3 else ""
    h = d.hidden
    if leaf in ("gate_up_proj", "down_proj", "gate_proj", "up_proj") and mod == "experts":
        return None  # fused 3-D experts (transformers 5 layout): only the expert count is checked
    if leaf not in ("weight", "bias"):
        return None
    if leaf == "weight":
        if mod == "embed_tokens":
            return _shape("embed", "vocab_size, hidden_size", d.vocab, h)
        if mod == "lm_head" or (mod == "head" and parent == "shared_head"):
            return _shape("lm-head", "vocab_size, hidden_size", d.vocab, h)
        if mod in ("input_layernorm", "post_attention_layernorm") or (
            mod == "norm" and parent in ("model", "language_model")
        ):
            return _shape("norm", "hidden_size", h)
    if parent == "self_attn":
        return _attention(mod, leaf, d)
    if leaf != "weight":
        return None
    if parent == "mlp":
        if mod == "gate":
            return _shape("router", "number of routed experts, hidden_size", d.experts, h)
        return _mlp(mod, d.intermediate, h, "intermediate_size", "mlp")
    if parent == "block_sparse_moe" and mod == "gate":
        return _shape("router", "num_local_experts, hidden_size", d.experts, h)
    if parent == "shared_experts":
        return _mlp(
            mod,
            _mul(d.moe_intermediate, d.shared_experts),
            h,
            "moe_intermediate_size × n_shared_experts",
            "shared-expert",
        )
    if parent == "shared_expert":
        return _mlp(mod, d.shared_intermediate, h, "shared_expert_intermediate_size", "shared-expert")
    if parent.isdigit() and len(parts) >= 4 and parts[-4] == "experts":
        if mod in ("w1", "w3"):
            return _shape("expert", "intermediate_size, hidden_size", d.moe_intermediate, h)
        if mod == "w2":
            return _shape("expert-down", "hidden_size, intermediate_size", h, d.moe_intermediate)
        return _mlp(mod, d.moe_intermediate, h, "moe_intermediate_size", "expert")
    return None


@dataclass
class _Group:
    names: list[str]
    got: tuple[int, ...]
    want: tuple[int, ...]
    why: str


def _natural(name: str) -> list[int | str]:
    return [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", name)]


def _fmt(shape: tuple[int, ...]) -> str:
    return "[" + ", ".join(str(x) for x in shape) + "]"


def check_shapes(cfg: ConfigView, tensors: Iterable[tuple[str, str, list[int]]]) -> list[Problem]:
    """`shape-mismatch` problems for (name, dtype, shape) triples that contradict config.json.

    One problem per kind of contradiction (rule, header shape, implied shape), naming its first
    tensor in layer order and how many more share it; expert indices at or past the configured
    expert count are one more (same code, its own message).
    """
    d = dims_of(cfg)
    if d is None:
        return []
    groups: dict[tuple[str, tuple[int, ...], tuple[int, ...]], _Group] = {}
    beyond: list[str] = []
    experts = d.experts
    # The rules read only the last four name components: cache per that tail, so the ~92k tensors
    # of a DeepSeek-V3 cost one rsplit and one dict lookup each (the analysis budget is 2 s).
    cache: dict[str, tuple[Expected | None, list[int] | None, bool, bool]] = {}
    for name, dtype, shape in tensors:
        if name.endswith(_SIDE_SUFFIXES) or name.startswith(_TOWER_PREFIXES):
            continue
        split = name.rsplit(".", 4)
        key = name[len(split[0]) + 1 :] if len(split) == 5 else name
        hit = cache.get(key)
        if hit is None:
            parts = split[1:] if len(split) == 5 else split
            n = len(parts)
            is_beyond = bool(
                experts
                and n >= 4
                and parts[-4] == "experts"
                and parts[-3].isdigit()
                and int(parts[-3]) >= experts
            )
            is_fused = bool(experts and n >= 2 and parts[-2] == "experts")
            exp = expected_shape(parts, d)
            hit = cache[key] = (exp, list(exp[1]) if exp else None, is_beyond, is_fused)
        exp, want_list, is_beyond, is_fused = hit
        if is_beyond:
            beyond.append(name)
        elif is_fused and len(shape) == 3 and shape[0] != experts:
            fkey: tuple[str, tuple[int, ...], tuple[int, ...]] = (
                "fused-experts",
                (shape[0],),
                (experts or 0,),
            )
            groups.setdefault(fkey, _Group([], (shape[0],), (experts or 0,), "number of routed experts"))
            groups[fkey].names.append(name + " (dim 0)")
        if exp is None or shape == want_list or dtype not in _LOGICAL_DTYPES:
            continue
        got = tuple(shape)
        if got != exp[1]:
            rule, want, why = exp
            gkey = (rule, got, want)
            if gkey not in groups:
                groups[gkey] = _Group([], got, want, why)
            groups[gkey].names.append(name)
    problems: list[Problem] = []
    for g in sorted(groups.values(), key=lambda g: _natural(min(g.names, key=_natural))):
        names = sorted(g.names, key=_natural)
        text = f"{names[0]} {_fmt(g.got)}, config implies {_fmt(g.want)} ({g.why})"
        if len(names) > 1:
            more = ", ".join(names[1 : 1 + EXAMPLES])
            extra = f" (+{len(names) - 1 - EXAMPLES} more)" if len(names) - 1 > EXAMPLES else ""
            text += (
                f"; the same in {len(names) - 1} more tensor{'s' if len(names) > 2 else ''}: {more}{extra}"
            )
        problems.append(Problem.of("shape-mismatch", text))
    if beyond:
        beyond.sort(key=_natural)
        shown = ", ".join(beyond[:EXAMPLES]) + (
            f" (+{len(beyond) - EXAMPLES} more)" if len(beyond) > EXAMPLES else ""
        )
        problems.append(
            Problem.of(
                "shape-mismatch",
                f"{len(beyond)} expert tensors have an index at or past the {experts} experts config.json "
                f"declares: {shown}",
            )
        )
    return problems


def header_tensors(headers: Iterable[object]) -> Iterable[tuple[str, str, list[int]]]:
    """(name, dtype, shape) of every entry of the scanned ShardHeaders, without building TensorInfos."""
    for h in headers:
        entries = getattr(h, "entries", {})
        for name, e in entries.items():
            yield name, e["dtype"], e["shape"]


def _layer_modules(d: Dims, *, moe: bool) -> list[str]:
    """Projection modules every decoder layer of a known family has (relative to `layers.<i>.`)."""
    if d.kv_lora:
        attn = ["self_attn.kv_a_proj_with_mqa", "self_attn.kv_b_proj", "self_attn.o_proj"]
        attn += ["self_attn.q_a_proj", "self_attn.q_b_proj"] if d.q_lora else ["self_attn.q_proj"]
    else:
        attn = ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj"]
    mlp = [] if moe else ["mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"]
    return attn + mlp


def check_missing(cfg: ConfigView, names: Iterable[str]) -> list[Problem]:
    """`tensor-missing`: decoder-layer weights config.json implies that no shard holds.

    vLLM 0.32 serves such a checkpoint without a word (tests/fixtures/vllm-logs/
    llama-missing-down-proj.log: ready, the parameter never loaded), so only the headers can tell.
    Checked for the known families, per layer up to `num_hidden_layers`: the attention projections,
    and the dense MLP when the model has no experts (which layers are sparse varies). A
    module counts as present under any suffix (`.weight`, `.qweight`, `.weight_packed`).
    """
    d = dims_of(cfg)
    layers = cfg.num_hidden_layers
    if d is None or not layers:
        return []
    present = names if isinstance(names, (set, frozenset)) else set(names)
    prefix = next(
        (
            p
            for p in ("model.layers.", "model.language_model.layers.", "language_model.model.layers.")
            if any(
                f"{p}0.{m}.weight" in present
                for m in ("input_layernorm", "self_attn.o_proj", "mlp.down_proj")
            )
        ),
        None,
    )
    if prefix is None:
        return []
    modules: set[str] | None = None  # every module path; built only when a plain `.weight` is absent
    wanted = _layer_modules(d, moe=bool(d.experts))
    qkv, gate_up = "self_attn.qkv_proj", "mlp.gate_up_proj"
    fused = {"self_attn.q_proj": qkv, "self_attn.k_proj": qkv, "self_attn.v_proj": qkv}
    fused |= {"mlp.gate_proj": gate_up, "mlp.up_proj": gate_up}
    missing: list[str] = []
    for i in range(layers):
        base = f"{prefix}{i}."
        for m in wanted:
            if base + m + ".weight" in present:
                continue
            if modules is None:
                modules = {n.rsplit(".", 1)[0] for n in present}
            if base + m in modules or (m in fused and base + fused[m] in modules):
                continue
            missing.append(base + m + ".weight")
    if not missing:
        return []
    shown = ", ".join(missing[:EXAMPLES]) + (
        f" (+{len(missing) - EXAMPLES} more)" if len(missing) > EXAMPLES else ""
    )
    return [
        Problem.of(
            "tensor-missing",
            f"{len(missing)} weight{'s' if len(missing) != 1 else ''} config.json implies "
            f"({layers} layers) {'are' if len(missing) != 1 else 'is'} in no shard: {shown}; vLLM would "
            "start and leave those parameters unloaded — complete the checkpoint or fix num_hidden_layers",
        )
    ]
