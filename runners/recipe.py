"""The serve recipe: flags a gate found the model needs to run at all, carried by every later start.

A zero-code rung (runners.analysis.zero_code: `--hf-overrides` to a matching registered class, or
`--model-impl transformers`) that passes a gate is not a workaround for one start: without it the
model does not load. So the gate that passed on it records `data["serve_recipe"]`, and every later
server of the job (real gate, feature probes, capacity, accuracy) starts with the same flags, and
the e2e config and tutorial publish exactly them. Eager / dynamo rungs are NOT recipes: later stages
keep their own settings and their own ladder.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from runners.contracts import StageResult

#: latest first: the real gate's recipe (inherited and confirmed with real weights) wins
_SOURCES = ("real-gate", "dummy-gate")


def serve_recipe(previous: Mapping[str, StageResult]) -> dict[str, Any] | None:
    """The recipe of the latest passed gate among the earlier results, or None."""
    for stage in _SOURCES:
        result = previous.get(stage)
        if result is None or result.status != "passed":
            continue
        recipe = result.data.get("serve_recipe")
        if isinstance(recipe, dict) and isinstance(recipe.get("args"), list):
            return recipe
    return None


def recipe_args(previous: Mapping[str, StageResult]) -> list[str]:
    recipe = serve_recipe(previous)
    return [str(a) for a in recipe["args"]] if recipe else []
