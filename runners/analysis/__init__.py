"""Checkpoint analysis without loading weights (issue 3; facts in reference/adaptation.md §5).

`analyze(model_dir)` reads config and side JSON files, the safetensors index, and 8 + N header
bytes per shard; it parses vLLM's / vllm-ascend's registries as source. It raises
`AnalysisError` only when there is nothing to analyse (no directory, no usable config.json);
every defect of the checkpoint itself is a `Problem` in the result.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from runners.analysis import features as feat
from runners.analysis import kv, sizing
from runners.analysis import remote_code as rc
from runners.analysis import zero_code as zc
from runners.analysis.checkpoint import CheckpointScan, list_dir, scan_checkpoint
from runners.analysis.config import ConfigView, JsonFileError, quantization, read_json
from runners.analysis.model import BLOCKING, AnalysisResult, Moe, Problem
from runners.analysis.registry import (
    Registries,
    RegistryError,
    is_multimodal_arch,
    load_registries,
    support_for,
    transformers_has,
)
from runners.analysis.safetensors_headers import Opener, open_unbuffered
from runners.analysis.shapes import check_missing, check_shapes, header_tensors
from runners.analysis.tokens import ids_beyond_vocab


class AnalysisError(Exception):
    """Nothing to analyse; the message is one line saying why and what to do."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


GENERATION_KEYS = ("temperature", "top_p", "top_k", "repetition_penalty", "max_new_tokens", "do_sample")


def analyze(
    model_dir: Path,
    *,
    vllm_root: Path | None = None,
    vllm_ascend_root: Path | None = None,
    vllm_python: Path | None = None,
    opener: Opener = open_unbuffered,
    registries: Registries | None = None,
) -> AnalysisResult:
    """Analyse one checkpoint directory. `opener`/`registries` exist for tests and benchmarks."""
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise AnalysisError("not-a-directory", f"{model_dir} is not a directory")
    try:
        names = list_dir(model_dir)
    except OSError as exc:
        raise AnalysisError("unreadable", f"{model_dir}: cannot list ({exc})") from None
    if "config.json" not in names:
        raise AnalysisError(
            "config-missing", f"{model_dir} has no config.json: not a Hugging Face checkpoint directory"
        )
    try:
        raw_cfg = read_json(model_dir / "config.json")
    except JsonFileError as exc:
        code = "config-not-json" if exc.code == "not-json" else "config-invalid"
        raise AnalysisError(code, f"cannot analyse: {exc.message}") from None
    if not isinstance(raw_cfg, dict):
        raise AnalysisError("config-invalid", "cannot analyse: config.json is JSON but not an object")
    if registries is None:
        try:
            registries = load_registries(vllm_root, vllm_ascend_root, vllm_python)
        except RegistryError as exc:
            raise AnalysisError("bad-registry-root", str(exc)) from None
    scan = scan_checkpoint(model_dir, names, opener)
    read_tokenizer_files(model_dir, names, scan)
    return build_result(model_dir, ConfigView(raw_cfg), scan, registries)


#: tokenizer.json of a large vocabulary (Gemma's is ~33 MB) is bigger than other side files.
TOKENIZER_JSON_LIMIT = 64 * 1024 * 1024


def read_tokenizer_files(model_dir: Path, names: list[str], scan: CheckpointScan) -> None:
    """tokenizer.json and added_tokens.json into `scan.side`, for the token-id check."""
    for name, limit in (("tokenizer.json", TOKENIZER_JSON_LIMIT), ("added_tokens.json", 1024 * 1024)):
        if name not in names:
            continue
        try:
            scan.side[name] = read_json(model_dir / name, limit)
            scan.metadata_bytes += (model_dir / name).stat().st_size
        except JsonFileError as exc:
            message = f"{exc.message}: token ids not checked"
            scan.problems.append(Problem.of("tokenizer-file-unreadable", message))


def build_result(model_dir: Path, cfg: ConfigView, scan: CheckpointScan, regs: Registries) -> AnalysisResult:
    """Combine config, scan and registries into the result (pure apart from registry file reads)."""
    problems: list[Problem] = []
    arch = cfg.architecture
    if arch is None:
        problems.append(
            Problem.of(
                "architectures-missing",
                "config.json has no `architectures` list: vLLM cannot pick a model class; add e.g. "
                '"architectures": ["Qwen3ForCausalLM"]',
            )
        )
    problems.extend(scan.problems)

    moe_d = cfg.moe()
    moe = Moe(**moe_d) if moe_d else None  # type: ignore[arg-type]
    attention, attention_detail = cfg.attention()
    quant = quantization(cfg.top, scan.side)

    modalities = []
    if cfg.has_vision:
        modalities.append("image")
    if cfg.has_audio:
        modalities.append("audio")
    mm_arch = is_multimodal_arch(arch, regs.vllm)
    multimodal = bool(modalities) or bool(mm_arch)
    if multimodal and not modalities:
        modalities.append("image")

    tensors_known = bool(scan.weight_map) or bool(scan.headers)
    mtp_layers = cfg.mtp_layers()
    has_mtp = feat.mtp_weights(scan.tensor_names, cfg.num_hidden_layers, tensors_known)
    has_vision = feat.vision_weights(scan.tensor_names, tensors_known) if multimodal else None

    if scan.headers_complete and scan.parameter_bytes is not None:
        count: int | None = scan.parameter_count
        nbytes: int | None = scan.parameter_bytes
        estimated, source = False, "headers"
    else:
        count = sizing.estimate_parameters(cfg)
        if scan.index_total_size:
            nbytes, source = scan.index_total_size, "index"
        else:
            per = sizing.bytes_per_parameter(cfg, quant)
            nbytes, source = (int(count * per) if count else None), "config"
        estimated = True

    tokenizer_cfg = scan.side.get("tokenizer_config.json")
    chat_template = bool(scan.files.get("chat_template")) or (
        isinstance(tokenizer_cfg, dict) and bool(tokenizer_cfg.get("chat_template"))
    )
    remote_files = list(scan.files.get("remote_code", []))
    tok_auto = isinstance(tokenizer_cfg, dict) and isinstance(tokenizer_cfg.get("auto_map"), dict)
    gen = scan.side.get("generation_config.json")
    generation = {k: gen[k] for k in GENERATION_KEYS if isinstance(gen, dict) and k in gen}

    auto_map = cfg.top.get("auto_map") if isinstance(cfg.top.get("auto_map"), dict) else None
    support = support_for(arch, cfg.model_type, auto_map, regs)
    in_tf = (
        transformers_has(regs.transformers_dir, cfg.model_type, arch)
        if arch and support.vllm.verdict not in ("registered", "unknown")
        else None
    )
    need = rc.assess(
        arch=arch,
        model_type=cfg.model_type,
        auto_map=auto_map,
        tokenizer_config=tokenizer_cfg,
        support=support,
        transformers_defines_arch=in_tf,
        transformers_dir=regs.transformers_dir,
    )
    zero = zero_code_plan(cfg, scan, regs, support, in_tf, auto_map, quant, attention_detail)
    problems.extend(check_shapes(cfg, header_tensors(scan.headers)))
    if scan.headers_complete:
        problems.extend(check_missing(cfg, scan.tensor_names))
    problems.extend(ids_beyond_vocab(cfg.int_("vocab_size"), scan.side))
    if multimodal and not scan.files.get("processor"):
        problems.append(
            Problem.of(
                "processor-files-missing",
                f"multimodal checkpoint ({', '.join(modalities)}) without preprocessor_config.json or "
                "processor_config.json: vLLM cannot build the image/audio processor, so multimodal requests "
                "(and a start that profiles the encoder) fail; copy the processor files from the original "
                "model repository",
            )
        )
    files: dict[str, Any] = dict(scan.files)
    files.update(
        shards_expected=len(scan.shards_expected),
        shards_missing=len(scan.shards_missing),
        shards_read=len(scan.headers),
        header_bytes=scan.header_bytes,
        metadata_bytes=scan.metadata_bytes,
    )
    text = cfg.text
    kv_layout = kv.layout(cfg)
    return AnalysisResult(
        model_path=str(model_dir),
        served_model_name=model_dir.name,
        architecture=arch,
        architectures=cfg.architectures,
        model_type=cfg.model_type,
        text_model_type=text.get("model_type") if text is not cfg.top else None,
        nested_config=cfg.nested_key,
        remote_code=cfg.remote_code or tok_auto,
        remote_code_files=remote_files,
        remote_code_required=need.required,
        remote_code_reason=need.reason,
        multimodal=multimodal,
        modalities=modalities,
        moe=moe,
        mtp_layers=mtp_layers,
        mtp_weights=has_mtp,
        attention=attention,
        attention_detail=attention_detail,
        rope=cfg.rope(),
        quantization=quant,
        max_position_embeddings=cfg.max_position_embeddings(),
        hidden_size=cfg.hidden_size,
        num_hidden_layers=cfg.num_hidden_layers,
        num_attention_heads=cfg.num_attention_heads,
        num_key_value_heads=cfg.num_key_value_heads,
        head_dim=cfg.head_dim,
        vocab_size=cfg.int_("vocab_size"),
        dtype=cfg.torch_dtype,
        tie_word_embeddings=cfg.get("tie_word_embeddings")
        if isinstance(cfg.get("tie_word_embeddings"), bool)
        else None,
        chat_template=chat_template,
        parameter_count=count,
        parameter_bytes=nbytes,
        parameter_estimated=estimated,
        parameter_source=source if nbytes is not None else None,
        dtypes=scan.dtypes,
        support=support,
        features=feat.decide(
            moe=moe,
            mtp_layers=mtp_layers,
            has_mtp_weights=has_mtp,
            multimodal=multimodal,
            modalities=modalities,
            has_vision_weights=has_vision,
        ),
        suggested_tp=sizing.suggest_tp(nbytes, cfg.num_attention_heads),
        kv_bytes_per_token=kv_layout.bytes_per_token() if kv_layout is not None else None,
        kv_cache=kv_layout.model_dump(mode="json") if kv_layout is not None else None,
        files=files,
        generation_defaults=generation,
        problems=problems,
        zero_code=zero,
    )


def zero_code_plan(
    cfg: ConfigView,
    scan: CheckpointScan,
    regs: Registries,
    support: Any,
    in_tf: bool | None,
    auto_map: dict[str, Any] | None,
    quant: dict[str, Any] | None,
    attention_detail: dict[str, Any],
) -> zc.ZeroCodePlan | None:
    """The zero-code rungs for an architecture vLLM does not register (None when it does, or when
    no registry was found to tell)."""
    if regs.vllm is None or support.vllm.verdict in ("registered", "unknown", "out-of-tree-plugin"):
        return None
    reg = regs.vllm
    names = [a for table in reg.tables.values() for a in table]
    tensors_known = bool(scan.weight_map) or bool(scan.headers)
    match = zc.structural_match(
        architecture=cfg.architecture,
        model_type=cfg.model_type,
        weight_names=list(scan.tensor_names) if tensors_known else None,
        is_registered=lambda a: reg.find(a) is not None,
        registered=names,
        causal_lm_names=zc.transformers_causal_lm_names(regs.transformers_dir),
    )
    tf = zc.transformers_rung(
        architecture=cfg.architecture,
        in_transformers=in_tf,
        auto_map=auto_map,
        quant_method=(quant or {}).get("method"),
        attention_detail=attention_detail,
        match=match,
    )
    return zc.plan(match=match, tf=tf)


__all__ = ["BLOCKING", "AnalysisError", "AnalysisResult", "Problem", "analyze"]
