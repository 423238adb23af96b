"""What to start, as data: the argv list, the environment and the working directory of one server.

Pure apart from reading `os.environ` (the default of `build_env`'s `environ`): the profile's argv
template is filled element by element, so the server is started from a list, with no shell
anywhere. The environment is clean: only the names the profile inherits, then the profile's own,
then the probe's; the model server runs checkpoint code, so a credential-looking name is never
passed on, even when a profile lists it.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runners.context import StageContext
from runners.profile import Profile, cache_dir, fill

#: Set in every server's environment to a per-start tag: how a stale group is recognised as OURS.
SERVE_TAG_VAR = "ADAPT_BOT_SERVE_ID"


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


def pin_draft_attention(argv: list[str], mla_args: Sequence[str]) -> list[str]:
    """Give a `--speculative-config` drafter the host's `--attention-backend` pin (vLLM selects the
    drafter's backend on its own unless the config's `attention_backend` names one). Pure."""
    backend = next((mla_args[i + 1] for i, a in enumerate(mla_args[:-1]) if a == "--attention-backend"), None)
    if backend is None:
        return argv
    out = list(argv)
    for i, arg in enumerate(out[:-1]):
        if arg != "--speculative-config":
            continue
        try:
            spec = json.loads(out[i + 1])
        except ValueError:
            continue
        if isinstance(spec, dict) and "attention_backend" not in spec:
            out[i + 1] = json.dumps({**spec, "attention_backend": backend}, separators=(",", ":"))
    return out
