"""Read a `*.safetensors` header and nothing else.

Layout: 8-byte little-endian u64 N, then N bytes of JSON ({name: {dtype, shape, data_offsets}},
optional `__metadata__`), then the data buffer. Reading exactly 8 + N bytes per shard is what makes
analysis of a terabyte checkpoint cost kilobytes, so the file is opened unbuffered (a buffered
reader would read ahead into tensor data) and every read asks for exactly what is missing.

`HeaderError` means the shard cannot be used at all (the reference loader would refuse it);
per-tensor defects are returned as problems next to the parsed tensors.
"""

from __future__ import annotations

import functools
import json
import math
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, NamedTuple

#: The reference library (safetensors) refuses headers larger than this.
MAX_HEADER_BYTES = 100_000_000

#: Bits per element of every dtype the format defines.
DTYPE_BITS: dict[str, int] = {
    "BOOL": 8,
    "F4": 4,
    "F6_E2M3": 6,
    "F6_E3M2": 6,
    "U8": 8,
    "I8": 8,
    "F8_E5M2": 8,
    "F8_E4M3": 8,
    "F8_E8M0": 8,
    "F8_E4M3FNUZ": 8,
    "F8_E5M2FNUZ": 8,
    "I16": 16,
    "U16": 16,
    "F16": 16,
    "BF16": 16,
    "I32": 32,
    "U32": 32,
    "F32": 32,
    "C64": 64,
    "F64": 64,
    "I64": 64,
    "U64": 64,
}

FP8_DTYPES = frozenset({"F8_E4M3", "F8_E5M2", "F8_E4M3FNUZ", "F8_E5M2FNUZ"})

#: How many offending tensor names a problem message quotes.
EXAMPLES = 3

Opener = Callable[[Path], BinaryIO]


def open_unbuffered(path: Path) -> BinaryIO:
    """The default opener: raw file I/O, so no read-ahead past what is asked for."""
    return open(path, "rb", buffering=0)


class HeaderError(Exception):
    """The shard's header is unusable; `code` is the machine-readable problem code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class TensorInfo(NamedTuple):
    """One header entry. A NamedTuple: a DeepSeek-V3 checkpoint has ~92k of them."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    begin: int
    end: int

    @property
    def numel(self) -> int:
        return math.prod(self.shape)

    @property
    def nbytes(self) -> int:
        return self.end - self.begin


@dataclass
class ShardHeader:
    path: Path
    file_size: int
    header_len: int
    #: validated raw header entries by tensor name (TensorInfo objects are built on demand:
    #: creating ~92k of them up front was a third of the analysis time of DeepSeek-V3)
    entries: dict[str, dict[str, Any]]
    metadata: dict[str, str] = field(default_factory=dict)
    #: (code, message) for per-tensor defects; the shard is still usable for analysis.
    problems: list[tuple[str, str]] = field(default_factory=list)
    #: per-shard totals, computed while parsing (the checkpoint sums them)
    numel: int = 0
    nbytes: int = 0
    dtypes: dict[str, int] = field(default_factory=dict)
    #: names of fp8 `*.weight` tensors (their scales are checked across the checkpoint)
    fp8_weights: list[str] = field(default_factory=list)

    @property
    def bytes_read(self) -> int:
        return 8 + self.header_len

    @functools.cached_property
    def tensors(self) -> dict[str, TensorInfo]:
        return {
            name: TensorInfo(name, e["dtype"], tuple(e["shape"]), e["data_offsets"][0], e["data_offsets"][1])
            for name, e in self.entries.items()
        }


def _read_exact(fh: BinaryIO, n: int) -> bytes:
    chunks: list[bytes] = []
    remaining = n
    while remaining > 0:
        chunk = fh.read(remaining)
        if not chunk:
            break
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def header_length(name: str, size: int, head: bytes) -> int:
    """N from the 8-byte prefix of a `size`-byte shard, checked (pure; the hub reader shares it)."""
    if len(head) < 8:
        raise HeaderError(
            "header-truncated",
            f"{name}: file is {size} bytes, too short for the 8-byte header length",
        )
    n = int.from_bytes(head[:8], "little")
    if n > MAX_HEADER_BYTES:
        raise HeaderError(
            "header-too-large",
            f"{name}: header claims {n} bytes, over the {MAX_HEADER_BYTES}-byte limit of the "
            "safetensors library (corrupt or not a safetensors file)",
        )
    if 8 + n > size:
        raise HeaderError(
            "header-truncated",
            f"{name}: header claims {n} bytes but the file is only {size} bytes (truncated download?)",
        )
    return n


def read_header(path: Path, opener: Opener = open_unbuffered) -> ShardHeader:
    """Read and validate one shard header; read at most 8 + N bytes of the file."""
    name = path.name
    try:
        st = os.stat(path)
    except OSError as exc:
        raise HeaderError("shard-unreadable", f"{name}: cannot stat ({exc.strerror})") from None
    if not stat.S_ISREG(st.st_mode):
        raise HeaderError("shard-unreadable", f"{name}: not a regular file")
    size = st.st_size
    try:
        with opener(path) as fh:
            n = header_length(name, size, _read_exact(fh, 8))
            raw = _read_exact(fh, n)
    except OSError as exc:
        raise HeaderError("shard-unreadable", f"{name}: cannot read ({exc.strerror})") from None
    if len(raw) < n:
        raise HeaderError("header-truncated", f"{name}: file ended after {len(raw)} of {n} header bytes")
    return parse_header(raw, path=path, file_size=size)


def parse_header(raw: bytes, *, path: Path, file_size: int) -> ShardHeader:
    """Validate header JSON against the file size. Pure apart from the values passed in."""
    name = path.name
    try:
        doc = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise HeaderError("header-not-json", f"{name}: header is not valid JSON ({exc})") from None
    if not isinstance(doc, dict):
        raise HeaderError("header-not-json", f"{name}: header is JSON but not an object")
    data_len = file_size - 8 - len(raw)
    meta_raw = doc.pop("__metadata__", None)
    metadata = {str(k): str(v) for k, v in meta_raw.items()} if isinstance(meta_raw, dict) else {}
    spans: list[tuple[int, int, str]] = []
    bad_entry: list[str] = []
    bad_dtype: list[str] = []
    out_of_range: list[str] = []
    size_mismatch: list[str] = []
    dtypes: dict[str, int] = {}
    fp8_weights: list[str] = []
    total_numel = 0
    total_bytes = 0
    bits_of = DTYPE_BITS
    # One tight loop: this runs ~92k times for a DeepSeek-V3 checkpoint.
    for tname, entry in doc.items():
        try:
            dtype = entry["dtype"]
            shape = entry["shape"]
            begin, end = entry["data_offsets"]
        except (TypeError, KeyError, ValueError):
            bad_entry.append(tname)
            continue
        if (
            type(dtype) is not str
            or type(shape) is not list
            or type(begin) is not int
            or type(end) is not int
        ):
            bad_entry.append(tname)
            continue
        if begin < 0 or end < begin:
            bad_entry.append(tname)
            continue
        numel = 1
        for d in shape:
            if type(d) is not int or d < 0:
                numel = -1
                break
            numel *= d
        if numel < 0:
            bad_entry.append(tname)
            continue
        bits = bits_of.get(dtype)
        if bits is None:
            bad_dtype.append(f"{tname} ({dtype})")
        elif (numel * bits + 7) // 8 != end - begin:
            size_mismatch.append(tname)
        if end > data_len:
            out_of_range.append(tname)
        if end > begin:
            spans.append((begin, end, tname))
        dtypes[dtype] = dtypes.get(dtype, 0) + 1
        total_numel += numel
        total_bytes += end - begin
        if dtype in FP8_DTYPES and tname.endswith(".weight"):
            fp8_weights.append(tname)
    problems: list[tuple[str, str]] = []
    if bad_entry:
        problems.append(
            (
                "header-bad-entry",
                f"{name}: {_count(bad_entry)} lack a valid dtype/shape/data_offsets: {_examples(bad_entry)}",
            )
        )
    if bad_dtype:
        problems.append(("header-unknown-dtype", f"{name}: unknown dtype in {_examples(bad_dtype)}"))
    if out_of_range:
        problems.append(
            (
                "data-offsets-out-of-range",
                f"{name}: {_count(out_of_range)} end past the data buffer ({data_len} bytes): "
                f"{_examples(out_of_range)}",
            )
        )
    if size_mismatch:
        problems.append(
            (
                "data-offsets-size-mismatch",
                f"{name}: {_count(size_mismatch)} whose byte range does not match dtype x shape: "
                f"{_examples(size_mismatch)}",
            )
        )
    for tname in bad_entry:
        del doc[tname]
    overlaps = _overlaps(spans)
    if overlaps:
        problems.append(
            ("data-offsets-overlap", f"{name}: overlapping data_offsets between {_examples(overlaps)}")
        )
    return ShardHeader(
        path=path,
        file_size=file_size,
        header_len=len(raw),
        entries=doc,
        metadata=metadata,
        problems=problems,
        numel=total_numel,
        nbytes=total_bytes,
        dtypes=dtypes,
        fp8_weights=fp8_weights,
    )


def _overlaps(spans: list[tuple[int, int, str]]) -> list[str]:
    """Overlapping (begin, end, name) byte ranges; sorted in C, scanned once."""
    spans.sort()
    found: list[str] = []
    prev_end, prev_name = 0, ""
    for begin, end, tname in spans:
        if begin < prev_end:
            found.append(f"{prev_name} and {tname}")
        if end > prev_end:
            prev_end, prev_name = end, tname
    return found


def _count(items: list[str]) -> str:
    return f"{len(items)} tensor{'s' if len(items) != 1 else ''}"


def _examples(items: list[str]) -> str:
    shown = ", ".join(items[:EXAMPLES])
    return shown + (f" (+{len(items) - EXAMPLES} more)" if len(items) > EXAMPLES else "")
