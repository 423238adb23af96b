"""Stage B, the real gate (mandatory before delivery): the same start with the checkpoint's weights.

Catches what the dummy gate cannot: weight-key mapping, fp8/fp4 dequant, KV/QK-norm sharding under
TP, load-time stability. Green means more than "answered 200": the served model matches the
transformers reference on the same weights (`data.parity`, vLLM's check_logprobs_close rule; a
mismatch fails as `reference-mismatch`, a reference over its budget is recorded as skipped) and a
chat model's replies are not degenerate unless parity proves the weights produce them
(`data.quality`, `degenerate-output`). See runners/README-gates.md "Reference parity".
"""

from __future__ import annotations

from runners.context import StageContext
from runners.contracts import StageResult
from runners.gates.gate import run_gate


def run(ctx: StageContext) -> StageResult:
    return run_gate(ctx, stage="real-gate", load_format=None)
