"""Parameter count/bytes from config (when headers are absent) and the suggested TP per hardware.

The estimate follows the usual decoder shapes (dense, GQA, MLA, MoE with shared experts, MTP
layers) and is marked estimated; header sums replace it whenever the shards are present. Bytes per
parameter come from the quantization method, else the config dtype.
"""

from __future__ import annotations

from typing import Any

from runners.analysis.config import ConfigView
from runners.analysis.model import SuggestedTp

GIB = 1024**3
#: Memory of one Ascend NPU (A2) / NPU die (A3).
NPU_BYTES = 64 * GIB
#: Share of an NPU the weights may take; the rest is KV cache, activations and graph buffers.
WEIGHT_SHARE = 0.7
TP_CHOICES = {"a2": (1, 2, 4, 8), "a3": (1, 2, 4, 8, 16)}

DTYPE_BYTES = {
    "float32": 4.0,
    "float": 4.0,
    "bfloat16": 2.0,
    "float16": 2.0,
    "half": 2.0,
    "float8_e4m3fn": 1.0,
    "int8": 1.0,
}


def _moe_dims(cfg: ConfigView) -> tuple[int, int, int, int]:
    """(routed experts, shared experts, expert intermediate, shared intermediate)."""
    moe = cfg.moe()
    if not moe:
        return 0, 0, 0, 0
    experts = moe["experts"] or 0
    shared = moe["shared_experts"] or 0
    inter = cfg.int_("moe_intermediate_size") or cfg.int_("intermediate_size") or 0
    shared_inter = (
        cfg.int_("shared_expert_intermediate_size")
        or cfg.int_("moe_shared_expert_intermediate_size")
        or (inter * shared if shared else 0)
    )
    return experts, shared, inter, shared_inter


def estimate_parameters(cfg: ConfigView) -> int | None:
    """Rough language-model parameter count (vision towers excluded); None if shapes are missing."""
    h = cfg.hidden_size
    layers = cfg.num_hidden_layers
    vocab = cfg.int_("vocab_size") or cfg.int_("padded_vocab_size")
    heads = cfg.num_attention_heads
    if not (h and layers and vocab and heads):
        return None
    kv = cfg.num_key_value_heads or heads
    hd = cfg.head_dim or h // heads
    if cfg.int_("kv_lora_rank"):
        q_lora = cfg.int_("q_lora_rank")
        kv_lora = cfg.int_("kv_lora_rank") or 0
        nope, rope = cfg.int_("qk_nope_head_dim") or 0, cfg.int_("qk_rope_head_dim") or 0
        v_hd = cfg.int_("v_head_dim") or nope
        q = (h * q_lora + q_lora * heads * (nope + rope)) if q_lora else h * heads * (nope + rope)
        attn = q + h * (kv_lora + rope) + kv_lora * heads * (nope + v_hd) + heads * v_hd * h
    else:
        attn = h * heads * hd + 2 * h * kv * hd + heads * hd * h
    inter = cfg.int_("intermediate_size") or 4 * h
    # gated MLPs (SwiGLU) have three matrices; relu2 MLPs (Nemotron-H) two
    mats = 2 if cfg.get("mlp_hidden_act") == "relu2" else 3
    dense_mlp = mats * h * inter
    experts, _shared, moe_inter, shared_inter = _moe_dims(cfg)
    if experts:
        moe_mlp = experts * mats * h * moe_inter + mats * h * shared_inter + h * experts
        first_dense = cfg.int_("first_k_dense_replace") or 0
        step = cfg.int_("decoder_sparse_step") or cfg.int_("moe_layer_freq") or 1
        moe_layers = len([i for i in range(first_dense, layers) if (i + 1) % step == 0 or step == 1])
        mlp_total = moe_layers * moe_mlp + (layers - moe_layers) * dense_mlp
        per_layer_mlp = moe_mlp
    else:
        moe_mlp = 0
        mlp_total = layers * dense_mlp
        per_layer_mlp = dense_mlp
    embed = vocab * h * (1 if cfg.get("tie_word_embeddings") is True else 2)
    total = layers * attn + mlp_total + embed
    blocks = cfg.get("block_configs")
    if isinstance(blocks, list) and blocks and all(isinstance(b, dict) for b in blocks):
        total = embed + sum(_decilm_block(b, h, heads, hd) for b in blocks)
    pattern = cfg.get("hybrid_override_pattern")
    if isinstance(pattern, str) and pattern:
        total = embed + sum(
            _hybrid_layer(c, cfg, attn, dense_mlp, moe_mlp if experts else dense_mlp) for c in pattern
        )
    mtp = cfg.mtp_layers()
    if mtp:
        # an MTP module is one decoder layer plus the eh_proj (2h -> h) and its norms
        total += mtp * (attn + per_layer_mlp + 2 * h * h)
    return int(total)


def _decilm_block(block: dict[str, Any], h: int, heads: int, hd: int) -> int:
    """One heterogeneous DeciLM / Nemotron-NAS block (attention and FFN may be absent or linear)."""
    attn_raw, ffn_raw = block.get("attention"), block.get("ffn")
    attn_cfg: dict[str, Any] = attn_raw if isinstance(attn_raw, dict) else {}
    ffn_cfg: dict[str, Any] = ffn_raw if isinstance(ffn_raw, dict) else {}
    total = 0
    if attn_cfg.get("replace_with_linear"):
        total += h * h
    elif not attn_cfg.get("no_op"):
        group = attn_cfg.get("n_heads_in_group") or 1
        total += 2 * h * heads * hd + 2 * h * (heads // group) * hd
    if ffn_cfg.get("replace_with_linear"):
        total += h * h
    elif not ffn_cfg.get("no_op"):
        inter = int(2 * float(ffn_cfg.get("ffn_mult") or 4) * h / 3)
        inter += -inter % 256  # DeciLM rounds the FFN width up to a multiple of 256
        total += 3 * h * inter
    return total


def _hybrid_layer(kind: str, cfg: ConfigView, attn: int, dense_mlp: int, moe_mlp: int) -> int:
    """Nemotron-H pattern letters: M = Mamba2 mixer, * = attention, - = MLP, E = MoE."""
    h = cfg.hidden_size or 0
    if kind == "*":
        return attn
    if kind == "-":
        return dense_mlp
    if kind == "E":
        return moe_mlp
    if kind == "M":
        heads = cfg.int_("mamba_num_heads") or 0
        inner = heads * (cfg.int_("mamba_head_dim") or 0) or (cfg.int_("expand") or 2) * h
        groups, state = cfg.int_("n_groups") or 1, cfg.int_("ssm_state_size") or 128
        return h * (2 * inner + 2 * groups * state + heads) + inner * h
    return 0


def bytes_per_parameter(cfg: ConfigView, quant: dict[str, Any] | None) -> float:
    if quant:
        method = str(quant.get("method", "")).lower()
        bits = quant.get("bits") or quant.get("w_bit")
        if isinstance(bits, int) and bits > 0:
            return bits / 8 + 0.02  # packed weights plus scales/zeros
        if method in ("fp8", "modelopt", "compressed-tensors", "fbgemm_fp8"):
            return 1.0 + 0.01
        if method == "mxfp4":
            return 0.55
        if method == "ascend":
            return 1.0
    return DTYPE_BYTES.get((cfg.torch_dtype or "bfloat16").lower(), 2.0)


def suggest_tp(parameter_bytes: int | None, num_attention_heads: int | None) -> SuggestedTp:
    """Smallest TP whose weight share per NPU stays under WEIGHT_SHARE of 64 GB."""
    if not parameter_bytes:
        return SuggestedTp(a2=None, a3=None, basis_bytes=None, reason="parameter size unknown")
    budget = NPU_BYTES * WEIGHT_SHARE
    out: dict[str, int | None] = {}
    for hw, choices in TP_CHOICES.items():
        out[hw] = next(
            (
                tp
                for tp in choices
                if parameter_bytes / tp <= budget
                and (num_attention_heads is None or num_attention_heads % tp == 0)
            ),
            None,
        )
    gb = parameter_bytes / 1e9
    reason = (
        f"{gb:.1f} GB of weights; TP keeps weights at most {int(WEIGHT_SHARE * 100)}% of each 64 GB NPU "
        "so the rest holds KV cache (A2: 8 NPUs, A3: 16 dies per node)"
    )
    if out["a2"] is None or out["a3"] is None:
        reason += "; null = does not fit one node that way: quantize (W8A8 via ModelSlim) or go multi-node"
    return SuggestedTp(a2=out["a2"], a3=out["a3"], basis_bytes=parameter_bytes, reason=reason)
