"""The one error of the serve lifecycle, shared by every step of it.

`ServeError.reason` is "timeout" | "crashed" | "cancelled" | "port-busy" | "lease-timeout" |
"bad-profile" | "candidate-install" | a signature reason such as "not-registered"; it carries a
diagnosis, the next step and log evidence with line numbers, so a gate can report a failed start
without reading the log again.
"""

from __future__ import annotations

from pathlib import Path

from runners.contracts import Evidence


class ServeError(RuntimeError):
    """The server did not become ready (or a start precondition failed)."""

    def __init__(
        self,
        reason: str,
        diagnosis: str,
        *,
        next_step: str | None = None,
        evidence: list[Evidence] | None = None,
        log_path: Path | None = None,
        argv: list[str] | None = None,
        signature: str | None = None,
        elapsed_s: float | None = None,
    ) -> None:
        super().__init__(f"{reason}: {diagnosis}")
        self.reason = reason
        self.diagnosis = diagnosis
        self.next_step = next_step
        self.evidence = evidence or []
        self.log_path = log_path
        self.argv = argv or []
        self.signature = signature
        self.elapsed_s = elapsed_s
