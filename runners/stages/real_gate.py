"""Stage B, the real gate (mandatory before delivery): the same start with the checkpoint's weights.

Catches what the dummy gate cannot: weight-key mapping, fp8/fp4 dequant, KV/QK-norm sharding under
TP, load-time stability.
"""

from __future__ import annotations

from runners.context import StageContext
from runners.contracts import StageResult
from runners.gates.gate import run_gate


def run(ctx: StageContext) -> StageResult:
    return run_gate(ctx, stage="real-gate", load_format=None)
