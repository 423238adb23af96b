"""The bounded safetensors header reader: what it reads, and every defect it must name."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import BinaryIO

import numpy as np
import pytest
from safetensors import safe_open

from runners.analysis.safetensors_headers import (
    MAX_HEADER_BYTES,
    HeaderError,
    open_unbuffered,
    read_header,
)
from tests.analysis.ckpt import FP8, raw_shard, write_shard


class CountingFile(io.RawIOBase):
    """Wraps the real unbuffered file and counts every byte its reads return."""

    def __init__(self, inner: BinaryIO, counter: dict[str, int]) -> None:
        self.inner = inner
        self.counter = counter

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:  # type: ignore[override]
        data = self.inner.read(n)
        self.counter["bytes"] += len(data)
        self.counter["calls"] += 1
        return data

    def close(self) -> None:
        self.inner.close()
        super().close()


def counting_opener(counter: dict[str, int]):
    def opener(path: Path) -> BinaryIO:
        return CountingFile(open_unbuffered(path), counter)  # type: ignore[return-value]

    return opener


def rchar() -> int:
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("rchar:"):
            return int(line.split()[1])
    raise AssertionError("/proc/self/io has no rchar")


@pytest.fixture
def big_shard(tmp_path: Path) -> Path:
    path = tmp_path / "model.safetensors"
    write_shard(
        path,
        {
            "model.embed_tokens.weight": np.ones((1024, 1024), np.float32),  # 4 MiB of data
            "model.layers.0.mlp.down_proj.weight": (np.zeros((256, 256), np.uint8), FP8),
            "model.layers.0.mlp.down_proj.weight_scale_inv": np.ones((2, 2), np.float32),
        },
        metadata={"format": "pt"},
    )
    return path


def test_reads_the_header_like_the_reference_library(big_shard: Path) -> None:
    h = read_header(big_shard)
    assert h.problems == []
    assert h.metadata == {"format": "pt"}
    with safe_open(str(big_shard), "np") as f:
        assert set(f.keys()) == set(h.tensors)
        for name in f.keys():  # noqa: SIM118 - safe_open is not iterable
            sl = f.get_slice(name)
            assert list(h.tensors[name].shape) == sl.get_shape()
            assert h.tensors[name].dtype == sl.get_dtype()
    assert h.tensors["model.layers.0.mlp.down_proj.weight"].dtype == "F8_E4M3"
    assert h.tensors["model.embed_tokens.weight"].nbytes == 4 * 1024 * 1024


def test_reads_exactly_8_plus_header_bytes_counted_by_the_file(big_shard: Path) -> None:
    counter = {"bytes": 0, "calls": 0}
    h = read_header(big_shard, counting_opener(counter))
    n = int.from_bytes(big_shard.read_bytes()[:8], "little")
    assert h.header_len == n
    assert counter["bytes"] == 8 + n == h.bytes_read
    assert big_shard.stat().st_size > 4 * 1024 * 1024 > 100 * counter["bytes"]


def test_reads_exactly_8_plus_header_bytes_counted_by_the_kernel(big_shard: Path) -> None:
    """/proc/self/io rchar: what the kernel handed this process, buffering included.

    Another thread of the test process (a server started by some other test) could read files at
    the same moment and only ever add to the count, so the smallest of a few measurements is kept.
    """
    n = int.from_bytes(big_shard.read_bytes()[:8], "little")
    deltas = []
    for _ in range(5):
        # reading /proc/self/io is itself counted: measure that cost first
        first = rchar()
        overhead = rchar() - first
        before = rchar()
        read_header(big_shard)
        deltas.append(rchar() - before - overhead)
    delta = min(deltas)
    # +-4: the /proc/self/io text may grow by a digit between the two measurements
    assert abs(delta - (8 + n)) <= 4, f"read {delta} bytes for a {8 + n}-byte header"
    assert delta < big_shard.stat().st_size / 1000


def test_safe_open_reads_the_same_header(big_shard: Path) -> None:
    """The side-by-side baseline of the benchmark also works on a 4 MiB shard."""
    before = rchar()
    with safe_open(str(big_shard), "np") as f:
        keys = list(f.keys())
    assert len(keys) == 3
    assert rchar() - before < 4 * 1024 * 1024


@pytest.mark.parametrize(
    ("header", "data", "length", "code", "words"),
    [
        ("{}", b"", MAX_HEADER_BYTES + 1, "header-too-large", "over the 100000000-byte limit"),
        (
            '{"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}',
            b"",
            10_000,
            "header-truncated",
            "only",
        ),
        ("{not json", b"", None, "header-not-json", "not valid JSON"),
        ("[1, 2]", b"", None, "header-not-json", "not an object"),
        (b"\xff\xfe{}", b"", None, "header-not-json", "not valid JSON"),
    ],
)
def test_fatal_header_defects(tmp_path: Path, header, data, length, code, words) -> None:
    path = tmp_path / "bad.safetensors"
    raw_shard(path, header, data, length)
    with pytest.raises(HeaderError) as info:
        read_header(path)
    assert info.value.code == code
    assert words in info.value.message
    assert "bad.safetensors" in info.value.message


def test_file_shorter_than_the_length_prefix(tmp_path: Path) -> None:
    path = tmp_path / "tiny.safetensors"
    path.write_bytes(b"\x01\x02")
    with pytest.raises(HeaderError) as info:
        read_header(path)
    assert info.value.code == "header-truncated"


def test_too_large_header_is_refused_without_reading_it(tmp_path: Path) -> None:
    path = tmp_path / "huge.safetensors"
    raw_shard(path, "{}", b"", MAX_HEADER_BYTES + 1)
    counter = {"bytes": 0, "calls": 0}
    with pytest.raises(HeaderError):
        read_header(path, counting_opener(counter))
    assert counter["bytes"] == 8


def _entry(dtype: str, shape: list[int], begin: int, end: int) -> dict[str, object]:
    return {"dtype": dtype, "shape": shape, "data_offsets": [begin, end]}


@pytest.mark.parametrize(
    ("tensors", "data_len", "code"),
    [
        ({"a": _entry("F32", [2], 0, 8), "b": _entry("F32", [2], 4, 12)}, 12, "data-offsets-overlap"),
        ({"a": _entry("F32", [4], 0, 16)}, 8, "data-offsets-out-of-range"),
        ({"a": _entry("F32", [3], 0, 8)}, 8, "data-offsets-size-mismatch"),
        ({"a": _entry("Q7", [2], 0, 2)}, 2, "header-unknown-dtype"),
        ({"a": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]}}, 4, "header-bad-entry"),
        ({"a": {"dtype": "F32", "shape": [1], "data_offsets": [8, 4]}}, 8, "header-bad-entry"),
        ({"a": "not an entry"}, 0, "header-bad-entry"),
    ],
)
def test_per_tensor_defects(tmp_path: Path, tensors, data_len, code) -> None:
    path = tmp_path / "x.safetensors"
    raw_shard(path, json.dumps(tensors), b"\0" * data_len)
    h = read_header(path)
    codes = [c for c, _ in h.problems]
    assert codes == [code], h.problems
    message = h.problems[0][1]
    assert "x.safetensors" in message and "a" in message


def test_sub_byte_dtypes_and_empty_tensors_are_valid(tmp_path: Path) -> None:
    path = tmp_path / "f4.safetensors"
    tensors = {
        "w": _entry("F4", [4, 4], 0, 8),
        "empty": _entry("BF16", [0, 8], 8, 8),
        "s": _entry("F8_E8M0", [2], 8, 10),
    }
    raw_shard(path, json.dumps(tensors), b"\0" * 10)
    h = read_header(path)
    assert h.problems == []
    assert h.tensors["w"].numel == 16


def test_not_a_regular_file(tmp_path: Path) -> None:
    d = tmp_path / "dir.safetensors"
    d.mkdir()
    with pytest.raises(HeaderError) as info:
        read_header(d)
    assert info.value.code == "shard-unreadable"
