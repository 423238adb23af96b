"""Run the transformers reference for parity: a subprocess in the serving environment, bounded.

The bot never imports torch/transformers (runner hosts run untrusted model code; the serving
environment has them). `start_reference()` decides first whether the reference may run at all:

- memory: need ≈ parameters × bytes per parameter in the reference dtype × `FACTOR` + `RUNTIME_GB`
  (torch + transformers themselves, ~0.5 GB measured). Parameters come from the analysis result
  (`parameter_count`), else from the safetensors headers (element counts), else from the
  safetensors file sizes. Over the budget (`ADAPT_BOT_REFERENCE_BUDGET_GB`, else the profile's
  `reference_budget_gb` if it has one, else half of the host's available memory) the check is
  SKIPPED with the plain sentence "reference skipped: needs N GB, budget M GB";
- remote code: `--trust-remote-code` only when the job allows it (`JobOptions.trust_remote_code`);
  a checkpoint whose config needs its own code is skipped with that reason otherwise.

Then it starts `runners/gates/reference_script.py` (argv list, own process group, clean env, offline)
and returns at once, so the reference overlaps the server's start; `ReferenceRun.wait()` bounds it
in time (`ADAPT_BOT_REFERENCE_TIMEOUT_S`, default 600 s) and in memory (the group's resident memory
is polled; over the budget it is killed and reported as skipped), and honours cancellation.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SCRIPT = Path(__file__).resolve().parent / "reference_script.py"

BUDGET_ENV = "ADAPT_BOT_REFERENCE_BUDGET_GB"
TIMEOUT_ENV = "ADAPT_BOT_REFERENCE_TIMEOUT_S"
DEFAULT_TIMEOUT_S = 600.0
#: weights × FACTOR: activations, KV cache of a few short prompts, allocator slack
FACTOR = 1.3
#: torch + transformers + tokenizer in the reference process (peak RSS on a tiny model: ~0.5 GB)
RUNTIME_GB = 1.0
GB = 1e9

DTYPE_BYTES = {
    "float32": 4,
    "float": 4,
    "fp32": 4,
    "bfloat16": 2,
    "float16": 2,
    "half": 2,
    "bf16": 2,
    "fp16": 2,
}
#: safetensors header dtype -> bytes
ST_BYTES = {
    "F64": 8,
    "F32": 4,
    "BF16": 2,
    "F16": 2,
    "I64": 8,
    "I32": 4,
    "I16": 2,
    "I8": 1,
    "U8": 1,
    "BOOL": 1,
}
#: torch's names in config.json -> the script's --dtype choices
_DTYPE_NAMES = {"float32": "float32", "bfloat16": "bfloat16", "float16": "float16"}

#: Fixed prompts (deterministic; short, so the reference stays cheap). Mixed script on purpose.
PROMPTS: tuple[str, ...] = (
    "The capital of France is",
    "def fibonacci(n):",
    "Hello, my name is",
    "1, 2, 3, 4,",
)
MAX_TOKENS = 8
TOP_K = 5


# --------------------------------------------------------------------------- pure decisions


def serve_dtype(argv_template: Sequence[str], defaults: Mapping[str, Any], config: Mapping[str, Any]) -> str:
    """The dtype the server runs with: the value after `--dtype` in the profile's argv (template
    filled from the profile defaults); `auto`/absent = the checkpoint's own dtype (config.json)."""
    value = "auto"
    for i, a in enumerate(argv_template):
        if a == "--dtype" and i + 1 < len(argv_template):
            value = str(argv_template[i + 1])
        elif a.startswith("--dtype="):
            value = a.split("=", 1)[1]
    if value.startswith("{") and value.endswith("}"):
        value = str(defaults.get(value[1:-1], "auto"))
    value = value.lower()
    if value in ("float", "fp32"):
        value = "float32"
    if value in ("half", "fp16"):
        value = "float16"
    if value in ("bf16",):
        value = "bfloat16"
    if value == "auto":
        raw = config.get("torch_dtype") or config.get("dtype")
        text = config.get("text_config")
        if not raw and isinstance(text, Mapping):
            raw = text.get("torch_dtype") or text.get("dtype")
        value = _DTYPE_NAMES.get(str(raw), "float32") if raw else "float32"
        # vLLM serves a float32 checkpoint in bfloat16 on accelerators only; CPU keeps float32
    return value if value in _DTYPE_NAMES else "float32"


def need_gb(parameter_count: int, dtype: str) -> float:
    return parameter_count * DTYPE_BYTES.get(dtype, 4) * FACTOR / GB + RUNTIME_GB


def parameter_count_from_headers(model_dir: Path) -> tuple[int | None, int]:
    """(element count from the safetensors headers or None, total bytes of the files)."""
    count = 0
    total = 0
    files = sorted(model_dir.glob("*.safetensors"))
    known = bool(files)
    for f in files:
        try:
            total += f.stat().st_size
            with f.open("rb") as fh:
                n = int.from_bytes(fh.read(8), "little")
                if n <= 0 or n > 100_000_000:
                    known = False
                    continue
                header = json.loads(fh.read(n))
        except (OSError, ValueError):
            known = False
            continue
        for name, meta in header.items():
            if name == "__metadata__" or not isinstance(meta, dict):
                continue
            elems = 1
            for d in meta.get("shape") or []:
                elems *= int(d)
            count += elems
    for f in model_dir.glob("*.bin"):
        with contextlib.suppress(OSError):
            total += f.stat().st_size
            known = False
    return (count if known else None), total


def needs_remote_code(config: Mapping[str, Any]) -> bool:
    """config.json maps the model to code shipped with the checkpoint (auto_map of a model class)."""
    auto = config.get("auto_map")
    return isinstance(auto, Mapping) and any(str(k).startswith("AutoModel") for k in auto)


def budget_gb(environ: Mapping[str, str], profile: Any, meminfo: str | None = None) -> tuple[float, str]:
    """(budget in GB, where it came from)."""
    raw = environ.get(BUDGET_ENV)
    if raw:
        try:
            return float(raw), BUDGET_ENV
        except ValueError:
            pass
    prof_value = getattr(profile, "reference_budget_gb", None)
    if isinstance(prof_value, (int, float)) and prof_value > 0:
        return float(prof_value), "profile reference_budget_gb"
    avail = _mem_available_bytes(meminfo)
    if avail is not None:
        return round(avail / 2 / GB, 2), "half of the host's available memory"
    return 8.0, "default 8 GB"


def _mem_available_bytes(meminfo: str | None) -> int | None:
    text = meminfo
    if text is None:
        try:
            text = Path("/proc/meminfo").read_text()
        except OSError:
            return None
    for line in text.splitlines():
        if line.startswith("MemAvailable:"):
            parts = line.split()
            if len(parts) >= 2 and parts[1].isdigit():
                return int(parts[1]) * 1024
    return None


def reference_python(vllm_cmd: Sequence[str]) -> Path:
    """The serving environment's python from the profile's vLLM command."""
    first = Path(vllm_cmd[0])
    return first if first.name.startswith("python") else first.parent / "python"


def skip_sentence(need: float, budget: float) -> str:
    return f"reference skipped: needs {need:.1f} GB, budget {budget:.1f} GB"


# --------------------------------------------------------------------------- the run


@dataclass
class ReferenceOutcome:
    """ok: the script ran and returned streams. Otherwise `skip_reason` says why (never a pass)."""

    ok: bool
    skip_reason: str | None = None
    prompts: list[dict[str, Any]] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)


@dataclass
class ReferenceRun:
    prompts: list[str]
    max_tokens: int
    top_k: int
    dtype: str
    info: dict[str, Any]
    argv: list[str] = field(default_factory=list)
    proc: subprocess.Popen[bytes] | None = None
    out_path: Path | None = None
    stderr_path: Path | None = None
    budget_gb: float = 0.0
    timeout_s: float = DEFAULT_TIMEOUT_S
    started: float = 0.0
    skip_reason: str | None = None
    _outcome: ReferenceOutcome | None = None

    def wait(self, cancel: Any = None) -> ReferenceOutcome:
        """Block until the reference finished (or was stopped); the result is kept for later calls."""
        if self._outcome is not None:
            return self._outcome
        if self.proc is None:
            self._outcome = ReferenceOutcome(
                False, self.skip_reason or "reference not started", info=self.info
            )
            return self._outcome
        reason, peak = watch_group(
            self.proc, budget_gb=self.budget_gb, deadline=self.started + self.timeout_s,
            timeout_s=self.timeout_s, cancel=cancel,
        )  # fmt: skip
        if reason is not None:
            self.stop()
        self.info["wall_s"] = round(time.monotonic() - self.started, 2)
        self.info["peak_group_rss_gb"] = round(peak / GB, 3)
        self._outcome = self._read(reason)
        self._cleanup()
        return self._outcome

    def stop(self) -> None:
        """Kill the reference group if it still runs (the gate ends, the budget or the time ran out)."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(10)
        self._cleanup()

    def _read(self, reason: str | None) -> ReferenceOutcome:
        if reason is not None:
            return ReferenceOutcome(False, reason, info=self.info)
        data: dict[str, Any] = {}
        if self.out_path is not None:
            with contextlib.suppress(OSError, ValueError):
                data = json.loads(self.out_path.read_text(encoding="utf-8"))
        for key in ("loading", "load_s", "generate_s", "peak_rss_mb", "total_s"):
            if key in data:
                self.info[key] = data[key]
        if data.get("ok") and isinstance(data.get("prompts"), list):
            return ReferenceOutcome(True, None, prompts=list(data["prompts"]), info=self.info)
        err = str(data.get("error") or "") or self._stderr_tail()
        return ReferenceOutcome(
            False,
            f"reference failed (exit {self.proc.returncode if self.proc else '?'}): {err[:500]}",
            info=self.info,
        )

    def _stderr_tail(self) -> str:
        if self.stderr_path is None:
            return "no output"
        try:
            lines = self.stderr_path.read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError:
            return "no output"
        tail = [ln for ln in lines if ln.strip()][-3:]
        return " | ".join(tail) or "no output"

    def _cleanup(self) -> None:
        """Remove the scratch files (prompts, output); the log stays where the caller put it."""
        if self.out_path is not None:
            tmp = self.out_path.parent
            with contextlib.suppress(OSError):
                for p in tmp.iterdir():
                    if p != self.stderr_path:
                        p.unlink()
                if not any(tmp.iterdir()):
                    tmp.rmdir()


def watch_group(
    proc: subprocess.Popen[bytes], *, budget_gb: float, deadline: float, timeout_s: float, cancel: Any
) -> tuple[str | None, int]:
    """Wait for a reference process group within its bounds (the gate's parity reference and the
    accuracy stage's transformers run): (why it must be stopped or None, peak group RSS in bytes).
    The caller stops the group when a reason comes back."""
    peak = 0
    while proc.poll() is None:
        rss = _group_rss_bytes(proc.pid)
        peak = max(peak, rss)
        if rss > budget_gb * GB:
            return f"reference stopped: it used {rss / GB:.1f} GB, over the budget {budget_gb:.1f} GB", peak
        if time.monotonic() > deadline:
            return f"reference skipped: no result within {timeout_s:.0f} s", peak
        if cancel is not None and cancel.is_set():
            return "reference stopped: the job was cancelled", peak
        time.sleep(0.2)
    return None, peak


def _group_rss_bytes(pgid: int) -> int:
    total = 0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry.name}/stat").read_text()
            rest = stat.rsplit(")", 1)[-1].split()
            if len(rest) < 22 or int(rest[2]) != pgid:
                continue
            total += int(rest[21]) * os.sysconf("SC_PAGE_SIZE")  # rss in pages
        except (OSError, ValueError):
            continue
    return total


def start_reference(
    *,
    model_dir: Path,
    config: Mapping[str, Any],
    facts: Mapping[str, Any],
    profile: Any,
    trust_remote_code: bool,
    scratch: Path,
    log_path: Path | None = None,
    vllm_cmd: Sequence[str] | None = None,
    environ: Mapping[str, str] | None = None,
    prompts: Sequence[str] = PROMPTS,
    max_tokens: int = MAX_TOKENS,
    top_k: int = TOP_K,
) -> ReferenceRun:
    """Decide, and start the reference process if it may run. Never raises for a refusal: the
    returned run carries `skip_reason` and `wait()` reports it."""
    env_in = os.environ if environ is None else environ
    dtype = serve_dtype(profile.serve.argv, profile.serve.defaults, config)
    count = facts.get("parameter_count")
    source = "analysis parameter_count"
    total_bytes = 0
    if not isinstance(count, int) or count <= 0:
        count, total_bytes = parameter_count_from_headers(model_dir)
        source = "safetensors headers"
        if count is None:
            # file sizes: assume 2-byte weights (conservative for float32 reference: ×2)
            count = total_bytes // 2
            source = "checkpoint file sizes"
    need = need_gb(count, dtype)
    budget, budget_source = budget_gb(env_in, profile)
    try:
        timeout_s = float(env_in.get(TIMEOUT_ENV) or DEFAULT_TIMEOUT_S)
    except ValueError:
        timeout_s = DEFAULT_TIMEOUT_S
    info: dict[str, Any] = {
        "need_gb": round(need, 2),
        "budget_gb": budget,
        "budget_source": budget_source,
        "parameter_count": count,
        "parameter_source": source,
        "factor": FACTOR,
        "runtime_gb": RUNTIME_GB,
        "dtype": dtype,
        "device": "cpu",
        "timeout_s": timeout_s,
        "trust_remote_code": trust_remote_code,
    }
    run = ReferenceRun(
        prompts=list(prompts),
        max_tokens=max_tokens,
        top_k=top_k,
        dtype=dtype,
        info=info,
        budget_gb=budget,
        timeout_s=timeout_s,
    )
    if need > budget:
        run.skip_reason = skip_sentence(need, budget)
        return run
    if needs_remote_code(config) and not trust_remote_code:
        run.skip_reason = (
            "reference skipped: config.json maps the model to code shipped with the checkpoint "
            "(auto_map) and the job does not allow remote code"
        )
        return run
    python = reference_python(vllm_cmd or profile.vllm_command())
    if not python.exists():
        run.skip_reason = f"reference skipped: no python at {python} (the serving environment's)"
        return run
    scratch.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="reference-", dir=scratch))
    prompts_path = tmp / "prompts.json"
    prompts_path.write_text(json.dumps(list(prompts)), encoding="utf-8")
    run.out_path = tmp / "out.json"
    run.stderr_path = log_path or tmp / "stderr.log"
    run.stderr_path.parent.mkdir(parents=True, exist_ok=True)
    info["log_path"] = str(run.stderr_path)
    argv = [
        str(python),
        "-I",
        str(SCRIPT),
        "--model",
        str(model_dir),
        "--dtype",
        dtype,
        "--max-tokens",
        str(max_tokens),
        "--top-k",
        str(top_k),
        "--prompts",
        str(prompts_path),
        "--out",
        str(run.out_path),
    ]
    if trust_remote_code:
        argv.append("--trust-remote-code")
    env = {k: env_in[k] for k in ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR") if k in env_in}
    env.update(
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        HF_HUB_DISABLE_TELEMETRY="1",
        TOKENIZERS_PARALLELISM="false",
        PYTHONHASHSEED="0",
        TRANSFORMERS_VERBOSITY="error",
    )
    run.argv = argv
    info["argv"] = argv
    run.started = time.monotonic()
    with open(run.stderr_path, "wb") as err:
        run.proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=err,
            stderr=err,
            env=env,
            cwd=str(tmp),
            start_new_session=True,
        )
    return run
