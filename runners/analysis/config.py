"""Reading checkpoint config files and pulling the signals of adaptation.md §5 out of them.

`read_json` is the only I/O here (bounded size); everything else takes dicts and returns data.
VL models keep the language model in `text_config` (Qwen2.5-VL, GLM-4.5V) or `llm_config`
(InternVL); `ConfigView.get` looks there first so a VL checkpoint is sized and classified by its
language model, while `top` still answers questions about the whole checkpoint (auto_map,
vision_config, architectures).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: Config-like JSON files are small; anything bigger is not a config (or is hostile).
MAX_JSON_BYTES = 16 * 1024 * 1024

NESTED_TEXT_KEYS = ("text_config", "llm_config", "language_config", "thinker_config")
VISION_KEYS = ("vision_config", "visual", "vision_tower_config", "vit_config")
AUDIO_KEYS = ("audio_config", "audio_encoder_config")
MOE_EXPERT_KEYS = ("num_experts", "moe_num_experts", "n_routed_experts", "num_local_experts")
MOE_TOPK_KEYS = ("num_experts_per_tok", "moe_topk", "experts_per_token", "num_experts_per_token")
MOE_SHARED_KEYS = ("n_shared_experts", "num_shared_experts", "moe_num_shared_experts")
MTP_KEYS = ("num_nextn_predict_layers", "mtp_num_hidden_layers", "num_mtp_modules")


class JsonFileError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def read_json(path: Path, limit: int = MAX_JSON_BYTES) -> Any:
    """Parse a small JSON file; JsonFileError(code, message) says what is wrong with it."""
    name = path.name
    try:
        size = path.stat().st_size
        if not path.is_file():
            raise JsonFileError("file-unreadable", f"{name} is not a regular file")
        check_json_size(name, size, limit)
        with open(path, "rb") as fh:
            raw = fh.read(limit + 1)
    except OSError as exc:
        raise JsonFileError("file-unreadable", f"{name}: cannot read ({exc.strerror})") from None
    return parse_json(name, raw)


def check_json_size(name: str, size: int, limit: int = MAX_JSON_BYTES) -> None:
    """The size rule of read_json, for readers that know the size before reading (the hub)."""
    if size > limit:
        raise JsonFileError("file-too-large", f"{name} is {size} bytes, over the {limit}-byte limit")


def parse_json(name: str, raw: bytes) -> Any:
    """Parse JSON bytes read from `name`; JsonFileError("not-json") with the same message everywhere."""
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise JsonFileError("not-json", f"{name} is not valid JSON ({exc})") from None


def _positive_int(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return int(value) if value > 0 else None


@dataclass(frozen=True)
class ConfigView:
    """config.json with the nested language-model config merged in for lookups."""

    top: dict[str, Any]

    @property
    def text(self) -> dict[str, Any]:
        for key in NESTED_TEXT_KEYS:
            sub = self.top.get(key)
            if isinstance(sub, dict) and sub:
                return sub
        return self.top

    @property
    def nested_key(self) -> str | None:
        for key in NESTED_TEXT_KEYS:
            sub = self.top.get(key)
            if isinstance(sub, dict) and sub:
                return key
        return None

    def get(self, key: str, default: Any = None) -> Any:
        text = self.text
        if key in text and text[key] is not None:
            return text[key]
        value = self.top.get(key)
        return default if value is None else value

    def first(self, keys: tuple[str, ...]) -> tuple[str, Any] | tuple[None, None]:
        for key in keys:
            value = self.get(key)
            if value is not None:
                return key, value
        return None, None

    def int_(self, key: str) -> int | None:
        return _positive_int(self.get(key))

    # --- signals -------------------------------------------------------------------------

    @property
    def architectures(self) -> list[str]:
        archs = self.top.get("architectures")
        if isinstance(archs, list):
            return [a for a in archs if isinstance(a, str)]
        return []

    @property
    def architecture(self) -> str | None:
        return self.architectures[0] if self.architectures else None

    @property
    def model_type(self) -> str | None:
        mt = self.top.get("model_type")
        return mt if isinstance(mt, str) else None

    @property
    def remote_code(self) -> bool:
        return isinstance(self.top.get("auto_map"), dict) and bool(self.top["auto_map"])

    @property
    def has_vision(self) -> bool:
        return any(isinstance(self.top.get(k), dict) for k in VISION_KEYS)

    @property
    def has_audio(self) -> bool:
        return any(isinstance(self.top.get(k), dict) for k in AUDIO_KEYS)

    def moe(self) -> dict[str, int | None] | None:
        experts: int | None = None
        for key in MOE_EXPERT_KEYS:
            experts = self.int_(key)
            if experts:
                break
        if not experts:
            return None
        topk = next((v for k in MOE_TOPK_KEYS if (v := self.int_(k))), None)
        shared = next((v for k in MOE_SHARED_KEYS if (v := self.int_(k)) is not None), None)
        if shared is None and (self.int_("shared_expert_intermediate_size") or 0) > 0:
            shared = 1  # Qwen2-MoE / Qwen3-Next style: one gated shared expert
        if shared is None and (self.int_("moe_shared_expert_intermediate_size") or 0) > 0:
            shared = 1  # Nemotron-H style
        return {"experts": experts, "experts_per_token": topk, "shared_experts": shared}

    def mtp_layers(self) -> int:
        for key in MTP_KEYS:
            value = self.get(key)
            if key == "num_mtp_modules" and self.get("use_mtp") is False:
                continue
            n = _positive_int(value)
            if n:
                return n
        return 0

    @property
    def num_hidden_layers(self) -> int | None:
        return self.int_("num_hidden_layers") or self.int_("n_layer") or self.int_("num_layers")

    @property
    def num_attention_heads(self) -> int | None:
        return self.int_("num_attention_heads") or self.int_("n_head")

    @property
    def num_key_value_heads(self) -> int | None:
        kv = self.int_("num_key_value_heads") or self.int_("multi_query_group_num")
        if kv is None and self.get("multi_query") is True:
            return 1
        blocks = self.get("block_configs")
        heads = self.num_attention_heads
        if kv is None and heads and isinstance(blocks, list):
            # DeciLM / Nemotron-NAS: per-block n_heads_in_group; report the most common one
            groups = [
                b["attention"].get("n_heads_in_group")
                for b in blocks
                if isinstance(b, dict) and isinstance(b.get("attention"), dict)
            ]
            groups = [g for g in groups if isinstance(g, int) and g > 0]
            if groups:
                return heads // max(set(groups), key=groups.count)
        return kv

    @property
    def hidden_size(self) -> int | None:
        return self.int_("hidden_size") or self.int_("n_embd") or self.int_("d_model")

    @property
    def head_dim(self) -> int | None:
        explicit = self.int_("head_dim") or self.int_("kv_channels")
        if explicit:
            return explicit
        if self.int_("kv_lora_rank"):
            nope, rope = self.int_("qk_nope_head_dim") or 0, self.int_("qk_rope_head_dim") or 0
            return (nope + rope) or None
        hidden, heads = self.hidden_size, self.num_attention_heads
        return hidden // heads if hidden and heads else None

    @property
    def torch_dtype(self) -> str | None:
        for key in ("torch_dtype", "dtype"):
            value = self.get(key)
            if isinstance(value, str):
                return value.removeprefix("torch.")
        return None

    def attention(self) -> tuple[str | None, dict[str, Any]]:
        """(kind, detail): mha | gqa | mqa | mla | hybrid (linear / mamba / sliding mixes)."""
        detail: dict[str, Any] = {}
        sliding = self.get("sliding_window")
        use_sliding = self.get("use_sliding_window")
        if _positive_int(sliding) and use_sliding is not False:
            detail["sliding_window"] = int(sliding)
        if _positive_int(self.get("attention_chunk_size")):
            detail["attention_chunk_size"] = int(self.get("attention_chunk_size"))
        if self.int_("kv_lora_rank"):
            detail.update(
                {
                    k: self.get(k)
                    for k in (
                        "kv_lora_rank",
                        "q_lora_rank",
                        "qk_rope_head_dim",
                        "qk_nope_head_dim",
                        "v_head_dim",
                    )
                    if self.get(k) is not None
                }
            )
            if self.get("index_topk") is not None:
                detail["sparse_indexer_topk"] = self.get("index_topk")
            return "mla", detail
        layer_types = self.get("layer_types")
        if isinstance(layer_types, list) and layer_types:
            counts: dict[str, int] = {}
            for lt in layer_types:
                counts[str(lt)] = counts.get(str(lt), 0) + 1
            detail["layer_types"] = counts
            if len(counts) > 1:
                return "hybrid", detail
        pattern = self.get("hybrid_override_pattern")
        if isinstance(pattern, str) and pattern:
            counts = {c: pattern.count(c) for c in sorted(set(pattern))}
            detail["hybrid_override_pattern"] = counts
            if "M" in counts:
                return "hybrid", detail
        if self.get("full_attention_interval") and any(k.startswith("linear_") for k in self.text):
            detail["full_attention_interval"] = self.get("full_attention_interval")
            return "hybrid", detail
        attn_types = self.get("attn_type_list")
        if isinstance(attn_types, list) and len(set(map(str, attn_types))) > 1:
            detail["attn_type_list"] = {str(t): attn_types.count(t) for t in sorted(set(attn_types), key=str)}
            return "hybrid", detail
        n_layers = self.num_hidden_layers
        mwl = self.int_("max_window_layers")
        if use_sliding is True and _positive_int(sliding) and n_layers and mwl and mwl < n_layers:
            return "hybrid", detail
        if self.int_("sliding_window_pattern") or self.int_("no_rope_layer_interval"):
            return "hybrid", detail
        heads, kv = self.num_attention_heads, self.num_key_value_heads
        if heads is None:
            return None, detail
        if kv is None or kv == heads:
            return "mha", detail
        if kv == 1:
            return "mqa", detail
        return "gqa", detail

    def rope(self) -> dict[str, Any] | None:
        for key in ("rope_parameters", "rope_scaling"):
            value = self.get(key)
            if isinstance(value, dict) and value:
                out: dict[str, Any] = {"source": key}
                rope_type = value.get("rope_type") or value.get("type")
                if "mrope_section" in value and rope_type in (None, "default"):
                    rope_type = "mrope"
                out["type"] = rope_type or "default"
                for k in ("factor", "original_max_position_embeddings", "mrope_section", "rope_theta"):
                    if k in value:
                        out[k] = value[k]
                return out
        theta = self.get("rope_theta")
        return {"source": "rope_theta", "type": "default", "rope_theta": theta} if theta else None

    def max_position_embeddings(self) -> int | None:
        for key in ("max_position_embeddings", "seq_length", "max_sequence_length", "n_positions"):
            if (n := self.int_(key)) is not None:
                return n
        return None


def quantization(
    cfg: dict[str, Any],
    side_files: dict[str, Any],
) -> dict[str, Any] | None:
    """The quantization method and its key parameters, and where that came from.

    `side_files` maps a side-file name (quantize_config.json, hf_quant_config.json,
    quant_model_description.json, quant_config.json) to its parsed JSON.
    """
    qc = cfg.get("quantization_config")
    if not isinstance(qc, dict):
        for key in NESTED_TEXT_KEYS:
            sub = cfg.get(key)
            if isinstance(sub, dict) and isinstance(sub.get("quantization_config"), dict):
                qc = sub["quantization_config"]
                break
    if isinstance(qc, dict) and qc:
        method = str(qc.get("quant_method") or qc.get("quant_type") or "unknown").lower()
        out: dict[str, Any] = {"method": method, "source": "config.json:quantization_config"}
        for key in (
            "bits",
            "group_size",
            "desc_act",
            "sym",
            "weight_block_size",
            "fmt",
            "scale_fmt",
            "activation_scheme",
            "format",
            "quant_algo",
            "version",
        ):
            if key in qc:
                out[key] = qc[key]
        if "ignore" in qc and isinstance(qc["ignore"], list):
            out["ignored_modules"] = len(qc["ignore"])
        if isinstance(qc.get("modules_to_not_convert"), list):
            out["ignored_modules"] = len(qc["modules_to_not_convert"])
        return out
    desc = side_files.get("quant_model_description.json")
    if isinstance(desc, dict):
        qtype = desc.get("model_quant_type") or desc.get("quant_type")
        return {
            "method": "ascend",
            "source": "quant_model_description.json",
            "type": qtype,
            "serve_flag": "--quantization ascend",
        }
    hfq = side_files.get("hf_quant_config.json")
    if isinstance(hfq, dict):
        inner = hfq.get("quantization")
        q: dict[str, Any] = inner if isinstance(inner, dict) else hfq
        out = {"method": "modelopt", "source": "hf_quant_config.json"}
        for key in ("quant_algo", "kv_cache_quant_algo", "group_size"):
            if key in q:
                out[key] = q[key]
        return out
    for name in ("quantize_config.json", "quant_config.json"):
        qcfg = side_files.get(name)
        if isinstance(qcfg, dict):
            declared = qcfg.get("quant_method")
            method = (
                str(declared)
                if declared
                else ("awq" if ("w_bit" in qcfg or "zero_point" in qcfg) else "gptq")
            )
            out = {"method": method.lower(), "source": name}
            for key in ("bits", "w_bit", "group_size", "q_group_size", "desc_act", "sym", "version"):
                if key in qcfg:
                    out[key] = qcfg[key]
            return out
    return None
