"""A job's working directory on a runner host: results, logs and rendered artifacts.

Layout (stable; reports link to these paths):
    <root>/<job_id>/results/<stage>.json   StageResult JSON, latest attempt
    <root>/<job_id>/logs/<name>.log        serve and tool logs (bounded size)
    <root>/<job_id>/artifacts/repo/<path>  files to commit, as repo-relative paths
    <root>/<job_id>/artifacts/<file>       report.zh.md, runbook.zh.md, ...
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from runners.contracts import StageResult

_SAFE_PART = re.compile(r"^[A-Za-z0-9._-]{1,128}$")


def default_root() -> Path:
    return Path(os.environ.get("ADAPT_BOT_WORK_ROOT", Path.home() / ".cache" / "adapt-bot" / "work"))


@dataclass(frozen=True)
class Workspace:
    path: Path

    @classmethod
    def for_job(cls, job_id: str, root: Path | None = None) -> Workspace:
        if not _SAFE_PART.match(job_id) or job_id in {".", ".."}:
            raise ValueError(f"job id {job_id!r} is not a safe directory name")
        ws = cls((root or default_root()) / job_id)
        ws.ensure()
        return ws

    @property
    def results(self) -> Path:
        return self.path / "results"

    @property
    def logs(self) -> Path:
        return self.path / "logs"

    @property
    def artifacts(self) -> Path:
        return self.path / "artifacts"

    @property
    def repo_files(self) -> Path:
        """Files to commit, laid out as in the target repository."""
        return self.artifacts / "repo"

    def ensure(self) -> None:
        for d in (self.results, self.logs, self.repo_files):
            d.mkdir(parents=True, exist_ok=True)

    def log_path(self, name: str) -> Path:
        if not _SAFE_PART.match(name):
            raise ValueError(f"log name {name!r} is not a safe file name")
        return self.logs / f"{name}.log"

    def save_result(self, result: StageResult) -> Path:
        path = self.results / f"{result.stage}.json"
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(result.model_dump_json(indent=2), encoding="utf-8")
        tmp.replace(path)  # atomic: a reader never sees half a result
        return path

    def load_result(self, stage: str) -> StageResult | None:
        path = self.results / f"{stage}.json"
        if not path.is_file():
            return None
        return StageResult.model_validate_json(path.read_text(encoding="utf-8"))

    def load_results(self) -> dict[str, StageResult]:
        out: dict[str, StageResult] = {}
        for path in sorted(self.results.glob("*.json")):
            r = StageResult.model_validate_json(path.read_text(encoding="utf-8"))
            out[r.stage] = r
        return out
