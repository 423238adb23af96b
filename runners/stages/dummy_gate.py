"""Stage A, the dummy gate: `--load-format dummy` (architecture, operator and API paths; fast).

Dummy weights are NOT equivalent to real ones: a pass here says nothing about weight mapping, and
the smoke reply's quality (`data.quality`) is recorded only, never judged (random weights).
"""

from __future__ import annotations

from runners.context import StageContext
from runners.contracts import StageResult
from runners.gates.gate import run_gate


def run(ctx: StageContext) -> StageResult:
    return run_gate(ctx, stage="dummy-gate", load_format="dummy")
