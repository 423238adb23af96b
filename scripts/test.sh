#!/usr/bin/env bash
# The README's test command: set up (idempotent), then lint, type-check and run the whole suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/ruff check bot runners tests benchmarks scripts
.venv/bin/ruff format --check bot runners tests benchmarks scripts
.venv/bin/mypy
.venv/bin/python -m pytest "$@"
