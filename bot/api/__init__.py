"""HTTP surface: webhook intake, jobs (JSON + page), health and metrics."""
