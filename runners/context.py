"""What a stage receives. Each stage is `run(ctx: StageContext) -> StageResult` and does no
GitHub I/O: it reads the checkpoint, runs processes, writes into its workspace."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from runners.contracts import JobOptions, StageResult
from runners.workspace import Workspace


class CancelToken(Protocol):
    """A flag the job sets; long waits poll it (at least every second) and stop."""

    def is_set(self) -> bool: ...


class LocalCancel:
    """In-process cancel flag (CLI runs, tests)."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def set(self) -> None:
        self._event.set()

    def is_set(self) -> bool:
        return self._event.is_set()


def _no_progress(_line: str) -> None:
    return None


@dataclass
class StageContext:
    job_id: str
    options: JobOptions
    #: Resolved local checkpoint directory (validated by the analysis stage's resolver).
    model_path: Path
    workspace: Workspace
    #: runners.profile.Profile (typed Any here so contracts stay import-light).
    profile: Any
    #: Results of earlier stages (from this run or stored from a previous one).
    previous: dict[str, StageResult] = field(default_factory=dict)
    cancel: CancelToken = field(default_factory=LocalCancel)
    #: Short human-readable progress lines ("waiting for /v1/models (35 s)").
    progress: Callable[[str], None] = _no_progress
    attempt: int = 1
    #: Checkout of the target repository (vllm-ascend) the artifacts are written for, if any.
    target_repo: Path | None = None
    #: vLLM / vllm-ascend source roots for the registry verdict (None = find an installed vllm).
    vllm_root: Path | None = None
    vllm_ascend_root: Path | None = None
