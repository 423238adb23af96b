#!/usr/bin/env bash
# The README's first command: set up (idempotent, cached) and run the whole job end to end on
# the embedded defaults — a generated tiny model, a generated vllm-ascend-shaped repo, the cpu
# runner profile, no GitHub credentials, no external Redis. Output goes to ./demo/.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/adapt-bot demo --out "${1:-demo}"
