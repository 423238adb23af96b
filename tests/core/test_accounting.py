"""Process accounting: lifetimes recorded per workspace; overlapping probes counted once."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from runners.accounting import intervals, timed, total_seconds, union_seconds


@pytest.mark.parametrize(
    ("spans", "expected"),
    [
        ([], 0.0),
        ([(0.0, 10.0)], 10.0),
        ([(0.0, 10.0), (20.0, 25.0)], 15.0),
        ([(0.0, 10.0), (5.0, 12.0)], 12.0),  # two probes in parallel
        ([(5.0, 12.0), (0.0, 10.0), (11.0, 11.5)], 12.0),
        ([(0.0, 10.0), (2.0, 3.0)], 10.0),
    ],
)
def test_union_of_intervals(spans: list[tuple[float, float]], expected: float) -> None:
    assert union_seconds(spans) == pytest.approx(expected)


def test_timed_records_a_real_lifetime(tmp_path: Path) -> None:
    with timed(tmp_path, "sleeper"):
        time.sleep(0.2)
    (span,) = intervals(tmp_path)
    assert 0.19 <= span[1] - span[0] < 5
    assert total_seconds(tmp_path) == pytest.approx(span[1] - span[0])
    assert total_seconds(tmp_path / "nothing-here") == 0.0
