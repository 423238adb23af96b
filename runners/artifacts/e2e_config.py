"""`tests/e2e/models/configs/<ModelName>.yaml`: the accuracy config the target repo's e2e test reads.

`hardware` says where the baseline values were MEASURED (the target's test prints it as the report's
"Hardware Environment"; nothing selects runners by it): the Ascend hardware of the profile that ran,
or, off Ascend, the profile itself ("CPU (vLLM CPU build, adapt-bot cpu profile), not Ascend") with
comment lines naming the hardware the config is for and asking for a re-measurement there. A metric
the verdict flags as implausible carries a comment on its line: it is no baseline to keep.

Every value comes from a run: the serve flags of the accuracy run (the configuration the metrics were
measured with), vLLM's documented defaults for flags the run did not pass (those ARE the values that
run used), and the measured metrics. Without measured metrics there is no config: inventing a
baseline would make the target repo's `np.isclose(value, measured, rtol=0.05)` test meaningless.
"""

from __future__ import annotations

import re
from typing import Any

import yaml

from runners.accuracy.plan import eval_settings
from runners.artifacts.facts import JobFacts, ServeFlags
from runners.render import render

#: vLLM defaults, used only when the run did not pass the flag (so they are what the run used)
VLLM_DEFAULT_DTYPE = "auto"
VLLM_DEFAULT_GPU_MEMORY_UTILIZATION = 0.9

#: env variables worth carrying into the target repo's config (Ascend runtime switches); runner-host
#: plumbing (cache dirs, CPU-build switches, tokens) never goes into a committed file
PUBLISHED_ENV = re.compile(
    r"^(HCCL_|VLLM_ASCEND_|PYTORCH_NPU_|OMP_|TASK_QUEUE_ENABLE$|TORCHDYNAMO_DISABLE$|VLLM_USE_V1$)"
)


_ENV_KEY = re.compile(r"[A-Z][A-Z0-9_]{0,63}")


class ArtifactError(ValueError):
    """An artifact cannot be produced from the facts at hand; the message says which fact is missing."""


def hardware_value(facts: JobFacts) -> str:
    """Where the values were measured: only an Ascend profile yields an Ascend name."""
    v = facts.verdict
    if v.hardware is not None:
        return v.hardware
    if v.profile == "cpu":
        return "CPU (vLLM CPU build, adapt-bot cpu profile), not Ascend"
    return f"adapt-bot {v.profile} profile, not Ascend"


#: where the target repository keeps its e2e accuracy configs
E2E_CONFIG_DIR = "tests/e2e/models/configs"


def config_path_for(name: str) -> str:
    return f"{E2E_CONFIG_DIR}/{name}.yaml"


def config_path(facts: JobFacts) -> str:
    return config_path_for(facts.names.name)


def _serve_section(serve: ServeFlags, facts: JobFacts, max_model_len: int | None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "tensor_parallel_size": serve.tp or 1,
        "dtype": serve.value("--dtype") or VLLM_DEFAULT_DTYPE,
    }
    mml = serve.max_model_len or max_model_len or facts.analysis.max_position_embeddings
    if mml is None:
        raise ArtifactError(
            "the accuracy run's max model length is unknown (no --max-model-len, no log value)"
        )
    out["max_model_len"] = mml
    gmu = serve.value("--gpu-memory-utilization")
    out["gpu_memory_utilization"] = float(gmu) if gmu else VLLM_DEFAULT_GPU_MEMORY_UTILIZATION
    out["trust_remote_code"] = serve.has("--trust-remote-code")
    if serve.has("--enforce-eager"):
        out["enforce_eager"] = True
    if serve.has("--enable-expert-parallel"):
        out["enable_expert_parallel"] = True
    # a zero-code rung's flags (runners.recipe): the model does not load without them
    if (ho := serve.value("--hf-overrides")) is not None:
        out["hf_overrides"] = _json_object(ho)
    if (impl := serve.value("--model-impl")) is not None:
        out["model_impl"] = impl
    if (q := serve.value("--quantization")) is not None:
        out["quantization"] = q
    if (bs := serve.value("--block-size")) is not None and bs.isdigit():
        out["block_size"] = int(bs)
    thinking = facts.accuracy.chat_template_kwargs.get("enable_thinking")
    if isinstance(thinking, bool):
        # the target repo's test passes it to the chat template (Qwen3's thinking switch)
        out["enable_thinking"] = thinking
    return out


def _json_object(text: str) -> dict[str, Any]:
    import json

    try:
        value = json.loads(text)
    except ValueError as exc:
        raise ArtifactError(f"--hf-overrides is not JSON ({exc}): {text[:80]!r}") from None
    if not isinstance(value, dict):
        raise ArtifactError(f"--hf-overrides is not a JSON object: {text[:80]!r}")
    return value


def build_e2e_config(facts: JobFacts) -> dict[str, Any]:
    """The config as data, keys in the order the target repo's hand-written configs use."""
    acc = facts.accuracy
    if not acc.tasks:
        raise ArtifactError(
            "no measured accuracy metrics: run the accuracy stage (`/adapt rerun accuracy`) before the "
            "e2e config can be written"
        )
    serve = acc.serve if acc.serve.argv else facts.serve
    cfg: dict[str, Any] = {
        "model_name": facts.names.hub_id or facts.names.ref,
        "model_type": "vllm-vlm" if facts.analysis.multimodal else "vllm",
        "hardware": hardware_value(facts),
        "serve": _serve_section(serve, facts, facts.max_model_len),
    }
    env = {k: v for k, v in serve.env if PUBLISHED_ENV.match(k) and _ENV_KEY.fullmatch(k)}
    if env:
        cfg["envs"] = env
    cfg["tasks"] = [
        {"name": t.name, "metrics": [{"name": m.name, "value": round(m.value, 4)} for m in t.metrics]}
        for t in acc.tasks
    ]
    # the evaluation settings the run's AccuracyPlan measured with, by the plan's own rule (so the
    # YAML and the lm-eval argv cannot drift; runners/accuracy/plan.py)
    cfg.update(
        eval_settings(
            num_fewshot=acc.num_fewshot,
            limit=acc.limit,
            apply_chat_template=acc.apply_chat_template,
            fewshot_as_multiturn=acc.fewshot_as_multiturn,
            batch_size=acc.batch_size,
        )
    )
    return cfg


def yaml_comment(text: Any) -> str:
    """Text safe inside a `# ...` YAML comment: one line, printable characters only (YAML also breaks
    lines at U+0085, U+2028 and U+2029, which str.splitlines knows and `\n`-replacing does not)."""
    return "".join(c if c.isprintable() else " " for c in str(text))


def yaml_value(value: Any) -> str:
    """One YAML scalar in the style of the hand-written configs (strings double-quoted)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, dict | list):  # JSON is YAML flow style (hf_overrides); round-trip checked
        import json

        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, float):
        text = repr(value)
        if "e" in text or "E" in text:  # PyYAML reads 1e-05 as a string
            text = f"{value:.12f}".rstrip("0")
        if "." not in text:
            text += ".0"
        return text
    from runners.render import yaml_str

    return yaml_str(value)


def render_e2e_config(facts: JobFacts) -> str:
    cfg = build_e2e_config(facts)
    text = render(
        "artifacts/e2e_config.yaml.j2", cfg=cfg, yaml_value=yaml_value, yaml_comment=yaml_comment, facts=facts
    )
    loaded = yaml.safe_load(text)
    if loaded != cfg:  # the emitter must never say something other than the data
        raise ArtifactError(f"e2e config did not round-trip through YAML: {loaded!r} != {cfg!r}")
    return text
