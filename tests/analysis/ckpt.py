"""Tiny real checkpoints for the analysis tests, written with the `safetensors` library.

Tensors are numpy arrays; fp8 tensors are uint8 bytes written with the safetensors dtype
`float8_e4m3fn` (stored as F8_E4M3), since numpy has no fp8 type. Crafted corruptions are
written byte by byte on purpose (the library refuses to write them).
"""

from __future__ import annotations

import json
import struct
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from safetensors import TensorSpec, serialize_file

#: numpy-side value -> safetensors dtype name for serialize_file
FP8 = "float8_e4m3fn"

Tensor = np.ndarray | tuple[np.ndarray, str]


def write_shard(path: Path, tensors: Mapping[str, Tensor], metadata: dict[str, str] | None = None) -> None:
    """Write one shard; a (array, dtype) pair overrides the stored dtype (e.g. FP8 for uint8 data)."""
    keep: list[np.ndarray] = []
    specs: dict[str, TensorSpec] = {}
    for name, value in tensors.items():
        array, dtype = value if isinstance(value, tuple) else (value, None)
        array = np.ascontiguousarray(array)
        keep.append(array)
        specs[name] = TensorSpec(
            dtype=dtype or array.dtype.name,
            shape=list(array.shape),
            data_ptr=array.ctypes.data,
            data_len=array.nbytes,
        )
    serialize_file(specs, str(path), metadata=metadata)


def write_index(
    model_dir: Path, shards: Mapping[str, Mapping[str, Tensor]], extra: dict[str, str] | None = None
) -> None:
    weight_map = {name: shard for shard, tensors in shards.items() for name in tensors}
    weight_map.update(extra or {})
    total = 0
    for tensors in shards.values():
        for value in tensors.values():
            array = value[0] if isinstance(value, tuple) else value
            total += array.nbytes
    (model_dir / "model.safetensors.index.json").write_text(
        json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}, indent=2)
    )


def write_config(model_dir: Path, **overrides: Any) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        "architectures": ["Qwen3ForCausalLM"],
        "model_type": "qwen3",
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "head_dim": 16,
        "vocab_size": 32,
        "max_position_embeddings": 512,
        "torch_dtype": "bfloat16",
        "tie_word_embeddings": False,
    }
    cfg.update(overrides)
    cfg = {k: v for k, v in cfg.items() if v is not None}
    model_dir.mkdir(parents=True, exist_ok=True)
    (model_dir / "config.json").write_text(json.dumps(cfg, indent=2))
    return cfg


def dense_layer(i: int, h: int = 64, inter: int = 128, dtype: Any = np.float16) -> dict[str, Tensor]:
    p = f"model.layers.{i}."
    z = np.zeros
    return {
        p + "self_attn.q_proj.weight": z((h, h), dtype),
        p + "self_attn.k_proj.weight": z((32, h), dtype),
        p + "self_attn.v_proj.weight": z((32, h), dtype),
        p + "self_attn.o_proj.weight": z((h, h), dtype),
        p + "mlp.gate_proj.weight": z((inter, h), dtype),
        p + "mlp.up_proj.weight": z((inter, h), dtype),
        p + "mlp.down_proj.weight": z((h, inter), dtype),
        p + "input_layernorm.weight": z((h,), dtype),
    }


def fp8_linear(
    name: str, shape: tuple[int, int], *, scale: str | None = "weight_scale_inv"
) -> dict[str, Tensor]:
    """An F8_E4M3 weight and (optionally) its F32 block scale."""
    out: dict[str, Tensor] = {f"{name}.weight": (np.zeros(shape, np.uint8), FP8)}
    if scale:
        out[f"{name}.{scale}"] = np.ones((max(1, shape[0] // 128), max(1, shape[1] // 128)), np.float32)
    return out


def raw_shard(path: Path, header: bytes | str, data: bytes = b"", length: int | None = None) -> None:
    """Write a shard byte by byte: 8-byte length (default: len(header)), header, data."""
    hb = header.encode() if isinstance(header, str) else header
    n = len(hb) if length is None else length
    path.write_bytes(struct.pack("<Q", n) + hb + data)


#: bytes per element of the header dtypes the sparse writer uses
_SPARSE_BYTES = {"BF16": 2, "F16": 2, "F32": 4, "F8_E4M3": 1, "U8": 1, "I32": 4}


def write_sparse_shard(path: Path, tensors: list[tuple[str, str, list[int]]]) -> None:
    """A real safetensors file whose data buffer is a hole: header only on disk, any shapes.

    Lets a test give a checkpoint the true shapes of e.g. Qwen3-8B (a 1.2 GB embedding) in a few
    kilobytes; the analysis only ever reads the 8 + N header bytes.
    """
    header: dict[str, Any] = {"__metadata__": {"format": "pt"}}
    offset = 0
    for name, dtype, shape in tensors:
        size = _SPARSE_BYTES[dtype]
        for d in shape:
            size *= d
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + size]}
        offset += size
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    with open(path, "wb") as fh:
        fh.write(struct.pack("<Q", len(raw)) + raw)
        fh.truncate(8 + len(raw) + offset)
