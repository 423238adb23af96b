"""When is a started server READY, and if it never is, why not.

READY = the process is alive AND `GET /v1/models` answers 200 listing the served name, polled every
`timeouts.poll_s` (at most 0.25 s); "Application startup complete" in the log alone is not ready.
Slow is not failed: only the process dying, the ready timeout or a cancel (polled at the same
pace) ends the wait, each as a `ServeError` with the log lines that explain it.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import httpx

from runners.contracts import Evidence
from runners.gates import evidence as ev
from runners.profile import Profile
from runners.serve.errors import ServeError
from runners.serve.logsink import LogSink
from runners.serve.plan import ServePlan


def _excerpt(
    lines: Sequence[str], *, real_weights: bool, start: int = 0
) -> tuple[ev.SignatureHit | None, ev.LogHit | None]:
    return ev.explain(lines, start=start, real_weights=real_weights)


def _failure_evidence(
    lines: Sequence[str], log_path: Path, *, real_weights: bool, start: int = 0
) -> tuple[list[Evidence], ev.SignatureHit | None, ev.LogHit | None]:
    sig, err = _excerpt(lines, real_weights=real_weights, start=start)
    out: list[Evidence] = []
    if sig is not None:
        out.append(sig.hit.evidence(str(log_path)))
    if err is not None and (sig is None or err.line != sig.hit.line):
        out.append(err.evidence(str(log_path)))
    return out, sig, err


def models_listing(client: httpx.Client, base_url: str, timeout: float) -> list[str] | None:
    """Served model ids from GET /v1/models, or None when not (yet) answering 200."""
    try:
        r = client.get(f"{base_url}/v1/models", timeout=timeout)
    except httpx.HTTPError:
        return None
    if r.status_code != 200:
        return None
    try:
        return [str(m.get("id")) for m in r.json().get("data", [])]
    except (ValueError, AttributeError):
        return None


def wait_ready(
    proc: subprocess.Popen[bytes],
    sink: LogSink,
    plan: ServePlan,
    profile: Profile,
    *,
    cancel: Any,
    progress: Callable[[str], None],
    real_weights: bool,
    started: float,
    ready_timeout_s: float | None = None,
) -> float:
    """Poll until READY; returns the monotonic time READY was seen. Raises ServeError otherwise."""
    base_url = f"http://{plan.host}:{plan.port}"
    timeout_s = profile.timeouts.ready_s if ready_timeout_s is None else ready_timeout_s
    deadline = started + timeout_s
    poll = min(profile.timeouts.poll_s, 0.25)
    last_note = started
    with httpx.Client(trust_env=False) as client:
        while True:
            now = time.monotonic()
            if cancel is not None and cancel.is_set():
                raise ServeError(
                    "cancelled",
                    "the job was cancelled while the server was starting",
                    log_path=plan.log_path,
                    argv=plan.argv,
                    elapsed_s=now - started,
                )
            if proc.poll() is not None:
                sink.wait_drained(3)
                lines = sink.snapshot()
                evs, sig, err = _failure_evidence(lines, plan.log_path, real_weights=real_weights)
                what = (
                    sig.signature.meaning
                    if sig
                    else (err.text.strip() if err else "no error line in the log")
                )
                raise ServeError(
                    sig.signature.reason if sig else "crashed",
                    f"the server exited with code {proc.returncode} after {now - started:.0f} s before "
                    f"becoming ready: {ev.clip_line(what, 300)}",
                    next_step=sig.signature.next_step
                    if sig
                    else "read the log excerpt; run the fallback ladder",
                    evidence=evs,
                    log_path=plan.log_path,
                    argv=plan.argv,
                    signature=sig.signature.id if sig else None,
                    elapsed_s=now - started,
                )
            ids = models_listing(client, base_url, timeout=min(2.0, max(0.2, deadline - now)))
            if ids is not None and plan.served_name in ids:
                return time.monotonic()
            now = time.monotonic()
            if now >= deadline:
                lines = sink.snapshot()
                evs, sig, _err = _failure_evidence(lines, plan.log_path, real_weights=real_weights)
                last = next((ln for ln in reversed(lines) if ln.strip()), None)
                if last is not None:
                    evs.append(
                        Evidence(
                            kind="log", text=ev.clip_line(last), log_path=str(plan.log_path), line=len(lines)
                        )
                    )
                listed = "" if ids is None else f" (/v1/models answered but listed {ids})"
                raise ServeError(
                    "timeout",
                    f"not ready after {timeout_s:.0f} s (process alive, GET /v1/models never listed "
                    f"{plan.served_name!r}){listed}",
                    next_step="raise the profile's timeouts.ready_s if the host is just slow; "
                    "otherwise read the last log lines for where start-up stopped",
                    evidence=evs,
                    log_path=plan.log_path,
                    argv=plan.argv,
                    signature=sig.signature.id if sig else None,
                    elapsed_s=now - started,
                )
            if now - last_note >= 5:
                progress(f"waiting for /v1/models… {now - started:.0f} s")
                last_note = now
            time.sleep(poll)
