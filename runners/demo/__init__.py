"""Demo-only generators: tiny checkpoints and a vllm-ascend-shaped sample repository.

Used by `adapt-bot demo`, the tests and the benchmarks; never imported by production code
(import-linter's contract in pyproject.toml keeps it so).
"""
