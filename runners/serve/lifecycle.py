"""The serve lifecycle: lease devices, plan, start, wait for READY, yield, ALWAYS tear down.

`served()` ties the other modules together: it takes a device lease (unless the caller already
holds one), consults the job's shared real-weight start (runners.shared_start), kills stale
servers of ours, picks a free port, builds the plan (with the candidate's PYTHONPATH, the
recipe's flags and remote-code flags only when opted in), starts the process group, waits for
READY and, on exit (normal or not), terminates the whole group and checks it empty.
Cancellation (`ctx.cancel`) is polled at least every 0.25 s while waiting.
"""

from __future__ import annotations

import contextlib
import subprocess
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runners import accounting, candidate
from runners.analysis.config import ConfigView, JsonFileError, read_json
from runners.analysis.preflight import remote_code_flags
from runners.context import StageContext
from runners.contracts import Evidence
from runners.lease import LeaseError, acquire
from runners.profile import Profile, ProfileError, fill
from runners.recipe import feature_set, recipe_args
from runners.serve.errors import ServeError
from runners.serve.logsink import LogSink
from runners.serve.plan import (
    SERVE_TAG_VAR,
    ServePlan,
    build_argv,
    build_env,
    pin_draft_attention,
    template_values,
    with_extra_args,
)
from runners.serve.process import (
    _forget_pgid,
    _record_pgid,
    kill_group,
    pick_port,
    reap_stale_servers,
    start_process,
)
from runners.serve.readiness import wait_ready


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


def uses_mla(model_path: Path) -> bool:
    """The checkpoint declares multi-head latent attention (`kv_lora_rank`, nested configs too)."""
    try:
        raw = read_json(model_path / "config.json")
    except JsonFileError:
        return False
    return isinstance(raw, dict) and bool(ConfigView(raw).int_("kv_lora_rank"))


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
        fs = feature_set(ctx.previous) if load_format != "dummy" else None  # the probes' proven switches
        if fs is not None and fs.features:
            argv = with_extra_args(argv, fs.args)
            extra_env = {**fs.env, **(extra_env or {})}
        mla_pin = bool(prof.serve.mla_args) and uses_mla(ctx.model_path)
        if mla_pin:  # the host's MLA backend pin
            argv = with_extra_args(argv, prof.serve.mla_args)
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
    if mla_pin:  # an MTP drafter picks its own backend unless told: the same pin
        argv = pin_draft_attention(argv, prof.serve.mla_args)
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
