"""Load findings of one serve log, for the gate result (`data["load_findings"]`).

`evidence.load_findings` parses the log (pure); this reads the log file and, for a load crash,
names the checkpoint tensor and its header shape (8 + N bytes per shard). vLLM names the tensor
in its own spelling (`layers.1.mlp.down_proj.weight`, the last one it logged before the crash)
or not at all (`Attempted to load weight (torch.Size([128, 192])) into parameter ...`): the first
is matched to the checkpoint name by suffix, the second by the logged shape.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from runners.analysis.safetensors_headers import HeaderError, read_header
from runners.gates import evidence as ev
from runners.serve import read_log_lines

#: Shards whose headers are read to name a tensor (big checkpoints stop early).
MAX_SHARDS = 200


def header_shapes(model_dir: Path) -> dict[str, list[int]]:
    """Checkpoint tensor name -> header shape."""
    out: dict[str, list[int]] = {}
    for shard in sorted(model_dir.glob("*.safetensors"))[:MAX_SHARDS]:
        try:
            header = read_header(shard)
        except HeaderError:
            continue
        out.update({name: list(entry.get("shape") or []) for name, entry in header.entries.items()})
    return out


def _resolve(name: str, shapes: dict[str, list[int]]) -> str | None:
    if name in shapes:
        return name
    hits = [n for n in shapes if n.endswith("." + name)]
    return hits[0] if len(hits) == 1 else None


def load_findings_for(log_path: str | Path | None, model_dir: Path | None) -> list[dict[str, Any]]:
    """The findings of a serve log as JSON-ready dicts (empty when there is no log)."""
    if not log_path or not Path(log_path).is_file():
        return []
    out = [f.as_dict() for f in ev.load_findings(read_log_lines(Path(log_path)))]
    shapes: dict[str, list[int]] | None = None
    for d in out:
        if d["kind"] != "shape-mismatch" or model_dir is None:
            continue
        shapes = header_shapes(model_dir) if shapes is None else shapes
        named = [n for n in (_resolve(t, shapes) for t in d.get("tensors") or []) if n]
        if not named and d.get("loaded"):
            named = [n for n, s in shapes.items() if s == d["loaded"]][:5]
        if named:
            d["tensors"] = named
            d["header_shapes"] = {n: shapes[n] for n in named}
    return out


def with_load_cause(diagnosis: str | None, findings: list[dict[str, Any]]) -> str | None:
    """The diagnosis, plus the tensor and shapes of a load crash when the findings name them."""
    for d in findings:
        if d.get("kind") != "shape-mismatch":
            continue
        names = d.get("tensors") or []
        header = d.get("header_shapes") or {}
        who = ", ".join(f"{n} {header[n]}" if n in header else n for n in names[:3]) or "a checkpoint tensor"
        if d.get("param") is not None:
            cause = f"{who}: shape {d.get('loaded')} in the checkpoint, but vLLM built the parameter as "
            cause += str(d["param"])
        elif d.get("param_dim") is not None:
            cause = (
                f"{who}: {d.get('loaded_dim')} wide in the checkpoint where vLLM's parameter (built from "
                f"config.json) needs {d['param_dim']}"
            )
        else:
            cause = f"{who}: shape {d.get('loaded')} in the checkpoint does not fit the parameter vLLM built"
        return f"{diagnosis}; {cause}" if diagnosis else cause
    return diagnosis
