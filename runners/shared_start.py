"""One real-weight server start per healthy job (issue 13): the real gate, the capacity baseline and
the accuracy run share it when their flags agree.

Stages still run one per call (one Celery task each, `runners.pipeline.execute_stage`); what they
share is the `vllm serve` process. The driver of a whole job (the runner task, `adapt-bot run`)
asks for sharing; the pipeline then makes a `Plan` for each stage it runs and makes it current
(a context variable, so probe threads never see it), and `runners.serve.served` consults it:

- the flags are the capacity stage's first start (`capacity.first_request`: the baseline length,
  or the largest length the KV prediction says starts, and the first `--max-num-seqs`). The real
  gate's plain start uses them instead of the profile's defaults; the capacity baseline asks for
  exactly them; accuracy accepts them when they give at least the length it needs (same
  `--max-num-seqs`). Any other start (dummy weights, a ladder rung, a probe, a search length, a
  stage whose job options ask for more) starts its own server, as before, and says why;
- a start made under the plan by a stage that is not the plan's last user is PARKED when the stage's
  body ends normally: the process, its log pump, its accounting record and its device lease stay
  as they are, in this process (`_PARKS`, one per job). The next user stage of the SAME run adopts
  it: same process, same log, same accounting line; only the cancel token changes hands;
- a park is released (server group stopped, lease freed, accounting line closed) when: the last
  user is done; a stage of the job is not ok (the job stops there); a stage of ANOTHER job starts
  in this process; the feature probes need the devices it holds; the job's cancel flag is seen
  (polled every `POLL_S` by a keeper thread); it waited `idle_s` (`ADAPT_BOT_SHARED_START_IDLE_S`,
  default 900) for a user that did not come (another host took the next stage); the process exits.
  So the server never outlives the job by more than the idle limit, and on cancel by ~1 s.

A rerun of a stage re-measures it with its own start: a park is adopted only when an earlier
stage's stored result in `ctx.previous` names the park's id (`data.shared_start`), which only a
result written in this same run can. `ADAPT_BOT_SHARED_START=0` on the runner host restores one
start per stage (the benchmark's "before").
"""

from __future__ import annotations

import atexit
import contextlib
import contextvars
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from runners.contracts import Evidence

if TYPE_CHECKING:
    from runners.context import StageContext
    from runners.serve import RunningServer

ENV = "ADAPT_BOT_SHARED_START"
IDLE_ENV = "ADAPT_BOT_SHARED_START_IDLE_S"
IDLE_S = 900.0
POLL_S = 1.0
#: The stages that can share the real-weight start, in job order.
USERS: tuple[str, ...] = ("real-gate", "capacity", "accuracy")


def enabled(requested: bool) -> bool:
    """The driver asked for sharing and the host did not switch it off."""
    return requested and os.environ.get(ENV, "1").strip().lower() not in ("0", "false", "no", "off")


def idle_limit() -> float:
    try:
        return max(1.0, float(os.environ.get(IDLE_ENV, IDLE_S)))
    except ValueError:
        return IDLE_S


# --------------------------------------------------------------------------- the plan (pure)


@dataclass(frozen=True)
class Plan:
    job_id: str
    stage: str
    max_model_len: int
    max_num_seqs: int
    #: user stages of this job, in order (accuracy drops out when it needs a longer context)
    users: tuple[str, ...]
    why_not: Mapping[str, str] = field(default_factory=dict)

    @property
    def flags(self) -> dict[str, int]:
        return {"max_model_len": self.max_model_len, "max_num_seqs": self.max_num_seqs}

    def later_users(self) -> tuple[str, ...]:
        if self.stage not in self.users:
            return ()
        return self.users[self.users.index(self.stage) + 1 :]

    def flags_text(self) -> str:
        return f"--max-model-len {self.max_model_len} --max-num-seqs {self.max_num_seqs}"


def make_plan(
    job_id: str,
    stage: str,
    *,
    first: tuple[int, int],
    accuracy_len: int | None,
    accuracy_seqs: int | None,
) -> Plan:
    """The job's plan seen from `stage`: the capacity stage's first start, and who can use it."""
    length, seqs = first
    users = ["real-gate", "capacity"]
    why: dict[str, str] = {}
    if accuracy_len is not None and accuracy_len > length:
        why["accuracy"] = f"accuracy needs --max-model-len {accuracy_len}, the shared start has {length}"
    elif accuracy_seqs is not None and accuracy_seqs != seqs:
        why["accuracy"] = f"accuracy runs --max-num-seqs {accuracy_seqs}, the shared start has {seqs}"
    else:
        users.append("accuracy")
    return Plan(job_id, stage, length, seqs, tuple(users), why)


@dataclass
class Call:
    """One `served()` call, as the plan sees it."""

    log_name: str
    load_format: str | None
    extra_args: Sequence[str]
    extra_env: Mapping[str, str] | None
    devices: Sequence[str] | None
    overrides: Mapping[str, Any] | None
    own_profile: bool  # a profile other than the stage's


def mismatch(plan: Plan, call: Call, *, default_len: int | None, default_seqs: int | None) -> str | None:
    """None when `call` can run on the plan's server, else why not (pure)."""
    if call.own_profile:
        return "it runs another runner profile"
    if call.load_format is not None:
        return f"it loads --load-format {call.load_format}"
    if call.extra_args or call.extra_env:
        shown = " ".join([*call.extra_args, *(f"{k}={v}" for k, v in (call.extra_env or {}).items())])
        return f"it adds {shown}"
    if call.devices is not None:
        return "it runs on devices leased by its stage"
    ov = dict(call.overrides or {})
    if plan.stage == "real-gate" and not ov:
        return None  # the real gate's plain start has no flags of its own: it takes the plan's
    extra = sorted(set(ov) - {"max_model_len", "max_num_seqs"})
    if extra:
        return f"it sets {', '.join(extra)}"
    length = ov.get("max_model_len", default_len)
    seqs = ov.get("max_num_seqs", default_seqs)
    if plan.stage == "accuracy":
        if length is not None and int(length) > plan.max_model_len:
            return f"it needs --max-model-len {length}, the shared start has {plan.max_model_len}"
    elif length is not None and int(length) != plan.max_model_len:
        return f"it asks for --max-model-len {length}, the shared start has {plan.max_model_len}"
    if seqs is not None and int(seqs) != plan.max_num_seqs:
        return f"it asks for --max-num-seqs {seqs}, the shared start has {plan.max_num_seqs}"
    return None


# --------------------------------------------------------------------------- parks (process state)


@dataclass
class Park:
    id: str
    job_id: str
    flags: dict[str, int]
    server: RunningServer
    #: closing it stops the server group, closes the accounting line and frees the lease
    stack: contextlib.ExitStack
    started_by: str
    used_by: list[str]
    cancel_probe: Callable[[], bool] | None
    idle_s: float
    in_use: bool = False
    idle_since: float = field(default_factory=time.monotonic)

    def record(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "started_by": self.started_by,
            "used_by": list(self.used_by),
            "flags": dict(self.flags),
            "log_path": str(self.server.log_path),
            "ready_after_s": self.server.ready_after_s,
            "devices": list(self.server.devices),
        }


_PARKS: dict[str, Park] = {}
_RELEASED: dict[str, str] = {}  # job -> why its last park was released (for the next stage's note)
_lock = threading.RLock()
_keeper: threading.Thread | None = None


def park_of(job_id: str) -> Park | None:
    with _lock:
        return _PARKS.get(job_id)


def release(job_id: str, why: str) -> bool:
    """Stop the job's parked server (if any). Returns whether there was one."""
    with _lock:
        park = _PARKS.pop(job_id, None)
        if park is None:
            return False
        _RELEASED[job_id] = why
    park.server.cancel = None
    park.server.notes.append(Evidence(kind="config", text=f"shared real-weight server stopped: {why}"))
    park.stack.close()
    return True


def make_room(job_id: str, pool_size: int, need: int, why: str) -> bool:
    """Stop the job's park when a start of the same job needs devices it holds (pool too small)."""
    p = park_of(job_id)
    if p is None or p.in_use or pool_size - len(p.server.devices) >= need:
        return False
    return release(job_id, why)


def release_others(job_id: str, why: str) -> list[str]:
    with _lock:
        others = [j for j in _PARKS if j != job_id]
    for other in others:
        release(other, why)
    return others


def release_all(why: str = "the runner process is exiting") -> None:
    with _lock:
        jobs = list(_PARKS)
    for job in jobs:
        with contextlib.suppress(Exception):
            release(job, why)


atexit.register(release_all)


def _keep(park: Park) -> None:
    global _keeper
    with _lock:
        old = _PARKS.get(park.job_id)
        _PARKS[park.job_id] = park
        if _keeper is None or not _keeper.is_alive():
            _keeper = threading.Thread(target=_watch, daemon=True, name="shared-start-keeper")
            _keeper.start()
    if old is not None and old is not park:
        old.stack.close()


def _watch() -> None:
    """Stop idle parks whose job was cancelled or whose next user did not come in time."""
    while True:
        time.sleep(POLL_S)
        with _lock:
            parks = [p for p in _PARKS.values() if not p.in_use]
        for p in parks:
            why = None
            try:
                if p.cancel_probe is not None and p.cancel_probe():
                    why = "the job was cancelled"
            except Exception:  # an unreadable flag: keep it, ask again (the idle limit still applies)
                why = None
            if why is None and not p.server.alive():
                why = "the server exited while kept"
            if why is None and time.monotonic() - p.idle_since > p.idle_s:
                why = f"no later stage of the job used it within {p.idle_s:.0f} s"
            if why is not None:
                with _lock:
                    current = _PARKS.get(p.job_id) is p and not p.in_use
                if current:
                    with contextlib.suppress(Exception):
                        release(p.job_id, why)


# --------------------------------------------------------------------------- the current stage


@dataclass
class Active:
    """The plan of the stage running now, and what its `served()` calls did (for its result)."""

    plan: Plan
    ctx: StageContext
    cancel_probe: Callable[[], bool] | None
    uses: list[dict[str, Any]] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        return {
            "plan": {
                "flags": self.plan.flags,
                "users": list(self.plan.users),
                "why_not": dict(self.plan.why_not),
            },
            "uses": self.uses,
        }


_CURRENT: contextvars.ContextVar[Active | None] = contextvars.ContextVar("shared_start", default=None)


def current() -> Active | None:
    return _CURRENT.get()


@contextlib.contextmanager
def activate(active: Active | None) -> Iterator[Active | None]:
    token = _CURRENT.set(active)
    try:
        yield active
    finally:
        _CURRENT.reset(token)


def _referenced(ctx: StageContext, park: Park) -> bool:
    """An earlier stage of THIS run stored the park's id (a rerun's previous results cannot)."""
    for prev in ctx.previous.values():
        share = prev.data.get("shared_start") if isinstance(prev.data, dict) else None
        if isinstance(share, dict) and share.get("id") == park.id and prev.ok:
            return True
    return False


@dataclass
class Decision:
    """What `served()` does: adopt a park, or start (with these overrides) and maybe keep it."""

    adopt: Park | None = None
    overrides: Mapping[str, Any] | None = None
    keep: bool = False
    note: Evidence | None = None
    use: dict[str, Any] | None = None


def decide(active: Active, call: Call) -> Decision:
    plan, ctx = active.plan, active.ctx
    defaults = ctx.profile.serve.defaults
    default_len = ctx.options.max_model_len or defaults.get("max_model_len")
    why = mismatch(plan, call, default_len=default_len, default_seqs=defaults.get("max_num_seqs"))
    if plan.stage not in plan.users:
        why = why or plan.why_not.get(plan.stage, "this stage does not share the real-weight start")
    if why is not None:
        text = f"own server start ({call.log_name}), not the job's shared real-weight start: {why}"
        use = {"log_name": call.log_name, "role": "own", "why": why}
        active.uses.append(use)
        return Decision(overrides=call.overrides, note=Evidence(kind="config", text=text), use=use)
    later = plan.later_users()
    park = park_of(plan.job_id)
    if park is not None and park.flags == plan.flags and _referenced(ctx, park) and park.server.alive():
        use = {"log_name": call.log_name, "role": "adopted", **park.record()}
        active.uses.append(use)
        text = (
            f"served on the job's shared real-weight start (started by {park.started_by}, "
            f"{plan.flags_text()}, ready after {park.server.ready_after_s:.1f} s; "
            f"log {park.server.log_path}): no start of its own"
        )
        return Decision(adopt=park, keep=bool(later), note=Evidence(kind="config", text=text), use=use)
    if park is not None:
        release(plan.job_id, f"{plan.stage} of this run could not use it")
    before = _RELEASED.get(plan.job_id)
    overrides = dict(call.overrides or {}) or plan.flags
    first_user = plan.stage == plan.users[0]
    whence = "" if first_user else f" (no kept server to adopt: {before or 'none was kept in this run'})"
    new_use: dict[str, Any]
    if later:
        text = (
            f"the job's shared real-weight start: {plan.flags_text()} (the capacity baseline); "
            f"kept for {', '.join(later)}{whence}"
        )
        new_use = {"log_name": call.log_name, "role": "started", "kept_for": list(later)}
    else:
        text = f"own server start ({call.log_name}), the last stage that could share one{whence}"
        new_use = {"log_name": call.log_name, "role": "own", "why": before or "no kept server in this run"}
    active.uses.append(new_use)
    note = Evidence(kind="config", text=text)
    return Decision(overrides=overrides, keep=bool(later), note=note, use=new_use)


def park(active: Active, server: RunningServer, stack: contextlib.ExitStack, use: dict[str, Any]) -> Park:
    """Keep a server a stage started under the plan for the job's later users."""
    p = Park(
        id=uuid.uuid4().hex[:16],
        job_id=active.plan.job_id,
        flags=active.plan.flags,
        server=server,
        stack=stack,
        started_by=active.plan.stage,
        used_by=[active.plan.stage],
        cancel_probe=active.cancel_probe,
        idle_s=idle_limit(),
    )
    use.update(p.record())
    _keep(p)
    active.ctx.progress(f"keeping the real-weight server for {', '.join(active.plan.later_users())}")
    return p


def adopted(p: Park, active: Active) -> None:
    with _lock:
        p.in_use = True
        if active.plan.stage not in p.used_by:
            p.used_by.append(active.plan.stage)
        p.cancel_probe = active.cancel_probe or p.cancel_probe
    p.server.cancel = active.ctx.cancel


def done_with(p: Park, *, keep: bool, why: str) -> None:
    """An adopting stage's body ended: keep the park for the next user, or stop it."""
    with _lock:
        p.in_use = False
        p.idle_since = time.monotonic()
    if not keep:
        release(p.job_id, why)
