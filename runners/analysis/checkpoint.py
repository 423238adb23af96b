"""What is in a checkpoint directory: its files, its index, its shard headers, and its defects.

Reads file names, small JSON side files, `model.safetensors.index.json` and the header of each
shard — never tensor data. Defects become `Problem`s (see model.BLOCKING for which ones make the
checkpoint unservable); nothing here raises for bad checkpoint content.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from runners.analysis.config import JsonFileError, read_json
from runners.analysis.model import Problem
from runners.analysis.safetensors_headers import (
    EXAMPLES,
    HeaderError,
    Opener,
    ShardHeader,
    open_unbuffered,
    read_header,
)

#: A directory with more entries than this is not a checkpoint (or is hostile).
MAX_DIR_ENTRIES = 20_000
INDEX_NAME = "model.safetensors.index.json"
_SHARD_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,254}\.safetensors$")

SIDE_JSON = (
    "generation_config.json",
    "tokenizer_config.json",
    "preprocessor_config.json",
    "processor_config.json",
    "video_preprocessor_config.json",
    "chat_template.json",
    "quantize_config.json",
    "quant_config.json",
    "hf_quant_config.json",
    "quant_model_description.json",
)
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer.model",
    "tokenizer_config.json",
    "vocab.json",
    "merges.txt",
    "special_tokens_map.json",
    "added_tokens.json",
)
PROCESSOR_FILES = ("preprocessor_config.json", "processor_config.json", "video_preprocessor_config.json")
QUANT_FILES = (
    "quantize_config.json",
    "quant_config.json",
    "hf_quant_config.json",
    "quant_model_description.json",
)


@dataclass
class CheckpointScan:
    files: dict[str, Any] = field(default_factory=dict)
    side: dict[str, Any] = field(default_factory=dict)
    index_name: str | None = None
    index_total_size: int | None = None
    #: tensor name -> shard, from the index (empty without one)
    weight_map: dict[str, str] = field(default_factory=dict)
    shards_expected: list[str] = field(default_factory=list)
    shards_missing: list[str] = field(default_factory=list)
    headers: list[ShardHeader] = field(default_factory=list)
    #: every tensor name known from the index or a header
    tensor_names: set[str] = field(default_factory=set)
    #: True when every expected shard's header was read
    headers_complete: bool = False
    dtypes: dict[str, int] = field(default_factory=dict)
    parameter_count: int | None = None
    parameter_bytes: int | None = None
    #: bytes read from shards (8 + header length each) and from JSON metadata files
    header_bytes: int = 0
    metadata_bytes: int = 0
    problems: list[Problem] = field(default_factory=list)


def _examples(items: list[str]) -> str:
    shown = ", ".join(items[:EXAMPLES])
    return shown + (f" (+{len(items) - EXAMPLES} more)" if len(items) > EXAMPLES else "")


def list_dir(model_dir: Path) -> list[str]:
    names: list[str] = []
    with os.scandir(model_dir) as it:
        for entry in it:
            names.append(entry.name)
            if len(names) > MAX_DIR_ENTRIES:
                raise OSError(f"more than {MAX_DIR_ENTRIES} entries; not a checkpoint directory")
    return sorted(names)


class CheckpointSource(Protocol):
    """Where the files come from: a local directory here, the hub in runners.analysis.hub.

    Both raise the same errors with the same messages, so a checkpoint read from either place
    yields the same scan (same problems)."""

    def read_json(self, name: str) -> tuple[Any, int]:
        """Parsed document and its size in bytes; raises JsonFileError."""
        ...

    def read_header(self, name: str) -> ShardHeader:
        """Header of one shard (8 + N bytes read); raises HeaderError."""
        ...


@dataclass
class LocalSource:
    model_dir: Path
    opener: Opener = open_unbuffered

    def read_json(self, name: str) -> tuple[Any, int]:
        path = self.model_dir / name
        doc = read_json(path)
        return doc, path.stat().st_size

    def read_header(self, name: str) -> ShardHeader:
        return read_header(self.model_dir / name, self.opener)


def read_side_files(source: CheckpointSource, names: set[str], scan: CheckpointScan) -> None:
    for name in SIDE_JSON:
        if name not in names:
            continue
        try:
            scan.side[name], size = source.read_json(name)
            scan.metadata_bytes += size
        except JsonFileError as exc:
            scan.problems.append(Problem.of(f"side-file-{exc.code.removeprefix('file-')}", exc.message))


def scan_checkpoint(
    model_dir: Path,
    names: list[str],
    opener: Opener = open_unbuffered,
    source: CheckpointSource | None = None,
) -> CheckpointScan:
    """Inspect everything but config.json (see analyze) without reading tensor data.

    `names` are the checkpoint's top-level file names; `source` reads them (default: `model_dir`).
    """
    source = source or LocalSource(model_dir, opener)
    scan = CheckpointScan()
    name_set = set(names)
    shards_on_disk = sorted(n for n in names if n.endswith(".safetensors"))
    index_names = [n for n in names if n.endswith(".safetensors.index.json")]
    scan.files = {
        "config": [n for n in ("config.json", "generation_config.json") if n in name_set],
        "tokenizer": [n for n in TOKENIZER_FILES if n in name_set]
        + [n for n in names if n.endswith(".tiktoken")],
        "processor": [n for n in PROCESSOR_FILES if n in name_set],
        "chat_template": [n for n in names if n in ("chat_template.json", "chat_template.jinja")],
        "remote_code": [n for n in names if n.endswith(".py")],
        "quantization": [n for n in QUANT_FILES if n in name_set],
        "index": None,
        "shards": len(shards_on_disk),
        "pytorch_bin": len([n for n in names if n.endswith((".bin", ".pt", ".pth"))]),
    }
    read_side_files(source, name_set, scan)

    index_name = INDEX_NAME if INDEX_NAME in name_set else (index_names[0] if len(index_names) == 1 else None)
    if index_name:
        scan.files["index"] = index_name
        _read_index(source, index_name, scan)

    expected = sorted(set(scan.weight_map.values())) if scan.weight_map else shards_on_disk
    good: list[str] = []
    bad: list[str] = []
    for s in expected:
        (good if _SHARD_NAME.match(s) and ".." not in s else bad).append(s)
    if bad:
        scan.problems.append(
            Problem.of(
                "bad-shard-name",
                f"{index_name} names shard files that are not plain *.safetensors names in this "
                f"directory: {_examples(bad)}",
            )
        )
    scan.shards_expected = expected
    scan.shards_missing = [s for s in good if s not in name_set]
    if scan.shards_missing:
        missing_set = set(scan.shards_missing)
        missing_tensors = sum(1 for s in scan.weight_map.values() if s in missing_set)
        scan.problems.append(
            Problem.of(
                "missing-shard",
                f"{len(scan.shards_missing)} of {len(expected)} shards named in {index_name} are missing "
                f"({missing_tensors} tensors): {_examples(scan.shards_missing)} — download the checkpoint "
                "again or fix the index",
            )
        )
    if scan.weight_map:
        expected_set = set(expected)
        extra = [s for s in shards_on_disk if s not in expected_set]
        if extra:
            scan.problems.append(
                Problem.of(
                    "shard-not-in-index",
                    f"{len(extra)} *.safetensors files are not in {index_name}; vLLM ignores them: "
                    f"{_examples(extra)}",
                )
            )

    _read_headers(source, [s for s in good if s in name_set], scan)
    scan.headers_complete = (
        bool(expected) and not bad and not scan.shards_missing and (len(scan.headers) == len(expected))
    )
    scan.tensor_names = set(scan.weight_map)
    for h in scan.headers:
        scan.tensor_names.update(h.entries)
    _cross_check(scan, index_name or INDEX_NAME)
    _check_scale_pairs(scan)
    if not expected:
        if scan.files["pytorch_bin"]:
            scan.problems.append(
                Problem.of(
                    "no-safetensors",
                    "only PyTorch *.bin/*.pt weights: headers cannot be inspected without loading them; "
                    "convert to safetensors for a full analysis",
                )
            )
        else:
            scan.problems.append(
                Problem.of(
                    "no-weights",
                    "no weight files: only `--load-format dummy` can start this checkpoint (the real gate "
                    "needs the weights)",
                )
            )
    return scan


def _read_index(source: CheckpointSource, name: str, scan: CheckpointScan) -> None:
    try:
        doc, size = source.read_json(name)
        scan.metadata_bytes += size
    except JsonFileError as exc:
        scan.problems.append(Problem.of("index-invalid", exc.message))
        return
    wm = doc.get("weight_map") if isinstance(doc, dict) else None
    if not isinstance(wm, dict) or not set(map(type, wm.values())) <= {str}:
        scan.problems.append(
            Problem.of("index-invalid", f"{name} has no weight_map of tensor name -> shard file name")
        )
        return
    scan.weight_map = wm
    meta = doc.get("metadata")
    if isinstance(meta, dict):
        total = meta.get("total_size")
        if isinstance(total, int | float) and not isinstance(total, bool):
            scan.index_total_size = int(total)


def _read_headers(source: CheckpointSource, shards: list[str], scan: CheckpointScan) -> None:
    dtypes: Counter[str] = Counter()
    count = 0
    nbytes = 0
    for shard in shards:
        try:
            header = source.read_header(shard)
        except HeaderError as exc:
            scan.problems.append(Problem.of(exc.code, exc.message))
            continue
        scan.header_bytes += header.bytes_read
        scan.headers.append(header)
        for code, message in header.problems:
            scan.problems.append(Problem.of(code, message))
        dtypes.update(header.dtypes)
        count += header.numel
        nbytes += header.nbytes
    scan.dtypes = dict(sorted(dtypes.items()))
    if scan.headers:
        scan.parameter_count = count
        scan.parameter_bytes = nbytes


def _cross_check(scan: CheckpointScan, index_name: str) -> None:
    if not scan.weight_map or not scan.headers:
        return
    wm = scan.weight_map
    by_shard: dict[str, list[str]] = {}
    for tensor, shard in wm.items():
        by_shard.setdefault(shard, []).append(tensor)
    absent: list[str] = []
    moved: list[str] = []
    unlisted: list[str] = []
    for h in scan.headers:
        shard = h.path.name
        present = h.entries
        absent += [f"{t} ({shard})" for t in by_shard.get(shard, ()) if t not in present]
        for t in present:
            listed = wm.get(t)
            if listed != shard:
                if listed is None:
                    unlisted.append(t)
                else:
                    moved.append(f"{t} ({listed} -> {shard})")
    if absent:
        scan.problems.append(
            Problem.of(
                "tensor-not-in-header",
                f"{len(absent)} tensors listed in {index_name} are in no shard header: {_examples(absent)}",
            )
        )
    if moved:
        scan.problems.append(
            Problem.of(
                "index-shard-mismatch",
                f"{len(moved)} tensors are in a different shard than {index_name} says: {_examples(moved)}",
            )
        )
    if unlisted:
        unlisted.sort()
        scan.problems.append(
            Problem.of(
                "tensor-not-in-index",
                f"{len(unlisted)} tensors in shard headers are not in {index_name}: {_examples(unlisted)}",
            )
        )
    if scan.headers_complete and scan.index_total_size and scan.parameter_bytes:
        diff = abs(scan.index_total_size - scan.parameter_bytes)
        if diff > 0.01 * scan.parameter_bytes:
            scan.problems.append(
                Problem.of(
                    "index-total-size-mismatch",
                    f"{index_name} says total_size {scan.index_total_size} but the headers hold "
                    f"{scan.parameter_bytes} bytes of tensors",
                )
            )


#: names that take part in a weight/scale pairing (a scale's partner is X.weight, or
#: X.weight_packed for compressed-tensors int4; MXFP4 pairs X_blocks with X_scales)
_PAIR_SUFFIXES = (".weight_scale_inv", ".weight_scale", "_blocks", "_scales")


def _check_scale_pairs(scan: CheckpointScan) -> None:
    """fp8 weights need their scale (and scales their weight); MXFP4 blocks need their scales."""
    names = scan.tensor_names
    no_scale = [
        w
        for h in scan.headers
        for w in h.fp8_weights
        if w + "_scale_inv" not in names and w + "_scale" not in names
    ]
    orphans: list[str] = []
    mx_no_scales: list[str] = []
    mx_no_blocks: list[str] = []
    for name in names:
        if not name.endswith(_PAIR_SUFFIXES):
            continue
        if name.endswith(".weight_scale_inv"):
            if name[: -len("_scale_inv")] not in names:
                orphans.append(name)
        elif name.endswith(".weight_scale"):
            base = name[: -len("_scale")]
            if base not in names and base + "_packed" not in names:
                orphans.append(name)
        elif name.endswith("_blocks"):
            if name[: -len("_blocks")] + "_scales" not in names:
                mx_no_scales.append(name)
        elif not name.endswith(".scales") and name[: -len("_scales")] + "_blocks" not in names:
            # GPTQ/AWQ `.scales` pair with qweight, not with blocks
            mx_no_blocks.append(name)
    if no_scale:
        no_scale.sort()
        scan.problems.append(
            Problem.of(
                "fp8-weight-without-scale",
                f"{len(no_scale)} fp8 weights have no weight_scale_inv / weight_scale tensor: "
                f"{_examples(no_scale)}",
            )
        )
    if orphans:
        orphans.sort()
        scan.problems.append(
            Problem.of(
                "scale-without-weight",
                f"{len(orphans)} scale tensors have no weight to scale: {_examples(orphans)}",
            )
        )
    if mx_no_scales:
        mx_no_scales.sort()
        scan.problems.append(
            Problem.of(
                "mxfp4-blocks-without-scales",
                f"{len(mx_no_scales)} *_blocks tensors have no *_scales: {_examples(mx_no_scales)}",
            )
        )
    if mx_no_blocks:
        mx_no_blocks.sort()
        scan.problems.append(
            Problem.of(
                "mxfp4-scales-without-blocks",
                f"{len(mx_no_blocks)} *_scales tensors have no *_blocks: {_examples(mx_no_blocks)}",
            )
        )
