"""The tutorial page `docs/source/tutorials/models/<ModelName>.md`, in the checkout's own docs syntax."""

from __future__ import annotations

from dataclasses import dataclass

from runners.accuracy.plan import request_format_args
from runners.artifacts.facts import FeatureFacts, JobFacts, ServeFlags, ZeroCodeFacts, shell_join
from runners.artifacts.markdown import tidy
from runners.artifacts.target import TUTORIAL_DIR, TargetRepo
from runners.render import render
from runners.verdict import Verdict

#: The section headings of the current template (vllm-ascend main, 2026), in order. The templates
#: render exactly these; tests compare the rendered page's headings with this list.
TUTORIAL_SECTIONS_NUMBERED: tuple[str, ...] = (
    "## 1 Introduction",
    "## 2 Supported Features",
    "## 3 Prerequisites",
    "### 3.1 Model Weight",
    "## 4 Installation",
    "### 4.1 Docker Image Installation",
    "### 4.2 Source Code Installation",
    "## 5 Online Service Deployment",
    "### 5.1 Single-Node Online Deployment",
    "## 6 Functional Verification",
    "## 7 Accuracy Evaluation",
    "## 8 Performance Evaluation",
    "## 9 Performance Tuning",
    "## 10 FAQ",
)

#: Flags of the proven serve command that belong in a tutorial for Ascend users. Host-specific
#: plumbing of the runner (CPU build, port, host, executor backend) is left out.
TUTORIAL_FLAGS = (
    "--tensor-parallel-size",
    "--data-parallel-size",
    "--max-model-len",
    "--max-num-seqs",
    "--gpu-memory-utilization",
    "--block-size",
    "--quantization",
    "--compilation-config",
    "--additional-config",
    "--speculative-config",
    "--limit-mm-per-prompt",
    "--hf-overrides",
    "--model-impl",
)
TUTORIAL_SWITCHES = ("--trust-remote-code", "--enforce-eager", "--enable-expert-parallel")


def tutorial_path_for(name: str) -> str:
    return f"{TUTORIAL_DIR}/{name}.md"


def tutorial_path(facts: JobFacts) -> str:
    return tutorial_path_for(facts.names.name)


@dataclass(frozen=True)
class TutorialView:
    title: str
    hub_id: str
    served_name: str
    #: the hardware the page is FOR; `verdict` says what actually ran (only an Ascend profile may
    #: be named as verified)
    target_hardware: str
    verdict: Verdict
    npus: int
    serve_lines: tuple[str, ...]
    serve_cmd: str
    env_lines: tuple[str, ...]
    multimodal: bool
    moe: bool
    features: tuple[FeatureFacts, ...]
    accuracy_rows: tuple[tuple[str, str, str], ...]  # (task, metric, value)
    accuracy_cmd: str
    num_fewshot: int | None
    limit: int | None
    e2e_config: str
    max_model_len: int | None
    theoretical_max_len: int | None
    practical_max_len: int | None
    eager_needed: bool
    #: eager came from the fallback ladder (graph mode failed), not from the run's own settings
    eager_from_ladder: bool
    dynamo_disabled: bool
    false_ready: tuple[str, ...]
    version_macro: str
    numbered: bool
    #: the model runs through a zero-code rung (override / Transformers backend), if so
    zero_code: ZeroCodeFacts | None = None


def _serve_lines(serve: ServeFlags, hub_id: str, served: str) -> tuple[str, ...]:
    lines = [f"vllm serve {shell_join([hub_id])}", f"--served-model-name {shell_join([served])}"]
    for flag in TUTORIAL_FLAGS:
        if (v := serve.value(flag)) is not None:
            lines.append(f"{flag} {shell_join([v])}")
    dtype = serve.value("--dtype")
    if dtype and dtype not in ("float32", "auto"):  # float32 is the CPU test profile's choice
        lines.append(f"--dtype {shell_join([dtype])}")
    for switch in TUTORIAL_SWITCHES:
        if serve.has(switch):
            lines.append(switch)
    lines.append("--port 8000")
    return tuple(lines)


def tutorial_view(facts: JobFacts, target: TargetRepo) -> TutorialView:
    from runners.artifacts.e2e_config import PUBLISHED_ENV, config_path

    serve = facts.serve
    hub = facts.names.hub_id or facts.names.ref
    acc = facts.accuracy
    rows = tuple((t.name, m.name, f"{m.value:.4f}") for t in acc.tasks for m in t.metrics)
    env_lines = tuple(f"export {k}={shell_join([v])}" for k, v in serve.env if PUBLISHED_ENV.match(k))
    ladder = [r for g in facts.gates for r in g.ladder]
    return TutorialView(
        title=facts.names.name,
        hub_id=hub,
        served_name=facts.names.served_name,
        target_hardware=facts.target_hardware,
        verdict=facts.verdict,
        npus=facts.tp * max(1, int(serve.value("--data-parallel-size") or 1)),
        serve_lines=(lines := _serve_lines(serve, hub, facts.names.served_name)),
        serve_cmd=" \\\n  ".join(lines),
        env_lines=env_lines,
        multimodal=facts.analysis.multimodal,
        moe=facts.analysis.moe is not None,
        features=facts.features,
        accuracy_rows=rows,
        accuracy_cmd=accuracy_command(facts),
        num_fewshot=acc.num_fewshot,
        limit=acc.limit,
        e2e_config=config_path(facts),
        max_model_len=facts.max_model_len,
        theoretical_max_len=facts.capacity.theoretical_max_len,
        practical_max_len=facts.capacity.practical_max_len,
        eager_needed=serve.has("--enforce-eager"),
        eager_from_ladder=any(
            r.step == "enforce-eager" and r.status == "passed" for g in facts.gates for r in g.ladder
        ),
        dynamo_disabled=any(k == "TORCHDYNAMO_DISABLE" for k, _ in serve.env)
        or any("TORCHDYNAMO_DISABLE" in r.flags and r.status == "passed" for r in ladder),
        false_ready=tuple(g.first_error or g.diagnosis or "" for g in facts.false_ready),
        version_macro=target.version_macro,
        numbered=target.numbered_sections,
        zero_code=facts.zero_code,
    )


def accuracy_command(facts: JobFacts) -> str:
    """The lm_eval command that reproduces the measured accuracy against a running server."""
    acc = facts.accuracy
    hub = facts.names.hub_id or facts.names.ref
    backend = acc.lm_eval_model or (
        "local-chat-completions" if acc.apply_chat_template else "local-completions"
    )
    endpoint = "chat/completions" if backend == "local-chat-completions" else "completions"
    tasks = ",".join(t.name for t in acc.tasks) or ("mmmu_val" if facts.analysis.multimodal else "gsm8k")
    cmd = [
        "lm_eval",
        "--model",
        backend,
        "--model_args",
        f"model={facts.names.served_name},base_url=http://127.0.0.1:8000/v1/{endpoint},"
        f"tokenizer={hub},num_concurrent=8,max_retries=3,"
        # how prompts reach the server, as the measurement sent them (runners/accuracy/plan.py)
        + ",".join(f"{k}={v}" for k, v in request_format_args(backend, acc.apply_chat_template).items()),
        "--tasks",
        tasks,
    ]
    if acc.num_fewshot is not None:
        cmd += ["--num_fewshot", str(acc.num_fewshot)]
    if acc.apply_chat_template:
        cmd.append("--apply_chat_template")
    if acc.fewshot_as_multiturn:
        cmd.append("--fewshot_as_multiturn")
    if acc.limit is not None:
        cmd += ["--limit", str(acc.limit)]
    if acc.batch_size is not None:
        cmd += ["--batch_size", str(acc.batch_size)]
    return " \\\n  ".join(_pairs(cmd))


def _pairs(argv: list[str]) -> list[str]:
    """Group `--flag value` pairs on one line each for a readable multi-line command."""
    out: list[str] = []
    i = 0
    while i < len(argv):
        a = argv[i]
        if a.startswith("--") and i + 1 < len(argv) and not argv[i + 1].startswith("--"):
            out.append(f"{a} {shell_join([argv[i + 1]])}")
            i += 2
        else:
            out.append(a if a == "lm_eval" else shell_join([a]))
            i += 1
    return out


def render_tutorial(facts: JobFacts, target: TargetRepo) -> str:
    view = tutorial_view(facts, target)
    template = (
        "artifacts/tutorial_mkdocs.md.j2" if target.flavor == "mkdocs" else "artifacts/tutorial_sphinx.md.j2"
    )
    return tidy(render(template, t=view))


def headings(markdown: str) -> list[str]:
    """`#`-headings outside fenced code blocks (what a reader sees as the outline)."""
    out: list[str] = []
    fence: str | None = None
    for line in markdown.splitlines():
        stripped = line.strip()
        if stripped.startswith(("```", "~~~")):
            marker = stripped[:3]
            if fence is None:
                fence = marker
            elif fence == marker:
                fence = None
            continue
        if fence is None and line.startswith("#"):
            out.append(line.split(" {:", 1)[0].rstrip())
    return out
