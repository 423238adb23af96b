"""Which features the checkpoint makes applicable (pure; the gates verify them on hardware).

Version questions (flashcomm1 removed on newer vllm-ascend) and deployment choices (TP>1) are
decided later by the runner profile and the job options; this only reads the checkpoint.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from runners.analysis.model import Feature, Moe

_MTP_NAME = re.compile(r"(?:^|\.)(?:mtp|nextn|mtp_layers?)(?:\.|_|$)|(?:^|\.)(?:eh_proj|enorm|hnorm)\.", re.M)
_MTP_WORDS = ("mtp", "nextn", "eh_proj", "enorm", "hnorm")
_LAYER = re.compile(r"(?:^|\.)layers\.(\d+)\.", re.M)
_VISION_NAME = re.compile(
    r"(?:^|\.)(?:visual|vision_tower|vision_model|vision_encoder|vit|vpm|image_encoder|"
    r"audio_tower|audio_encoder|multi_modal_projector|mm_projector|mlp1)\.",
    re.M,
)


def mtp_weights(names: Iterable[str], num_hidden_layers: int | None, known: bool) -> bool | None:
    """MTP tensors present? `mtp`/`nextn` names, or a layer index past the last decoder layer.

    Works on all names joined into one string: one regex pass instead of ~92k calls.
    """
    if not known:
        return None
    joined = "\n".join(names)
    if any(word in joined for word in _MTP_WORDS) and _MTP_NAME.search(joined):
        return True
    if num_hidden_layers is not None:
        indices = {int(i) for i in _LAYER.findall(joined)}
        return bool(indices) and max(indices) >= num_hidden_layers
    return False


def vision_weights(names: Iterable[str], known: bool) -> bool | None:
    if not known:
        return None
    return _VISION_NAME.search("\n".join(names)) is not None


def decide(
    *,
    moe: Moe | None,
    mtp_layers: int,
    has_mtp_weights: bool | None,
    multimodal: bool,
    modalities: list[str],
    has_vision_weights: bool | None,
) -> dict[str, Feature]:
    out: dict[str, Feature] = {
        "aclgraph": Feature(
            status="applicable",
            reason="graph mode (ACLGraph) is on by default on Ascend for every model; the gates verify "
            "capture and replay",
        )
    }
    if moe:
        out["expert_parallel"] = Feature(
            status="applicable",
            reason=f"MoE with {moe.experts} routed experts (top-{moe.experts_per_token}): "
            "--enable-expert-parallel applies",
        )
        out["flashcomm1"] = Feature(
            status="applicable",
            reason="MoE checkpoint: flashcomm1 applies when deployed with TP>1 (a deployment choice) and "
            "on vllm-ascend versions that still have it (decided by the runner profile)",
        )
    else:
        out["expert_parallel"] = Feature(
            status="not-applicable", reason="dense model: config declares no experts"
        )
        out["flashcomm1"] = Feature(
            status="not-applicable", reason="dense model: flashcomm1 only applies to MoE with TP>1"
        )
    if mtp_layers > 0 and has_mtp_weights is False:
        out["mtp"] = Feature(
            status="checkpoint-missing",
            reason=f"config declares {mtp_layers} MTP layer(s) but no mtp/nextn tensors (or layers past "
            "the last decoder layer) are in the weights",
        )
    elif mtp_layers > 0:
        seen = "MTP tensors present" if has_mtp_weights else "weights not inspected (no index or headers)"
        out["mtp"] = Feature(status="applicable", reason=f"config declares {mtp_layers} MTP layer(s); {seen}")
    elif has_mtp_weights:
        out["mtp"] = Feature(
            status="applicable",
            reason="config declares no MTP layers, but the weights carry mtp tensors (architecture-implied "
            "MTP, e.g. Qwen3-Next)",
        )
    else:
        out["mtp"] = Feature(
            status="not-applicable", reason="config declares no MTP layers (num_nextn_predict_layers)"
        )
    if multimodal and has_vision_weights is False:
        out["multimodal"] = Feature(
            status="checkpoint-missing",
            reason="config has a vision/audio part but no vision or audio tensors are in the weights",
        )
    elif multimodal:
        out["multimodal"] = Feature(
            status="applicable", reason=f"multimodal checkpoint ({', '.join(modalities) or 'vision'})"
        )
    else:
        out["multimodal"] = Feature(
            status="not-applicable", reason="text-only: no vision_config/audio_config"
        )
    return out
