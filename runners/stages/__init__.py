"""Stage registry: name -> "module:function". Each function is `run(ctx) -> StageResult`.

Declared once as data so the pipeline, the CLI and the Celery routing agree on the names.
Modules are imported lazily: a control-plane process never imports runner-only code.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from runners.context import StageContext
    from runners.contracts import StageResult

STAGE_FUNCTIONS: dict[str, str] = {
    "analyze": "runners.stages.analyze:run",
    "dummy-gate": "runners.stages.dummy_gate:run",
    "real-gate": "runners.stages.real_gate:run",
    "features": "runners.stages.features:run",
    "capacity": "runners.stages.capacity:run",
    "accuracy": "runners.stages.accuracy:run",
    "artifacts": "runners.stages.artifacts:run",
}


def stage_function(stage: str) -> Callable[[StageContext], StageResult]:
    try:
        target = STAGE_FUNCTIONS[stage]
    except KeyError:
        raise ValueError(f"unknown stage {stage!r}; known: {', '.join(STAGE_FUNCTIONS)}") from None
    module, func = target.split(":")
    fn: Callable[[StageContext], StageResult] = getattr(importlib.import_module(module), func)
    return fn
