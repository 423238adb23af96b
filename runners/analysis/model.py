"""The analysis contract: `adapt-bot analyze --json` prints `AnalysisResult.model_dump(mode="json")`.

The gates read this JSON from `ctx.previous["analyze"].data`; the key names of issue 3 are a
contract (architecture, model_type, remote_code, multimodal, moe, mtp_layers, mtp_weights,
attention, quantization, max_position_embeddings, parameter_count, parameter_bytes, dtypes,
support, features, suggested_tp, problems). Extra keys are additive.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from runners.analysis.zero_code import ZeroCodePlan

FeatureApplicability = Literal["applicable", "not-applicable", "checkpoint-missing"]

VllmVerdict = Literal[
    "registered",
    "previously-supported",
    "out-of-tree-plugin",
    "transformers-backend-candidate",
    "unsupported",
    "unknown",
]

#: Problems that make the checkpoint unservable as it is (the analyze stage fails on them).
#: Everything else is reported but left to the gates to confirm.
BLOCKING: dict[str, str] = {
    "config-missing": "bad-config",
    "config-not-json": "bad-config",
    "config-invalid": "bad-config",
    "architectures-missing": "bad-config",
    "missing-shard": "checkpoint-incomplete",
    "tensor-not-in-header": "checkpoint-incomplete",
    #: a decoder-layer weight config.json implies is in no shard (vLLM would serve it unloaded)
    "tensor-missing": "checkpoint-incomplete",
    "bad-shard-name": "checkpoint-corrupt",
    "index-invalid": "checkpoint-corrupt",
    "shard-unreadable": "checkpoint-corrupt",
    "header-too-large": "checkpoint-corrupt",
    "header-truncated": "checkpoint-corrupt",
    "header-not-json": "checkpoint-corrupt",
    "header-bad-entry": "checkpoint-corrupt",
    "header-unknown-dtype": "checkpoint-corrupt",
    "data-offsets-out-of-range": "checkpoint-corrupt",
    "data-offsets-overlap": "checkpoint-corrupt",
    "data-offsets-size-mismatch": "checkpoint-corrupt",
    #: a tensor shape contradicts config.json: the real weights cannot load into the model vLLM builds
    "shape-mismatch": "shape-mismatch",
    #: the tokenizer emits special token ids the embedding has no row for
    "tokenizer-special-id-beyond-vocab": "tokenizer-vocab-mismatch",
    #: the checkpoint needs its own Python and the job did not opt in (set by the stage, not analyze())
    "remote-code-not-allowed": "remote-code-not-allowed",
}

Severity = Literal["blocking", "warning"]


class Problem(BaseModel):
    code: str
    message: str
    #: True when the checkpoint cannot be served as it is (see BLOCKING).
    blocking: bool = False
    #: "blocking" (the job stops before any server start) or "warning" (reported; the gates confirm).
    severity: Severity = "warning"

    @classmethod
    def of(cls, code: str, message: str) -> Problem:
        blocking = code in BLOCKING
        severity: Severity = "blocking" if blocking else "warning"
        return cls(code=code, message=message, blocking=blocking, severity=severity)


class Moe(BaseModel):
    experts: int
    experts_per_token: int | None = None
    shared_experts: int | None = None


class Feature(BaseModel):
    status: FeatureApplicability
    reason: str


class VllmSupport(BaseModel):
    verdict: VllmVerdict
    module: str | None = None
    class_name: str | None = None
    #: Registry table the architecture was found in (e.g. _TEXT_GENERATION_MODELS).
    table: str | None = None
    #: Set when the architecture resolved through another name (suffix swap).
    via: str | None = None
    #: Last vLLM version that supported it (previously-supported).
    until: str | None = None
    #: Where the out-of-tree plugin lives (out-of-tree-plugin).
    plugin: str | None = None
    reason: str
    #: The registry file the verdict was read from (None = no registry found).
    source: str | None = None
    version: str | None = None


class AscendSupport(BaseModel):
    verdict: Literal["registered", "not-registered", "unknown"]
    module: str | None = None
    class_name: str | None = None
    reason: str
    source: str | None = None
    version: str | None = None


class Support(BaseModel):
    #: Overall: vllm-ascend's own registration wins, else vLLM's verdict.
    verdict: VllmVerdict
    #: "vllm-ascend", "vllm" or None (unknown).
    source: str | None
    reason: str
    vllm: VllmSupport
    vllm_ascend: AscendSupport


class SuggestedTp(BaseModel):
    #: None: does not fit one node at 64 GB per NPU with KV headroom (quantize or go multi-node).
    a2: int | None
    a3: int | None
    basis_bytes: int | None
    reason: str


class AnalysisResult(BaseModel):
    model_path: str
    served_model_name: str
    architecture: str | None
    architectures: list[str] = Field(default_factory=list)
    model_type: str | None
    text_model_type: str | None = None
    #: Key the language-model config was nested under (text_config / llm_config), if any.
    nested_config: str | None = None
    remote_code: bool
    remote_code_files: list[str] = Field(default_factory=list)
    #: Serving needs the checkpoint's own code (`--trust-remote-code`): True, False, or None when
    #: no vLLM registry was found to tell (see remote_code.py). `remote_code_reason` says why.
    remote_code_required: bool | None = False
    remote_code_reason: str = ""
    multimodal: bool
    modalities: list[str] = Field(default_factory=list)
    moe: Moe | None
    mtp_layers: int
    #: True/False from tensor names (index or headers); None when neither is present.
    mtp_weights: bool | None
    attention: str | None
    attention_detail: dict[str, Any] = Field(default_factory=dict)
    rope: dict[str, Any] | None = None
    quantization: dict[str, Any] | None
    max_position_embeddings: int | None
    hidden_size: int | None = None
    num_hidden_layers: int | None = None
    num_attention_heads: int | None = None
    num_key_value_heads: int | None = None
    head_dim: int | None = None
    vocab_size: int | None = None
    dtype: str | None = None
    tie_word_embeddings: bool | None = None
    chat_template: bool = False
    parameter_count: int | None
    parameter_bytes: int | None
    #: True when count/bytes were estimated from config (no complete headers).
    parameter_estimated: bool
    #: Where parameter_bytes came from: "headers", "index", "config".
    parameter_source: str | None = None
    dtypes: dict[str, int] = Field(default_factory=dict)
    support: Support
    features: dict[str, Feature]
    suggested_tp: SuggestedTp
    #: KV bytes per token of the layers that keep every token, config dtype, TP 1 (runners.analysis.kv).
    kv_bytes_per_token: int | None = None
    #: The KV layout behind it (full / window / state layers, heads, MLA latent, notes).
    kv_cache: dict[str, Any] | None = None
    files: dict[str, Any] = Field(default_factory=dict)
    generation_defaults: dict[str, Any] = Field(default_factory=dict)
    problems: list[Problem] = Field(default_factory=list)
    #: Hub pre-flight (runners.analysis.hub): the repo and the commit SHA it was read at; every
    #: later stage uses that revision. None for a local checkout.
    hub_id: str | None = None
    revision: str | None = None
    #: Zero-code rungs for an architecture vLLM does not register (runners.analysis.zero_code);
    #: None when vLLM registers it or no registry was found.
    zero_code: ZeroCodePlan | None = None

    @property
    def blocking_problems(self) -> list[Problem]:
        return [p for p in self.problems if p.blocking]
