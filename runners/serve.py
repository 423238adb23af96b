"""The serve lifecycle: start `vllm serve` as a maintainer would, know when it is READY, always stop it.

API (used by the gates, feature probes, capacity and accuracy stages):

    from runners.serve import served, chat_completion, ServeError

    with served(ctx, load_format="dummy", extra_args=["--enforce-eager"], log_name="dummy-gate") as srv:
        srv.base_url        # "http://127.0.0.1:PORT"
        srv.served_name     # the --served-model-name
        srv.log_path        # Path of the bounded serve log (workspace logs/<log_name>.log)
        srv.argv            # the exact argv list that was started (no shell anywhere)
        srv.ready_after_s   # seconds from start to READY
        reply = chat_completion(srv, "say hi", max_tokens=16)   # ChatReply: ok, status, content, ...

`served()` raises `ServeError` (reason "timeout" | "crashed" | "cancelled" | "port-busy" |
"lease-timeout" | a signature reason such as "not-registered") carrying a diagnosis, the next step
and log evidence with line numbers, when the server never becomes ready. On exit (normal or not)
the whole process group is terminated (SIGTERM, SIGKILL after the grace period) and checked empty.

Rules this module implements (issue "gates and feature probes"):
- start in a new session (own process group), clean environment + profile env, free port,
  output to a size-bounded log, the profile's working directory;
- before a start: kill servers of OURS left by an earlier attempt (pgids recorded in the
  workspace and verified by a per-start tag in the process environment), and make sure the port is free;
- READY = process alive AND `GET /v1/models` 200 listing the served name (polled every
  `timeouts.poll_s` ≤ 0.25 s); "Application startup complete" alone is not ready; slow is not failed,
  death or the stage timeout is;
- cancellation (`ctx.cancel`) is polled at least every 0.25 s, in waits and during requests.
"""

from __future__ import annotations

import collections
import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import httpx

from runners import accounting, candidate
from runners.analysis.preflight import remote_code_flags
from runners.context import StageContext
from runners.contracts import Evidence
from runners.gates import evidence as ev
from runners.lease import LeaseError, acquire
from runners.profile import Profile, ProfileError, cache_dir, fill
from runners.recipe import recipe_args

#: Log lines after which the server should answer /v1/models (used for the notice-latency figure).
READY_LINE_PATTERNS = ("Application startup complete",)
SERVE_TAG_VAR = "ADAPT_BOT_SERVE_ID"
PGID_FILE = "serve-pgids.json"


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


# --------------------------------------------------------------------------- plan (pure)


@dataclass
class ServePlan:
    argv: list[str]
    env: dict[str, str]
    cwd: Path
    host: str
    port: int
    served_name: str
    log_path: Path
    log_max_bytes: int
    tag: str
    devices: list[str] = field(default_factory=list)


def _suggested_tp(ctx: StageContext, profile: Profile) -> int | None:
    """The analysis' TP suggestion for this profile's hardware ({"a2": N, "a3": M, ...} or an int)."""
    facts = ctx.previous.get("analyze")
    raw = facts.data.get("suggested_tp") if facts is not None else None
    if isinstance(raw, dict):
        key = "a3" if "a3" in (profile.hardware or profile.name).lower() else "a2"
        raw = raw.get(key)
    return raw if isinstance(raw, int) and raw > 0 else None


def template_values(
    ctx: StageContext,
    profile: Profile,
    *,
    port: int,
    scratch: Mapping[str, Path],
    overrides: Mapping[str, Any],
) -> dict[str, Any]:
    suggested_tp = _suggested_tp(ctx, profile)
    values: dict[str, Any] = dict(profile.serve.defaults)
    if ctx.options.max_model_len:
        values["max_model_len"] = ctx.options.max_model_len
    tp = ctx.options.tp or (suggested_tp if profile.platform != "cpu" else None)
    if tp:
        values["tp"] = tp
    values.update(
        model=str(ctx.model_path),
        model_name=ctx.model_path.name,
        host=profile.serve.host,
        port=port,
        workspace=str(ctx.workspace.path),
        cache=str(cache_dir()),
        profile=profile.name,
    )
    values.update({k: str(v) for k, v in scratch.items()})
    values.update(overrides)
    values["served_name"] = ctx.options.served_model_name or fill(profile.serve.served_name, values)
    # never above the model's own limit (vLLM refuses to start): clamp, and say why
    if values.get("max_model_len") is not None:
        from runners.max_len import clamp, limit_of_dir

        try:
            requested = int(values["max_model_len"])
        except (TypeError, ValueError):
            requested = None
        value, note = clamp(requested, limit_of_dir(ctx.model_path))
        if note is not None:
            values["max_model_len"] = value
            values["max_model_len_note"] = note
    return values


def build_argv(profile: Profile, values: Mapping[str, Any], vllm_cmd: Sequence[str]) -> list[str]:
    argv: list[str] = []
    for element in profile.serve.argv:
        if element == "{vllm}":
            argv.extend(vllm_cmd)
        else:
            argv.append(fill(element, dict(values)))
    return argv


_CREDENTIAL = re.compile(
    r"(^ADAPT_BOT_|^REDIS|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL|_KEY$|^AWS_|^GH_|^GITHUB_)"
)


def is_credential_name(name: str) -> bool:
    """Environment names a model server must never see (the runner's Redis URL, hub tokens, ...)."""
    return _CREDENTIAL.search(name.upper()) is not None


def build_env(
    profile: Profile,
    values: Mapping[str, Any],
    *,
    devices: Sequence[str],
    extra_env: Mapping[str, str] | None,
    tag: str,
    environ: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """A clean environment: only the inherited names, then the profile's, then the probe's.

    The model server runs checkpoint code, so it never inherits a credential: names that look
    like one (`is_credential_name`) are dropped even when a profile lists them.
    """
    base = os.environ if environ is None else environ
    env = {k: base[k] for k in profile.serve.inherit_env if k in base and not is_credential_name(k)}
    env.update({k: fill(v, dict(values)) for k, v in profile.serve.env.items()})
    if profile.devices.visibility_var and devices:
        env[profile.devices.visibility_var] = ",".join(devices)
    env.update(extra_env or {})
    env[SERVE_TAG_VAR] = tag
    return env


def with_extra_args(argv: list[str], extra: Sequence[str]) -> list[str]:
    """Append probe flags; a flag already present (e.g. --enforce-eager) is not repeated."""
    out = list(argv)
    i = 0
    extra = list(extra)
    while i < len(extra):
        flag = extra[i]
        takes_value = i + 1 < len(extra) and not extra[i + 1].startswith("--")
        if flag.startswith("--") and not takes_value and flag in out:
            i += 1
            continue
        out.append(flag)
        if takes_value:
            out.append(extra[i + 1])
            i += 1
        i += 1
    return out


# --------------------------------------------------------------------------- process table (Linux /proc)


def group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes whose process group is `pgid`."""
    out: list[int] = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as f:
                stat = f.read().decode("utf-8", "replace")
        except OSError:
            continue
        rest = stat.rsplit(")", 1)[-1].split()
        if len(rest) >= 3 and rest[0] != "Z" and int(rest[2]) == pgid:
            out.append(int(entry.name))
    return out


def _environ_of(pid: int) -> dict[str, str]:
    try:
        raw = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return {}
    env: dict[str, str] = {}
    for item in raw.split(b"\0"):
        k, sep, v = item.partition(b"=")
        if sep:
            env[k.decode("utf-8", "replace")] = v.decode("utf-8", "replace")
    return env


def kill_group(pgid: int, grace_s: float) -> list[int]:
    """SIGTERM the group, SIGKILL after `grace_s`; returns the pids still alive afterwards."""
    if not group_members(pgid):
        return []
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        if not group_members(pgid):
            return []
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        left = group_members(pgid)
        if not left:
            return []
        time.sleep(0.05)
    return group_members(pgid)


def _pgid_file(ctx: StageContext) -> Path:
    return ctx.workspace.path / PGID_FILE


def _read_pgids(path: Path) -> list[dict[str, Any]]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    return [d for d in data if isinstance(d, dict)] if isinstance(data, list) else []


def _write_pgids(path: Path, items: list[dict[str, Any]]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(items), encoding="utf-8")
    tmp.replace(path)


_pgid_lock = threading.Lock()


def _record_pgid(ctx: StageContext, pgid: int, tag: str, log_name: str) -> None:
    with _pgid_lock:
        path = _pgid_file(ctx)
        items = _read_pgids(path)
        items.append({"pgid": pgid, "tag": tag, "log": log_name, "started": time.time()})
        _write_pgids(path, items)


def _forget_pgid(ctx: StageContext, tag: str) -> None:
    with _pgid_lock:
        path = _pgid_file(ctx)
        _write_pgids(path, [d for d in _read_pgids(path) if d.get("tag") != tag])


def reap_stale_servers(ctx: StageContext, grace_s: float, *, keep: set[str] | None = None) -> list[int]:
    """Kill servers OUR earlier attempts left behind. A recorded pgid is only signalled when a
    member still carries the tag we gave it (pgids are reused; someone else's group is never hit)."""
    killed: list[int] = []
    with _pgid_lock:
        path = _pgid_file(ctx)
        items = _read_pgids(path)
    survivors = []
    for item in items:
        tag = str(item.get("tag", ""))
        if keep and tag in keep:
            survivors.append(item)
            continue
        pgid = int(item.get("pgid", 0))
        members = group_members(pgid) if pgid > 1 else []
        if any(_environ_of(pid).get(SERVE_TAG_VAR) == tag for pid in members):
            kill_group(pgid, grace_s)
            killed.append(pgid)
    with _pgid_lock:
        current = _read_pgids(path)
        live_tags = {str(s.get("tag")) for s in survivors}
        new_tags = {str(d.get("tag")) for d in current} - {str(d.get("tag")) for d in items}
        _write_pgids(path, [d for d in current if str(d.get("tag")) in live_tags | new_tags])
    return killed


# --------------------------------------------------------------------------- ports


def port_is_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def pick_port(host: str, preferred: int, tries: int = 50) -> int:
    if preferred == 0:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind((host, 0))
            return int(s.getsockname()[1])
    for port in range(preferred, preferred + tries):
        if port_is_free(host, port):
            return port
    raise ServeError(
        "port-busy",
        f"ports {preferred}..{preferred + tries - 1} on {host} are all in use",
        next_step="stop the other servers on this host, or set serve.port: 0 in the profile",
    )


# --------------------------------------------------------------------------- bounded log


class LogSink:
    """Copies the server's output to a file, at most `max_bytes`: the head is kept as written, and
    past the cap the last lines are kept in memory and appended at close behind a marker line (a
    crash at the end of a long log still shows). Also timestamps the first ready line."""

    def __init__(self, path: Path, max_bytes: int) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self.written = 0
        self.dropped = 0
        self.lines: list[str] = []
        self.tail: collections.deque[str] = collections.deque()
        self.tail_bytes = 0
        self.ready_line_at: float | None = None
        self.ready_line_no: int | None = None
        self._lock = threading.Lock()
        self._rx = [ev._rx(p) for p in READY_LINE_PATTERNS]
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file: IO[str] = open(path, "w", encoding="utf-8")  # noqa: SIM115 - closed in close()
        self._thread: threading.Thread | None = None

    def follow(self, stream: IO[bytes]) -> None:
        self._thread = threading.Thread(target=self._pump, args=(stream,), daemon=True, name="serve-log")
        self._thread.start()

    def _pump(self, stream: IO[bytes]) -> None:
        for raw in iter(stream.readline, b""):
            self.add(raw.decode("utf-8", "replace"))
        stream.close()

    def add(self, line: str) -> None:
        if not line.endswith("\n"):
            line += "\n"
        now = time.monotonic()
        with self._lock:
            if self.ready_line_at is None and any(r.search(line) for r in self._rx):
                self.ready_line_at = now
                self.ready_line_no = len(self.lines) + 1 if not self.dropped else None
            size = len(line.encode("utf-8", "replace"))
            if self.written + size <= self.max_bytes and not self.dropped:
                self._file.write(line)
                self._file.flush()
                self.written += size
                self.lines.append(line.rstrip("\n"))
                return
            self.dropped += 1
            self.tail.append(line)
            self.tail_bytes += size
            while self.tail_bytes > self.max_bytes // 4 and len(self.tail) > 1:
                self.tail_bytes -= len(self.tail.popleft().encode("utf-8", "replace"))

    def snapshot(self) -> list[str]:
        with self._lock:
            out = list(self.lines)
            if self.dropped:
                out.append(self._marker())
                out.extend(x.rstrip("\n") for x in self.tail)
            return out

    def _marker(self) -> str:
        return (
            f"[adapt-bot] log capped at {self.max_bytes} bytes; "
            f"{self.dropped} lines after the cap, the last ones follow"
        )

    def wait_drained(self, timeout: float) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    def close(self) -> None:
        self.wait_drained(5)
        with self._lock:
            if self.dropped:
                self._file.write(self._marker() + "\n")
                self._file.writelines(self.tail)
            self._file.close()


def read_log_lines(path: Path) -> list[str]:
    """Lines split on "\n" only, so numbers match `grep -n` and editors (progress bars use "\r")."""
    try:
        text = path.read_bytes().decode("utf-8", "replace")  # no universal-newline translation
    except OSError:
        return []
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return lines


# --------------------------------------------------------------------------- running server


@dataclass
class RunningServer:
    base_url: str
    served_name: str
    log_path: Path
    argv: list[str]
    ready_after_s: float
    env: dict[str, str]
    devices: list[str]
    pgid: int
    started_at: float
    #: monotonic time the bot saw READY, and when the log printed its ready line (benchmarks).
    noticed_ready_at: float
    sink: LogSink
    process: subprocess.Popen[bytes]
    cancel: Any = None
    request_timeout_s: float = 120.0
    #: facts about the plan the gates put in their evidence (e.g. the --max-model-len clamp)
    notes: list[Evidence] = field(default_factory=list)
    #: how this server relates to the job's shared real-weight start (runners.shared_start):
    #: {"role": "started" | "adopted" | "own", ...}; empty when sharing is off
    share: dict[str, Any] = field(default_factory=dict)

    def alive(self) -> bool:
        return self.process.poll() is None

    def log_lines(self) -> list[str]:
        return self.sink.snapshot()

    @property
    def log_ready_at(self) -> float | None:
        return self.sink.ready_line_at

    @property
    def notice_latency_s(self) -> float | None:
        return None if self.sink.ready_line_at is None else self.noticed_ready_at - self.sink.ready_line_at

    def argv_display(self) -> str:
        """The command a human can paste (env first); display only, never executed."""
        import shlex

        shown = {k: v for k, v in self.env.items() if k not in ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR")}
        shown.pop(SERVE_TAG_VAR, None)
        return " ".join([*(f"{k}={shlex.quote(v)}" for k, v in shown.items()), *map(shlex.quote, self.argv)])


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


def start_process(plan: ServePlan) -> tuple[subprocess.Popen[bytes], LogSink]:
    plan.cwd.mkdir(parents=True, exist_ok=True)
    sink = LogSink(plan.log_path, plan.log_max_bytes)
    try:
        proc = subprocess.Popen(
            plan.argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=plan.env,
            cwd=str(plan.cwd),
            start_new_session=True,
        )
    except OSError as exc:
        sink.add(f"[adapt-bot] could not start {plan.argv[0]}: {exc}")
        sink.close()
        raise ServeError(
            "crashed",
            f"could not start the server program {plan.argv[0]!r}: {exc}",
            next_step="check the profile's vllm locator (ADAPT_BOT_CPU_VLLM for the cpu profile)",
            log_path=plan.log_path,
            argv=plan.argv,
        ) from exc
    assert proc.stdout is not None
    sink.follow(proc.stdout)
    return proc, sink


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


def per_job_devices(ctx: StageContext, profile: Profile) -> int:
    tp = ctx.options.tp or 1
    return max(profile.devices.per_job, tp if profile.platform != "cpu" else 1)


@contextlib.contextmanager
def served(
    ctx: StageContext,
    *,
    load_format: str | None = None,
    extra_args: Sequence[str] = (),
    extra_env: Mapping[str, str] | None = None,
    log_name: str,
    devices: Sequence[str] | None = None,
    overrides: Mapping[str, Any] | None = None,
    profile: Profile | None = None,
    ready_timeout_s: float | None = None,
) -> Iterator[RunningServer]:
    """Start, wait for READY, yield, and ALWAYS tear the whole process group down.

    `devices`: already-leased devices (the features stage leases for parallel probes); None = take
    a lease of the profile's per-job size here. `overrides`: template values (max_model_len, ...).
    """
    prof: Profile = profile or ctx.profile
    from runners import shared_start

    active = shared_start.current()
    decision: shared_start.Decision | None = None
    if active is not None:
        decision = shared_start.decide(
            active,
            shared_start.Call(
                log_name=log_name,
                load_format=load_format,
                extra_args=tuple(extra_args),
                extra_env=extra_env,
                devices=devices,
                overrides=overrides,
                own_profile=prof is not ctx.profile,
            ),
        )
        if decision.adopt is not None:  # the job's shared real-weight start: no start of its own
            assert active is not None
            kept = decision.adopt
            shared_start.adopted(kept, active)
            server = kept.server
            share = dict(decision.use or {})
            server.share = share
            server.notes = [n for n in server.notes if n.kind != "config" or "shared" not in n.text]
            if decision.note is not None:
                server.notes.append(decision.note)
            ctx.progress(f"using the job's shared real-weight server ({kept.started_by}) for {log_name}")
            ok = False
            try:
                yield server
                ok = True
            finally:
                keep = ok and decision.keep and not ctx.cancel.is_set() and server.alive()
                shared_start.done_with(kept, keep=keep, why=f"{active.plan.stage} was its last user")
            return
        overrides = decision.overrides
        if decision.adopt is None and not decision.keep and devices is None:
            shared_start.make_room(
                ctx.job_id,
                len(prof.devices.pool),
                per_job_devices(ctx, prof),
                f"the {log_name} start needs the devices it holds",
            )
    stack = contextlib.ExitStack()
    try:
        if devices is None:
            try:
                lease = acquire(prof, per_job_devices(ctx, prof), cancel=ctx.cancel, progress=ctx.progress)
            except LeaseError as exc:
                reason = "cancelled" if exc.reason == "cancelled" else "lease-timeout"
                raise ServeError(reason, str(exc)) from exc
            stack.callback(lease.release)
            devices = lease.devices
        stack.enter_context(
            accounting.timed(ctx.workspace.logs, f"vllm-serve:{log_name}", devices=list(devices))
        )
        server = stack.enter_context(
            _serve_on(
                ctx,
                prof,
                load_format=load_format,
                extra_args=extra_args,
                extra_env=extra_env,
                log_name=log_name,
                devices=list(devices),
                overrides=overrides or {},
                ready_timeout_s=ready_timeout_s,
            )
        )
    except BaseException:
        stack.close()
        raise
    if decision is not None:
        server.share = decision.use if decision.use is not None else {}  # the stage's record of it
        if decision.note is not None:
            server.notes.append(decision.note)
    ok = False
    try:
        yield server
        ok = True
    finally:
        if (
            ok
            and active is not None
            and decision is not None
            and decision.keep
            and not ctx.cancel.is_set()
            and server.alive()
        ):
            shared_start.park(active, server, stack.pop_all(), server.share)
        else:
            stack.close()


@contextlib.contextmanager
def _serve_on(
    ctx: StageContext,
    prof: Profile,
    *,
    load_format: str | None,
    extra_args: Sequence[str],
    extra_env: Mapping[str, str] | None,
    log_name: str,
    devices: list[str],
    overrides: Mapping[str, Any],
    ready_timeout_s: float | None,
) -> Iterator[RunningServer]:
    grace = prof.timeouts.teardown_grace_s
    reap_stale_servers(ctx, grace, keep=_active_tags())
    log_path = ctx.workspace.log_path(log_name)
    scratch: dict[str, Path] = {}
    for name in prof.serve.scratch_dirs:
        d = ctx.workspace.path / "tmp" / f"{log_name}-{name}"
        d.mkdir(parents=True, exist_ok=True)
        scratch[name] = d
    port = pick_port(prof.serve.host, prof.serve.port)
    tag = uuid.uuid4().hex
    try:
        values = template_values(ctx, prof, port=port, scratch=scratch, overrides=overrides)
        argv = build_argv(prof, values, prof.vllm_command())
        argv = with_extra_args(argv, remote_code_flags(ctx, prof))  # only when needed AND opted in
        argv = with_extra_args(argv, recipe_args(ctx.previous))  # a gate's zero-code flags (runners.recipe)
        extra_env = {**candidate.ensure(ctx), **(extra_env or {})}  # PYTHONPATH to this job's candidate
        env = build_env(prof, values, devices=devices, extra_env=extra_env, tag=tag)
        cwd = Path(fill(prof.serve.cwd, values))
    except ProfileError as exc:
        raise ServeError("bad-profile", str(exc)) from exc
    except candidate.CandidateFailed as exc:
        raise ServeError(
            "candidate-install",
            candidate.failure_text(ctx, exc),
            next_step=candidate.FIX,
            log_path=exc.log_path,
        ) from None
    if load_format == "dummy":
        argv = with_extra_args(argv, prof.serve.dummy_args)
    elif load_format:
        argv = with_extra_args(argv, ["--load-format", load_format])
    argv = with_extra_args(argv, extra_args)
    plan = ServePlan(
        argv=argv,
        env=env,
        cwd=cwd,
        host=prof.serve.host,
        port=port,
        served_name=str(values["served_name"]),
        log_path=log_path,
        log_max_bytes=prof.serve.log_max_bytes,
        tag=tag,
        devices=devices,
    )
    notes = []
    if values.get("max_model_len_note"):
        notes.append(Evidence(kind="config", text=str(values["max_model_len_note"])))
        ctx.progress(str(values["max_model_len_note"]))
    ctx.progress(f"starting server ({log_name}) on port {port}")
    started = time.monotonic()
    proc, sink = start_process(plan)
    _ACTIVE.add(tag)
    _record_pgid(ctx, proc.pid, tag, log_name)
    try:
        try:
            ready_at = wait_ready(
                proc,
                sink,
                plan,
                prof,
                cancel=ctx.cancel,
                progress=ctx.progress,
                real_weights=load_format != "dummy",
                started=started,
                ready_timeout_s=ready_timeout_s,
            )
        except ServeError as exc:
            exc.evidence[:0] = notes
            raise
        server = RunningServer(
            base_url=f"http://{plan.host}:{plan.port}",
            served_name=plan.served_name,
            log_path=log_path,
            argv=argv,
            ready_after_s=round(ready_at - started, 2),
            env=env,
            devices=devices,
            pgid=proc.pid,
            started_at=started,
            noticed_ready_at=ready_at,
            sink=sink,
            process=proc,
            cancel=ctx.cancel,
            request_timeout_s=prof.timeouts.request_s,
            notes=notes,
        )
        ctx.progress(f"ready after {server.ready_after_s:.1f} s ({log_name})")
        yield server
    finally:
        left = kill_group(proc.pid, grace)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(5)
        sink.close()
        _ACTIVE.discard(tag)
        if not left:
            _forget_pgid(ctx, tag)
        else:  # recorded pgid stays: the next start's hygiene step retries the kill
            ctx.progress(f"warning: processes {left} of server group {proc.pid} survived SIGKILL")


_ACTIVE: set[str] = set()


def _active_tags() -> set[str]:
    """Servers this process is running right now (parallel probes): never reaped as stale."""
    return set(_ACTIVE)


# --------------------------------------------------------------------------- requests


@dataclass
class ChatReply:
    ok: bool
    status: int | None
    content: str
    elapsed_s: float
    error: str | None = None
    body_excerpt: str = ""
    request: dict[str, Any] = field(default_factory=dict)


def _run_cancellable(fn: Callable[[], Any], cancel: Any, timeout: float) -> Any:
    """Run a blocking call in a thread; return early (raising ServeError) on cancel."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:  # handed back to the caller
            box["error"] = exc

    t = threading.Thread(target=target, daemon=True, name="serve-request")
    t.start()
    deadline = time.monotonic() + timeout + 5
    while t.is_alive():
        if cancel is not None and cancel.is_set():
            raise ServeError("cancelled", "the job was cancelled during a request")
        if time.monotonic() > deadline:
            break
        t.join(0.2)
    if "error" in box:
        raise box["error"]
    if "value" not in box:
        raise httpx.ReadTimeout("request did not finish in time")
    return box["value"]


def chat_payload(
    served_name: str, prompt: str, max_tokens: int, image_url: str | None = None
) -> dict[str, Any]:
    content: Any = prompt
    if image_url is not None:
        content = [{"type": "text", "text": prompt}, {"type": "image_url", "image_url": {"url": image_url}}]
    return {
        "model": served_name,
        "messages": [{"role": "user", "content": content}],
        "temperature": 0,
        "max_tokens": max_tokens,
    }


def chat_completion(
    server: RunningServer,
    prompt: str,
    max_tokens: int,
    *,
    image_url: str | None = None,
    timeout: float | None = None,
) -> ChatReply:
    """One OpenAI chat completion (temperature 0). ok = 200 with non-empty choices[0].message.content."""
    payload = chat_payload(server.served_name, prompt, max_tokens, image_url)
    limit = server.request_timeout_s if timeout is None else timeout
    shown = json.loads(json.dumps(payload))
    if image_url is not None:
        shown["messages"][0]["content"][1]["image_url"]["url"] = image_url[:40] + "…"
    t0 = time.monotonic()

    def call() -> httpx.Response:
        with httpx.Client(trust_env=False) as client:
            return client.post(f"{server.base_url}/v1/chat/completions", json=payload, timeout=limit)

    try:
        r: httpx.Response = _run_cancellable(call, server.cancel, limit)
    except httpx.HTTPError as exc:
        return ChatReply(
            False, None, "", time.monotonic() - t0, error=f"{type(exc).__name__}: {exc}", request=shown
        )
    elapsed = time.monotonic() - t0
    body = r.text
    content = ""
    try:
        content = r.json()["choices"][0]["message"]["content"] or ""
    except (ValueError, KeyError, IndexError, TypeError):
        content = ""
    ok = r.status_code == 200 and bool(content.strip())
    error = None if ok else (f"HTTP {r.status_code}" + ("" if r.status_code != 200 else ": empty content"))
    return ChatReply(
        ok, r.status_code, content, elapsed, error=error, body_excerpt=ev.clip_line(body, 600), request=shown
    )


def _post(server: RunningServer, path: str, payload: dict[str, Any], limit: float) -> httpx.Response:
    def call() -> httpx.Response:
        with httpx.Client(trust_env=False) as client:
            return client.post(f"{server.base_url}{path}", json=payload, timeout=limit)

    r: httpx.Response = _run_cancellable(call, server.cancel, limit)
    return r


def text_completion(
    server: RunningServer, prompt: str, max_tokens: int, *, timeout: float | None = None
) -> ChatReply:
    """One OpenAI (legacy) completion, temperature 0: the smoke of a base model without a chat
    template. ok = 200 with non-empty choices[0].text. Same reply shape as chat_completion."""
    payload: dict[str, Any] = {
        "model": server.served_name,
        "prompt": prompt,
        "temperature": 0,
        "max_tokens": max_tokens,
    }
    limit = server.request_timeout_s if timeout is None else timeout
    t0 = time.monotonic()
    try:
        r = _post(server, "/v1/completions", payload, limit)
    except httpx.HTTPError as exc:
        return ChatReply(
            False, None, "", time.monotonic() - t0, error=f"{type(exc).__name__}: {exc}", request=payload
        )
    content = ""
    try:
        content = r.json()["choices"][0]["text"] or ""
    except (ValueError, KeyError, IndexError, TypeError):
        content = ""
    ok = r.status_code == 200 and bool(content.strip())
    error = None if ok else (f"HTTP {r.status_code}" + ("" if r.status_code != 200 else ": empty content"))
    return ChatReply(
        ok,
        r.status_code,
        content,
        time.monotonic() - t0,
        error=error,
        body_excerpt=ev.clip_line(r.text, 600),
        request=payload,
    )


@dataclass
class LogprobsReply:
    """`/v1/completions` with logprobs: the parsed JSON body (None unless HTTP 200 JSON)."""

    ok: bool
    status: int | None
    body: dict[str, Any] | None
    elapsed_s: float
    error: str | None = None
    request: dict[str, Any] = field(default_factory=dict)


def completion_logprobs(
    server: RunningServer,
    prompt_token_ids: Sequence[int],
    max_tokens: int,
    top_k: int,
    *,
    timeout: float | None = None,
) -> LogprobsReply:
    """Greedy continuation of exact prompt token ids with top-k logprobs, for reference parity.

    Asks for exactly `max_tokens` raw-model tokens: temperature 0, `ignore_eos` (the reference does
    not stop at EOS either), `repetition_penalty` 1 (generation_config.json defaults must not apply),
    tokens returned as ids (`return_tokens_as_token_ids`, a vLLM extension)."""
    payload: dict[str, Any] = {
        "model": server.served_name,
        "prompt": list(prompt_token_ids),
        "temperature": 0,
        "max_tokens": max_tokens,
        "logprobs": top_k,
        "ignore_eos": True,
        "repetition_penalty": 1.0,
        "return_tokens_as_token_ids": True,
    }
    limit = server.request_timeout_s if timeout is None else timeout
    t0 = time.monotonic()
    try:
        r = _post(server, "/v1/completions", payload, limit)
    except httpx.HTTPError as exc:
        return LogprobsReply(
            False, None, None, time.monotonic() - t0, error=f"{type(exc).__name__}: {exc}", request=payload
        )
    body: dict[str, Any] | None = None
    try:
        parsed = r.json()
        body = parsed if isinstance(parsed, dict) else None
    except ValueError:
        body = None
    ok = r.status_code == 200 and body is not None
    return LogprobsReply(
        ok,
        r.status_code,
        body,
        time.monotonic() - t0,
        error=None if ok else f"HTTP {r.status_code}: {ev.clip_line(r.text, 300)}",
        request=payload,
    )


def error_message(body_excerpt: str) -> str | None:
    """The server's own words from an OpenAI-style error body ({"error": {"message": ...}})."""
    try:
        data = json.loads(body_excerpt)
    except ValueError:  # clipped body: take the message field by pattern
        m = re.search(r'"message"\s*:\s*"((?:[^"\\]|\\.)*)', body_excerpt)
        if m is None:
            return None
        try:
            return str(json.loads(f'"{m.group(1)}"'))
        except ValueError:
            return m.group(1)
    err = data.get("error") if isinstance(data, dict) else None
    if isinstance(err, dict) and isinstance(err.get("message"), str):
        return str(err["message"])
    if isinstance(data, dict) and isinstance(data.get("message"), str):
        return str(data["message"])
    return None


@dataclass
class StreamStats:
    ok: bool
    ttft_s: float | None
    total_s: float
    completion_tokens: int
    error: str | None = None


def stream_completion(
    server: RunningServer, prompt: str, max_tokens: int, *, timeout: float | None = None
) -> StreamStats:
    """A streamed chat completion: time to first token and token count (capacity figures)."""
    payload = chat_payload(server.served_name, prompt, max_tokens)
    payload.update(stream=True, stream_options={"include_usage": True})
    limit = server.request_timeout_s if timeout is None else timeout
    t0 = time.monotonic()
    ttft: float | None = None
    tokens = 0
    try:
        with (
            httpx.Client(trust_env=False) as client,
            client.stream("POST", f"{server.base_url}/v1/chat/completions", json=payload, timeout=limit) as r,
        ):
            if r.status_code != 200:
                r.read()
                return StreamStats(False, None, time.monotonic() - t0, 0, error=f"HTTP {r.status_code}")
            for line in r.iter_lines():
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                chunk = json.loads(line[6:])
                if chunk.get("usage"):
                    tokens = int(chunk["usage"].get("completion_tokens") or tokens)
                for choice in chunk.get("choices") or []:
                    if (choice.get("delta") or {}).get("content") and ttft is None:
                        ttft = time.monotonic() - t0
    except (httpx.HTTPError, ValueError) as exc:
        return StreamStats(False, ttft, time.monotonic() - t0, tokens, error=f"{type(exc).__name__}: {exc}")
    return StreamStats(ttft is not None, ttft, time.monotonic() - t0, tokens)


#: An 8x8 RGB PNG gradient as a data: URL: a text+image request needs no network.
TINY_PNG_DATA_URL = (
    "data:image/png;base64,"
    "iVBORw0KGgoAAAANSUhEUgAAAAgAAAAICAIAAABLbSncAAAAbElEQVR4nBXNQRUAUQhCUaMYhShGeVGIQhSizB+XXA"
    "7ODDtouIHBQ4YOM8suWm5h8ZKl+0CskDiBsIioHhx76LiDw0eO3oN/4FVf+J8h0PduzBqZ8x/bxNQPwgaFy192SGgelC0q13/CJaXlA8Z7WAGfV950AAAAAElFTkSuQmCC"
)


def server_error_evidence(
    server: RunningServer, *, since_line: int, real_weights: bool
) -> tuple[list[Evidence], ev.SignatureHit | None, ev.LogHit | None]:
    """Explain a failure that happened after READY (false-ready): look only at lines after `since_line`."""
    server.sink.wait_drained(0.5)
    lines = server.log_lines()
    return _failure_evidence(lines, server.log_path, real_weights=real_weights, start=since_line)
