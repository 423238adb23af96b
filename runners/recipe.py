"""The serve recipe: flags a gate found the model needs to run at all, carried by every later start.

A zero-code rung (runners.analysis.zero_code: `--hf-overrides` to a matching registered class, or
`--model-impl transformers`) that passes a gate is not a workaround for one start: without it the
model does not load. So the gate that passed on it records `data["serve_recipe"]`, and every later
server of the job (real gate, feature probes, capacity, accuracy) starts with the same flags, and
the e2e config and tutorial publish exactly them. Eager / dynamo rungs are NOT recipes: later stages
keep their own settings and their own ladder.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
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


# --------------------------------------------------------------------------- the feature set (issue 13)

_FEATURES_OFF: contextvars.ContextVar[bool] = contextvars.ContextVar("adapt_features_off", default=False)


@dataclass(frozen=True)
class FeatureSet:
    """The switches of the features the probes proved on the shrunk model, for every real-weight
    start after them (real gate, capacity, accuracy): the full-size start confirms or refutes them."""

    features: tuple[str, ...] = ()
    args: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)


def feature_set(previous: Mapping[str, StageResult]) -> FeatureSet:
    """The passed probes' switches, minus any feature a real gate refuted at full size."""
    if _FEATURES_OFF.get():
        return FeatureSet()
    result = previous.get("features")
    passed = result.data.get("passed_switches") if result is not None and result.status == "passed" else None
    if not isinstance(passed, Mapping):
        return FeatureSet()
    gate = previous.get("real-gate")
    checked = gate.data.get("features_at_full_size") if gate is not None else None
    refuted = {
        f for f, row in (checked if isinstance(checked, Mapping) else {}).items()
        if isinstance(row, Mapping) and row.get("status") == "refuted"
    }  # fmt: skip
    names: list[str] = []
    args: list[str] = []
    env: dict[str, str] = {}
    for feature, switch in passed.items():
        if feature in refuted or not isinstance(switch, Mapping):
            continue
        names.append(str(feature))
        args += [str(a) for a in switch.get("args") or []]
        env.update({str(k): str(v) for k, v in (switch.get("env") or {}).items()})
    return FeatureSet(tuple(names), tuple(args), env)


@contextlib.contextmanager
def features_off() -> Iterator[None]:
    """Starts inside run without the feature set (the real gate's retry when the set broke it)."""
    token = _FEATURES_OFF.set(True)
    try:
        yield
    finally:
        _FEATURES_OFF.reset(token)
