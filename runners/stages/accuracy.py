"""Stage `accuracy`: lm-eval against the served model; the values become the e2e config's baseline.

The target repo's CI re-measures the committed YAML with `lm_eval.simple_evaluate(model="vllm")`
and `rtol=0.05` (runners/accuracy/ci.py). So:
- one AccuracyPlan gives both the YAML's settings and every lm-eval argv (runners/accuracy/plan.py);
- each job measures twice (the profile's `accuracy.check`): "repeat" re-runs the live measurement on
  the first `repeat_limit` documents of the same server (Ascend: 50 of gsm8k's 1319, ~4 % extra;
  cpu: 4 of 8) and compares per-document scores on those documents; "offline-engine" runs CI's own
  path from the YAML we would commit after the server stopped (cpu profile; ~60 s there). Values the
  second measurement contradicts beyond CI's tolerance are withheld: reason `irreproducible`;
- every metric carries lm-eval's stderr and a plausibility judgement (runners/accuracy/checks.py):
  `data["plausibility"] = {"implausible", "why", "metrics": [...]}`, and each metric in
  `data["tasks"]` carries `implausible` / `why`.
Datasets: online unless the operator says offline (runners/accuracy/env.py). The harness runs as a
subprocess from the vLLM environment (the bot never imports it).

Overrides (job options if present, else environment): tasks, limit, num_fewshot, check -
ADAPT_BOT_ACCURACY_TASKS (comma list), ADAPT_BOT_ACCURACY_LIMIT, ADAPT_BOT_ACCURACY_FEWSHOT,
ADAPT_BOT_ACCURACY_CHECK (repeat | offline-engine | none); published reference scores for the
plausibility check: ADAPT_BOT_ACCURACY_REFERENCES='{"gsm8k": {"exact_match,strict-match": 0.88}}'.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from runners import accounting
from runners.accuracy import checks, ci
from runners.accuracy.env import (
    dataset_access,
    dataset_diagnosis,
    missing_dataset,
    recorded_env,
)
from runners.accuracy.env import lm_eval_env as _lm_eval_env
from runners.accuracy.plan import (
    LOCAL_DATA,
    LOCAL_TASK,
    AccuracyPlan,
    AccuracySpec,
    has_chat_template,
    live_argv,
    make_plan,
    write_local_task,
)
from runners.accuracy.results import find_results_file, parse_results, read_doc_scores, responses
from runners.context import StageContext
from runners.contracts import Evidence, StageResult, utcnow
from runners.stage_data import AccuracyData, wire

__all__ = [
    "LOCAL_DATA",
    "LOCAL_TASK",
    "AccuracyPlan",
    "accuracy_spec",
    "lm_eval_argv",
    "lm_eval_env",
    "parse_results",
    "plan_for",
    "run",
    "run_cancellable",
    "serve_overrides",
    "stage_record",
    "write_local_task",
]

lm_eval_argv = live_argv
#: the cpu profile's section when a profile has none (tests pass bare stand-ins)
CPU_DEFAULT = AccuracySpec(task_source="local", offline=True, limit=8, timeout_s=900, repeat_limit=4)


def accuracy_spec(profile: Any) -> AccuracySpec:
    spec = getattr(profile, "accuracy", None)
    if isinstance(spec, AccuracySpec):
        return spec
    return CPU_DEFAULT if getattr(profile, "platform", "cpu") == "cpu" else AccuracySpec()


def lm_eval_env(scratch: Path, spec: AccuracySpec = CPU_DEFAULT) -> dict[str, str]:
    return _lm_eval_env(spec, os.environ, scratch)


def _override(ctx: StageContext, attr: str, env: str) -> str | None:
    value = getattr(ctx.options, attr, None)
    if value is not None:
        return ",".join(value) if isinstance(value, list | tuple) else str(value)
    return os.environ.get(env) or None


def _int(text: str | None) -> int | None:
    return int(text) if text and text.isdigit() else None


def plan_for(ctx: StageContext, multimodal: bool) -> AccuracyPlan:
    """Tasks and settings for this job (real tasks on Ascend, the local task on the cpu profile)."""
    tasks = _override(ctx, "accuracy_tasks", "ADAPT_BOT_ACCURACY_TASKS")
    return make_plan(
        accuracy_spec(ctx.profile),
        multimodal=multimodal,
        chat=has_chat_template(ctx.model_path),
        tasks_override=[t.strip() for t in tasks.split(",") if t.strip()] if tasks else None,
        limit_override=_int(_override(ctx, "accuracy_limit", "ADAPT_BOT_ACCURACY_LIMIT")),
        fewshot_override=_int(_override(ctx, "accuracy_fewshot", "ADAPT_BOT_ACCURACY_FEWSHOT")),
    )


def references_for(ctx: StageContext) -> dict[str, dict[str, float]]:
    """Published scores to judge against ({task: {metric: value}}, e.g. the model card's gsm8k):
    job option `accuracy_references` when the job carries one, else ADAPT_BOT_ACCURACY_REFERENCES
    (JSON). Anything malformed is ignored: a reference only ever adds a flag."""
    raw: Any = getattr(ctx.options, "accuracy_references", None)
    if raw is None and os.environ.get("ADAPT_BOT_ACCURACY_REFERENCES"):
        try:
            raw = json.loads(os.environ["ADAPT_BOT_ACCURACY_REFERENCES"])
        except ValueError:
            raw = None
    out: dict[str, dict[str, float]] = {}
    if isinstance(raw, Mapping):
        for task, metrics in raw.items():
            if isinstance(metrics, Mapping):
                vals = {
                    str(m): float(v)
                    for m, v in metrics.items()
                    if isinstance(v, int | float) and not isinstance(v, bool)
                }
                if vals:
                    out[str(task)] = vals
    return out


def check_for(ctx: StageContext, spec: AccuracySpec) -> str:
    """The second measurement; "offline-engine" needs free devices after the server, so cpu only."""
    wanted = _override(ctx, "accuracy_check", "ADAPT_BOT_ACCURACY_CHECK") or spec.check
    if wanted not in ("repeat", "offline-engine", "none"):
        wanted = spec.check
    if wanted == "offline-engine" and getattr(ctx.profile, "platform", "cpu") != "cpu":
        return "repeat"
    return wanted


def lm_eval_command(profile: Any) -> list[str]:
    """lm_eval from the same environment as vLLM (the cpu venv's bin/, or the image's PATH)."""
    try:
        first = Path(profile.vllm_command()[0])
        cand = first.parent / "lm_eval"
        if cand.is_file() and os.access(cand, os.X_OK):
            return [str(cand)]
    except Exception:  # noqa: S110 - a profile without a vllm locator falls back to PATH
        pass
    found = shutil.which("lm_eval")
    if found:
        return [found]
    raise FileNotFoundError(
        "lm_eval not found next to vLLM or on PATH: install lm-eval[api] in the vLLM environment"
    )


def vllm_python(profile: Any) -> str:
    """The python of the vLLM environment (for CI's offline engine path)."""
    first = Path(profile.vllm_command()[0])
    if first.name.startswith("python"):
        return str(first)
    for name in ("python", "python3"):
        if (first.parent / name).is_file():
            return str(first.parent / name)
    return shutil.which("python3") or "python3"


def run_cancellable(
    argv: list[str], *, env: Mapping[str, str], cwd: Path, log_path: Path, timeout_s: float, cancel: Any
) -> tuple[int | None, str]:
    """Run in its own process group; poll the cancel flag every second; kill the group on exit."""
    with log_path.open("ab") as log, accounting.timed(log_path.parent, "lm_eval"):
        proc = subprocess.Popen(
            argv, cwd=cwd, env=dict(env), stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        deadline = time.monotonic() + timeout_s
        outcome = "finished"
        try:
            while proc.poll() is None:
                if cancel is not None and cancel.is_set():
                    outcome = "cancelled"
                    break
                if time.monotonic() > deadline:
                    outcome = "timeout"
                    break
                time.sleep(1.0)
        finally:
            if proc.poll() is None:
                for sig in (signal.SIGTERM, signal.SIGKILL):
                    try:
                        os.killpg(proc.pid, sig)
                    except ProcessLookupError:
                        break
                    try:
                        proc.wait(10)
                        break
                    except subprocess.TimeoutExpired:
                        continue
    return proc.returncode, outcome


_SECRETISH = re.compile(r"TOKEN|SECRET|PASSWORD|KEY|CREDENTIAL|PROXY", re.I)
_HOST_VARS = {"PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "PYTHONPATH", "LD_LIBRARY_PATH", "LD_PRELOAD"}


def _publishable_env(env: Mapping[str, str]) -> dict[str, str]:
    """Serve env worth recording (runtime switches); host plumbing and anything secret-looking dropped."""
    return {
        k: v
        for k, v in env.items()
        if k not in _HOST_VARS and not _SECRETISH.search(k) and not k.startswith("ADAPT_BOT_")
    }


def _tail(path: Path, lines: int = 30) -> str:
    """Last lines of a log, without progress-bar redraws (carriage-return frames)."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    kept = [ln.rstrip("\r").rsplit("\r", 1)[-1] for ln in text.split("\n")]
    return "\n".join([ln for ln in kept if ln.strip()][-lines:])


#: few-shot prompts need room: gsm8k 5-shot is ~1k tokens with a real tokenizer
ACCURACY_MAX_MODEL_LEN = 4096


def serve_overrides(ctx: StageContext, analysis: Mapping[str, Any]) -> dict[str, Any]:
    """Serve settings for the accuracy run: the job's max length, else enough for few-shot prompts
    (capped by the model's own limit)."""
    if ctx.options.max_model_len:
        return {}
    mpe = analysis.get("max_position_embeddings")
    if isinstance(mpe, int) and not isinstance(mpe, bool) and mpe > 0:
        return {"max_model_len": min(mpe, ACCURACY_MAX_MODEL_LEN)}
    return {}


def _flag(argv: list[str], name: str) -> str | None:
    return argv[argv.index(name) + 1] if name in argv and argv.index(name) + 1 < len(argv) else None


@dataclass
class Measurement:
    """One lm-eval run: where, what it printed, what it measured."""

    label: str  # live-server | repeat | offline-engine
    argv: list[str]
    log_path: Path
    output: Path
    code: int | None = None
    outcome: str = "not run"
    results_path: Path | None = None
    tasks: list[dict[str, Any]] = field(default_factory=list)
    lm_eval_version: str | None = None
    wall_s: float = 0.0

    @property
    def ok(self) -> bool:
        return self.outcome == "finished" and self.code == 0 and bool(self.tasks)

    def record(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "argv": self.argv,
            "log_path": str(self.log_path),
            "results_path": str(self.results_path) if self.results_path else None,
            "exit_code": self.code,
            "outcome": self.outcome,
            "tasks": self.tasks,
            "wall_s": round(self.wall_s, 1),
        }


def _measure(
    m: Measurement,
    plan_tasks: tuple[str, ...],
    *,
    env: Mapping[str, str],
    cwd: Path,
    timeout_s: float,
    cancel: Any,
) -> Measurement:
    m.output.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    m.code, m.outcome = run_cancellable(
        m.argv, env=env, cwd=cwd, log_path=m.log_path, timeout_s=timeout_s, cancel=cancel
    )
    m.wall_s = time.monotonic() - t0
    m.results_path = find_results_file(m.output)
    if m.outcome == "finished" and m.code == 0 and m.results_path is not None:
        doc = json.loads(m.results_path.read_text(encoding="utf-8"))
        m.tasks = parse_results(doc, plan_tasks)
        m.lm_eval_version = doc.get("lm_eval_version") or doc.get("git_hash")
    return m


def _failure(
    m: Measurement,
    *,
    plan: AccuracyPlan,
    access: Any,
    alive: bool,
    data: dict[str, Any],
    started: Any,
    evidence: list[Evidence],
) -> StageResult:
    if m.outcome in ("timeout", "cancelled"):
        return StageResult(
            stage="accuracy",
            status="failed",
            reason=m.outcome,
            diagnosis=f"lm-eval ({m.label}) hit its limit" if m.outcome == "timeout" else "cancelled",
            evidence=evidence,
            data=stage_record(data),
            started_at=started,
        )
    log_text = m.log_path.read_text(encoding="utf-8", errors="replace") if m.log_path.is_file() else ""
    dataset = missing_dataset(log_text)
    if dataset is not None:
        diagnosis, next_step = dataset_diagnosis(dataset, ",".join(plan.tasks), access, log_text)
        data["missing_dataset"] = dataset
        return StageResult(
            stage="accuracy",
            status="failed",
            reason="dataset-missing",
            diagnosis=diagnosis,
            next_step=next_step,
            evidence=evidence,
            data=stage_record(data),
            started_at=started,
        )
    if m.outcome == "finished" and m.code == 0 and m.results_path is not None:
        return StageResult(
            stage="accuracy",
            status="failed",
            reason="no-metrics",
            diagnosis=f"lm-eval ({m.label}) finished but reported no metric for the requested tasks",
            evidence=evidence,
            data=stage_record(data),
            started_at=started,
        )
    return StageResult(
        stage="accuracy",
        status="failed",
        reason="lm-eval-failed" if alive else "crashed",
        diagnosis=f"lm-eval ({m.label}) exited with {m.code}"
        + ("" if alive else "; the server died during the run"),
        next_step="Read the lm-eval log; if the server died, the model fails under load (see serve log).",
        evidence=evidence,
        data=stage_record(data),
        started_at=started,
    )


def stage_record(data: Mapping[str, Any]) -> dict[str, Any]:
    """The stage's data through `AccuracyData`, the readers' contract (runners.stage_data): a fact of
    the wrong shape fails here, in the stage that wrote it, instead of becoming an unknown fact in the
    report. The data is collected across `run` (each exit returns what it has so far), so it is
    validated once per exit; keys stay in the order the stage set them, so the stored JSON is what the
    stage wrote."""
    typed = wire(AccuracyData.model_validate(dict(data)))
    return {**{k: typed[k] for k in data if k in typed}, **typed}


def _ci_config(ctx: StageContext, data: Mapping[str, Any]) -> dict[str, Any]:
    """The e2e YAML this run would commit (built by the artifacts code from a provisional result)."""
    from runners.artifacts.e2e_config import build_e2e_config
    from runners.artifacts.facts import collect

    results = {k: v for k, v in ctx.previous.items()}
    results["accuracy"] = StageResult(stage="accuracy", status="passed", data=dict(data))
    return build_e2e_config(collect(ctx.options, results))


def _summary(tasks: list[dict[str, Any]]) -> str:
    def one(m: Mapping[str, Any]) -> str:
        se = f" ± {m['stderr']:.4f}" if m.get("stderr") is not None else ""
        return f"{m['name']}={m['value']:.4f}{se}"

    return "; ".join(f"{t['name']}: " + ", ".join(one(m) for m in t["metrics"]) for t in tasks)


def run(ctx: StageContext) -> StageResult:
    from runners.serve import ServeError, served

    started = utcnow()
    analysis = ctx.previous.get("analyze")
    multimodal = bool(analysis and analysis.data.get("multimodal"))
    spec = accuracy_spec(ctx.profile)
    plan = plan_for(ctx, multimodal)
    check = check_for(ctx, spec)
    out_dir = ctx.workspace.path / "accuracy"
    tmp = ctx.workspace.path / "tmp" / "accuracy"
    if out_dir.exists():
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True)
    tmp.mkdir(parents=True, exist_ok=True)
    if plan.task_source == "local":
        plan = replace(plan, include_path=write_local_task(tmp / "tasks"))
    try:
        lm_eval = lm_eval_command(ctx.profile)
    except FileNotFoundError as exc:
        return StageResult(
            stage="accuracy",
            status="error",
            reason="lm-eval-missing",
            diagnosis=str(exc),
            next_step="pip install 'lm-eval[api]' in the vLLM environment",
            started_at=started,
        )
    env = _lm_eval_env(spec, os.environ, tmp)
    access = dataset_access(spec, os.environ, tmp)
    log_path = ctx.workspace.log_path("lm-eval")
    data: dict[str, Any] = {
        **plan.record(),
        "tasks": [],
        "settings": plan.settings(),
        "log_path": str(log_path),
        "lm_eval_env": recorded_env(env),
        "datasets": {
            "offline": access.offline,
            "offline_source": access.offline_source,
            "cache_dir": access.cache_dir,
        },
        "check": check,
    }
    overrides = serve_overrides(ctx, analysis.data if analysis else {})
    second: Measurement | None = None
    try:
        with served(ctx, log_name="accuracy", overrides=overrides) as server:
            data["serve_argv"] = list(server.argv)
            data["env"] = _publishable_env(server.env)
            data["serve_log"] = str(server.log_path)
            data["ready_s"] = server.ready_after_s
            if server.share:  # the job's shared real-weight start, or why this run has its own
                data["server"] = dict(server.share)
            share_notes = [n for n in server.notes if n.kind == "config" and "start" in n.text]
            serve_env = dict(server.env)
            mml = _flag(server.argv, "--max-model-len")

            def live(label: str, p: AccuracyPlan, out: Path, log: Path) -> Measurement:
                argv = live_argv(
                    lm_eval,
                    p,
                    base_url=server.base_url,
                    served_name=server.served_name,
                    tokenizer=str(ctx.model_path),
                    output_path=out,
                    max_length=int(mml) if mml and mml.isdigit() else None,
                    trust_remote_code="--trust-remote-code" in server.argv,
                )
                return Measurement(label, argv, log, out)

            first = live("live-server", plan, out_dir / "live", log_path)
            data["lm_eval_argv"] = first.argv
            ctx.progress(f"lm-eval {','.join(plan.tasks)} ({plan.backend})")
            _measure(first, plan.tasks, env=env, cwd=tmp, timeout_s=plan.timeout_s, cancel=ctx.cancel)
            if first.ok and check == "repeat":
                rep_plan = plan.with_limit(spec.repeat_limit)
                second = live(
                    "repeat", rep_plan, out_dir / "repeat", ctx.workspace.log_path("lm-eval-repeat")
                )
                ctx.progress(f"lm-eval repeat on {rep_plan.limit} documents (reproducibility)")
                _measure(
                    second, plan.tasks, env=env, cwd=tmp, timeout_s=spec.check_timeout_s, cancel=ctx.cancel
                )
            alive = server.alive()
    except ServeError as exc:
        return StageResult(
            stage="accuracy",
            status="failed",
            reason=getattr(exc, "reason", None) or "serve-failed",
            diagnosis=f"the server for the accuracy run did not come up: {exc}",
            next_step="Check the real-weight gate first (`/adapt rerun real-gate`).",
            data=stage_record(data),
            started_at=started,
        )
    evidence = [
        Evidence(kind="command", text=" ".join(first.argv)),
        Evidence(kind="log", text=_tail(log_path, 15), log_path=str(log_path)),
        *share_notes,
    ]
    data["lm_eval_version"] = first.lm_eval_version
    data["measurements"] = [first.record()]
    if not first.ok:
        return _failure(
            first, plan=plan, access=access, alive=alive, data=data, started=started, evidence=evidence
        )
    assert first.results_path is not None
    data["results_path"] = str(first.results_path)
    tasks = first.tasks

    if check == "offline-engine":
        ctx.progress("lm-eval offline engine (the target CI's path) for the reproducibility check")
        second = _offline_engine(
            ctx, {**data, "tasks": tasks}, plan, env, serve_env, out_dir, tmp, spec.check_timeout_s
        )
    if second is not None:
        data["measurements"].append(second.record())
        if second.outcome == "cancelled":
            return StageResult(
                stage="accuracy",
                status="failed",
                reason="cancelled",
                diagnosis="cancelled during the second measurement",
                evidence=evidence,
                data=stage_record(data),
                started_at=started,
            )
    repro = _reproducibility(check, first, second)
    data["reproducibility"] = repro
    from runners.accuracy import hf_reference  # issue / model card / transformers on the same docs

    refs, ref_sources, data["transformers_reference"] = hf_reference.complete(
        ctx, references_for(ctx), tasks, plan, env=env, cwd=tmp, served_output=first.output
    )
    data["reference_sources"] = ref_sources
    if refs:
        data["references"] = refs
    plaus = checks.plausibility(
        tasks, {(t, m): v for t, metrics in refs.items() for m, v in metrics.items()}, ref_sources
    )
    data["plausibility"] = plaus
    flags = {(r["task"], r["metric"]): r for r in plaus["metrics"]}
    for t in tasks:
        for m in t["metrics"]:
            row = flags[(t["name"], m["name"])]
            m["implausible"], m["why"] = row["implausible"], row["why"]
            if row["reference"] is not None:
                m["reference"] = row["reference"]
    summary = _summary(tasks)
    evidence.insert(0, Evidence(kind="result", text=summary, log_path=str(first.results_path)))
    evidence.append(Evidence(kind="result", text=repro["summary"]))
    if plaus["implausible"]:
        evidence.append(Evidence(kind="result", text=f"implausible: {plaus['why']}"))
    status, reason = verdict(repro)
    if status == "failed":
        data["withheld_tasks"] = tasks
        return StageResult(
            stage="accuracy",
            status="failed",
            reason=reason,
            diagnosis=repro["summary"] + "; the values are withheld from the e2e config.",
            next_step=(
                "Greedy decoding on one server should repeat exactly: look for nondeterminism "
                "(sampling settings, batch-dependent kernels) in the two lm-eval logs, then "
                "`/adapt rerun accuracy`."
                if reason == "irreproducible"
                else "Read the second measurement's log, fix it, then `/adapt rerun accuracy`."
            ),
            evidence=evidence,
            data=stage_record(data),
            started_at=started,
        )
    data["tasks"] = tasks  # only values a second measurement did not contradict reach the YAML
    return StageResult(
        stage="accuracy", status="passed", evidence=evidence, data=stage_record(data), started_at=started
    )


def verdict(repro: Mapping[str, Any]) -> tuple[str, str | None]:
    """("passed", None), or ("failed", "irreproducible") when the two measurements disagree beyond
    CI's tolerance, or ("failed", "unconfirmed") when the second one did not finish."""
    if repro.get("agree") is False:
        return "failed", "irreproducible" if repro.get("ran") else "unconfirmed"
    return "passed", None


def _offline_engine(
    ctx: StageContext,
    data: Mapping[str, Any],
    plan: AccuracyPlan,
    env: Mapping[str, str],
    serve_env: Mapping[str, str],
    out_dir: Path,
    tmp: Path,
    timeout_s: float,
) -> Measurement:
    """CI's own path: simple_evaluate(model="vllm", ...) with the params CI derives from our YAML."""
    out = out_dir / "offline-engine"
    out.mkdir(parents=True, exist_ok=True)
    log = ctx.workspace.log_path("lm-eval-offline")
    try:
        cfg = _ci_config(ctx, data)
    except ValueError as exc:  # ArtifactError: the YAML cannot be built, so CI could not run either
        log.write_text(f"the e2e config could not be built: {exc}\n", encoding="utf-8")
        return Measurement("offline-engine", [], log, out, outcome="no-config")
    params = ci.ci_eval_params(
        cfg, pretrained=str(ctx.model_path), tp_size=cfg["serve"]["tensor_parallel_size"]
    )
    request = tmp / "ci-request.json"
    request.write_text(
        json.dumps(ci.offline_request(params, include_path=plan.include_path, output_path=out)), "utf-8"
    )
    argv = ci.offline_argv(vllm_python(ctx.profile), request)
    # the engine needs the serving environment (vLLM's platform switches) and lm-eval's dataset env
    full_env = {**serve_env, **env}
    m = Measurement("offline-engine", argv, log, out)
    return _measure(m, plan.tasks, env=full_env, cwd=tmp, timeout_s=timeout_s, cancel=ctx.cancel)


def _reproducibility(check: str, first: Measurement, second: Measurement | None) -> dict[str, Any]:
    """{"check", "rtol", "ran", "agree", "pairs", "summary"}; agree None = no second measurement."""
    base: dict[str, Any] = {"check": check, "rtol": ci.RTOL}
    if check == "none" or second is None:
        return {**base, "ran": False, "agree": None, "pairs": [],
                "summary": "one measurement only (check: none): reproducibility not checked"}  # fmt: skip
    if not second.ok:
        return {**base, "ran": False, "agree": False, "pairs": [],
                "summary": f"the second measurement ({second.label}) did not finish "
                           f"(outcome {second.outcome}, exit {second.code}; "
                           f"log {second.log_path})"}  # fmt: skip
    if check == "repeat":
        pairs = checks.compare_doc_scores(read_doc_scores(first.output), read_doc_scores(second.output))
    else:
        pairs = checks.compare_tasks(first.tasks, second.tasks)
    same = responses(first.output)
    other = responses(second.output)
    common = sorted(set(same) & set(other))
    identical = sum(1 for k in common if same[k] == other[k])
    agree = checks.reproducible(pairs)
    figures = ", ".join(
        f"{p['task']} {p['metric']} {p['first']:.4f} vs {p['second']:.4f}" if p["first"] is not None
        else f"{p['task']} {p['metric']} no common documents"
        for p in pairs
    )  # fmt: skip
    verdict = "agree" if agree else "DISAGREE"
    return {
        **base,
        "ran": True,
        "agree": agree,
        "pairs": pairs,
        "identical_responses": identical,
        "compared_responses": len(common),
        "summary": f"{first.label} vs {second.label}: {verdict} within rtol {ci.RTOL} ({figures}); "
        f"{identical}/{len(common)} generations identical",
    }
