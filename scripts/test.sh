#!/usr/bin/env bash
# The README's test command: set up (idempotent), then lint, type-check and run the whole suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/ruff check bot runners tests benchmarks scripts
.venv/bin/ruff format --check bot runners tests benchmarks scripts
.venv/bin/mypy
.venv/bin/lint-imports --no-cache   # the trust boundary (pyproject.toml [tool.importlinter])
# branch coverage of bot/ and runners/ (in-process code; subprocesses are not measured)
.venv/bin/python -m pytest --cov --cov-report=term --durations=30 "$@"
