"""Load findings of one serve log, for the gate result (`data["load_findings"]`).

`evidence.load_findings` parses the log (pure); this reads the log file and, when a load crash
logs only the shapes (`Attempted to load weight (torch.Size([128, 192])) into parameter ...`),
names the checkpoint tensor(s) with that shape from the shard headers (8 + N bytes per shard).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from runners.analysis.safetensors_headers import HeaderError, read_header
from runners.gates import evidence as ev
from runners.serve import read_log_lines

#: Shards whose headers are read to name a tensor (a crash names one tensor; big checkpoints stop early).
MAX_SHARDS = 200


def tensors_with_shape(model_dir: Path, shape: list[int], limit: int = 5) -> list[str]:
    """Checkpoint tensors whose header shape is `shape` (at most `limit`), in shard order."""
    found: list[str] = []
    want = list(shape)
    for shard in sorted(model_dir.glob("*.safetensors"))[:MAX_SHARDS]:
        try:
            header = read_header(shard)
        except HeaderError:
            continue
        for name, entry in header.entries.items():
            if entry.get("shape") == want:
                found.append(name)
                if len(found) >= limit:
                    return found
    return found


def load_findings_for(log_path: str | Path | None, model_dir: Path | None) -> list[dict[str, Any]]:
    """The findings of a serve log as JSON-ready dicts (empty when there is no log)."""
    if not log_path or not Path(log_path).is_file():
        return []
    out = [f.as_dict() for f in ev.load_findings(read_log_lines(Path(log_path)))]
    for d in out:
        if d["kind"] == "shape-mismatch" and not d.get("tensors") and model_dir is not None:
            d["tensors"] = tensors_with_shape(model_dir, d.get("loaded") or [])
    return out


def with_load_cause(diagnosis: str | None, findings: list[dict[str, Any]]) -> str | None:
    """The diagnosis, plus the tensor and shapes of a load crash when the findings name them."""
    for d in findings:
        if d.get("kind") != "shape-mismatch":
            continue
        names = d.get("tensors") or []
        who = ", ".join(names[:3]) if names else "a checkpoint tensor"
        param = d.get("param")
        cause = (
            f"{who} has shape {d.get('loaded')} in the checkpoint but vLLM built the parameter as {param}"
            if param is not None
            else f"{who} has shape {d.get('loaded')} in the checkpoint, which vLLM's parameter does not take"
        )
        if diagnosis and cause in diagnosis:
            return diagnosis
        return f"{diagnosis}; {cause}" if diagnosis else cause
    return diagnosis
