"""The verdict of a job: what its runs earned, declared once (DESIGN.md "What a verdict means").

Every text a maintainer reads — the status comment's headline, the final comment, the PR title and
draft state, the Chinese report and runbook, the tutorial, the e2e config's `hardware` and the
closing line of `adapt-bot run` — derives its wording from `judge()`. The rule is one-sided: missing
data claims less, never more.

Levels:
  - `validated`: the dummy and the real-weight gate passed, the served model matched the Hugging Face
    reference on the same weights (real-gate `data["parity"]["status"] == "passed"`), the real-gate
    replies are not degenerate (`data["quality"]`), and every accuracy metric is plausible, was
    confirmed by a second measurement within the target CI's tolerance, and was measured on a
    benchmark the target CI runs (not the offline local test task).
  - `serves-not-validated`: nothing failed, but at least one of those is missing, skipped or
    flagged; each such fact is a `Reason`. `served` says how far "serves" goes (real weights,
    dummy weights only, or nothing yet when the run stopped early) and the wording follows it.
  - `failed`: a stage failed or errored (the first in pipeline order); `failed_stage` and
    `failed_reason` name it.

Hardware: a claim names the profile that ran. Only the Ascend profiles (`ASCEND_PROFILE_HARDWARE`)
ever yield an Ascend hardware name. A `cpu` (or any other) run may still reach `validated` — the
model serves, matches its reference and scores plausibly on that profile — but `on_ascend` is
False and every text says "on the cpu profile, not verified on Ascend". Nothing that ran off Ascend
is worded as Ascend verification.

Keys read (written by the gates and the accuracy stage; absent = not checked):
  real-gate `data["parity"]`:  {"status": "passed"|"failed"|"skipped", "reason": str, ...}
  real-gate `data["quality"]`: {"degenerate": bool, "reason"|"kind": str, "known_answers":
      [{"prompt", "expected", "answer", "ok": bool}]} (or "status": "degenerate"|"ok", "flags": [...])
  accuracy `data` (runners/stages/accuracy.py): `tasks` [{name, metrics: [{name, value, stderr,
      implausible, why, reference?}], reference?: {metric: value}}], `plausibility` {implausible, why},
      `reproducibility` {agree: true|false|null, summary}, `task_source` ("local" = the offline test
      task), `references` {task: {metric: value}}.
Plausibility has one rule, the accuracy stage's (`runners.accuracy.checks.judge_metric`: at chance
level for the task, or far below a reference); it is applied here as well, so a result from a stage
version that did not judge (or a stage that did not flag) cannot make a chance-level metric look
like a baseline.

Pure: data in, data out; no I/O, no templates (wording lives in templates/artifacts/_verdict.j2).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Literal

from pydantic import BaseModel, Field

from runners.contracts import STAGES, StageResult

Level = Literal["validated", "serves-not-validated", "failed"]
LEVELS: tuple[str, ...] = ("validated", "serves-not-validated", "failed")

#: pipeline order for "the first stage that failed" (contracts.STAGES plus the artifacts stage)
ORDER: tuple[str, ...] = tuple(dict.fromkeys((*STAGES[:-1], "artifacts", *STAGES[-1:])))

#: Ascend runner profiles -> the hardware they run on (runners/profiles/<name>.yaml `hardware`; a test
#: keeps both in step). Any profile not listed here is not Ascend and never yields an Ascend claim.
ASCEND_PROFILE_HARDWARE: dict[str, str] = {
    "ascend-a2": "Atlas A2 Series",
    "ascend-a3": "Atlas A3 Series",
}
#: what the job's `--hardware` option asks for (the hardware the artifacts are FOR)
TARGET_HARDWARE: dict[str, str] = {"a2": "Atlas A2 Series", "a3": "Atlas A3 Series"}


class Reason(BaseModel):
    """One fact that keeps a job below `validated` (or made it fail).

    `code` is the machine key (the templates word it, in English and Chinese); `detail` carries the
    stage's own words (a skip reason, a diagnosis), never invented text."""

    code: str
    stage: str | None = None
    detail: str | None = None


class AccuracyFlag(BaseModel):
    """A metric that is no baseline: at chance level or far below its reference."""

    task: str
    metric: str
    #: None when the stage flagged the result without naming a metric
    value: float | None
    #: why, in the accuracy stage's words ("0.0000 is at chance level (0.00: free-form numeric answer)")
    why: str | None = None
    #: the task's chance level and the reference the value was judged against, when known
    chance: float | None = None
    reference: float | None = None


#: every Reason.code (templates/artifacts/_verdict.j2 words each; a test checks they agree)
REASON_CODES: tuple[str, ...] = (
    "stage-failed",
    "not-run",
    "skipped",
    "reference-unchecked",
    "reference-skipped",
    "reference-mismatch",
    "quality-unchecked",
    "degenerate-output",
    "accuracy-missing",
    "accuracy-implausible",
    "accuracy-unconfirmed",
    "accuracy-local-task",
)
#: codes of `Verdict.warnings`
WARNING_CODES: tuple[str, ...] = ("known-answer-wrong",)


class Verdict(BaseModel):
    level: Level
    reasons: list[Reason] = Field(default_factory=list)
    #: shown, but not lowering the level (e.g. a wrong answer to a known-answer prompt)
    warnings: list[Reason] = Field(default_factory=list)
    failed_stage: str | None = None
    failed_reason: str | None = None
    failed_diagnosis: str | None = None
    accuracy_flags: list[AccuracyFlag] = Field(default_factory=list)
    #: what has been shown to serve: "real" (the real-weight gate passed), "dummy" (only the dummy
    #: gate), "none" — `serves-not-validated` is worded by it, so an unfinished job never "serves"
    served: Literal["real", "dummy", "none"] = "none"
    #: the runner profile that ran, and the hardware it names (None off Ascend)
    profile: str
    hardware: str | None = None

    @property
    def validated(self) -> bool:
        return self.level == "validated"

    @property
    def failed(self) -> bool:
        return self.level == "failed"

    @property
    def on_ascend(self) -> bool:
        return self.hardware is not None

    def flag_for(self, task: str, metric: str) -> AccuracyFlag | None:
        return next((f for f in self.accuracy_flags if f.task == task and f.metric == metric), None)


def profile_hardware(profile: str) -> str | None:
    """The hardware a profile runs on, if it is an Ascend profile; None for cpu and anything unknown."""
    return ASCEND_PROFILE_HARDWARE.get(profile)


def _float(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        return float(value)
    except ValueError:
        return None


def _text(value: Any) -> str | None:
    if value is None or value == "" or value == []:
        return None
    if isinstance(value, list | tuple):
        return "; ".join(str(v) for v in value)
    return str(value)


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _first_failure(results: Mapping[str, StageResult]) -> StageResult | None:
    ordered = [results[s] for s in ORDER if s in results]
    ordered += [r for s, r in results.items() if s not in ORDER]
    return next((r for r in ordered if r.status in ("failed", "error")), None)


def _gate_reasons(results: Mapping[str, StageResult]) -> list[Reason]:
    out: list[Reason] = []
    for stage in ("dummy-gate", "real-gate"):
        r = results.get(stage)
        if r is None:
            out.append(Reason(code="not-run", stage=stage))
        elif r.status == "skipped":
            out.append(Reason(code="skipped", stage=stage, detail=r.reason or r.diagnosis))
    return out


def parity_state(data: Mapping[str, Any]) -> tuple[str, str | None]:
    """A gate's reference-parity record -> ("passed"|"skipped"|"failed"|"unchecked", detail)."""
    parity = data.get("parity")
    if not isinstance(parity, Mapping):
        return "unchecked", None
    status = parity.get("status")
    detail = _text(parity.get("reason") or parity.get("detail") or parity.get("diagnosis"))
    if status in ("passed", "skipped", "failed"):
        return str(status), detail
    return "unchecked", _text(status) or detail


def quality_state(data: Mapping[str, Any]) -> tuple[str, str | None]:
    """A gate's output-quality record -> ("ok"|"degenerate"|"unchecked", detail)."""
    q = data.get("quality")
    if not isinstance(q, Mapping):
        return "unchecked", None
    flags = q.get("flags")
    if (
        q.get("degenerate")
        or q.get("status") in ("degenerate", "failed")
        or (isinstance(flags, list) and flags)
    ):
        return "degenerate", _text(
            q.get("detail") or q.get("reason") or q.get("kind") or q.get("reasons") or flags
        )
    return "ok", None


_PARITY_CODES = {
    "skipped": "reference-skipped",
    "failed": "reference-mismatch",
    "unchecked": "reference-unchecked",
}


def _parity_reasons(real: StageResult | None) -> list[Reason]:
    if real is None or real.status != "passed":
        return []  # the gate reason already says so
    state, detail = parity_state(real.data)
    if state == "passed":
        return []
    return [Reason(code=_PARITY_CODES[state], stage="real-gate", detail=detail)]


def _quality(real: StageResult | None) -> tuple[list[Reason], list[Reason]]:
    """(reasons, warnings) from the real gate's output-quality record."""
    if real is None or real.status != "passed":
        return [], []
    state, detail = quality_state(real.data)
    if state == "unchecked":
        return [Reason(code="quality-unchecked", stage="real-gate")], []
    reasons = (
        [Reason(code="degenerate-output", stage="real-gate", detail=detail)] if state == "degenerate" else []
    )
    answers = [a for a in real.data["quality"].get("known_answers") or [] if isinstance(a, Mapping)]
    wrong = [a for a in answers if a.get("ok") is False]
    warnings: list[Reason] = []
    if wrong:
        shown = "; ".join(
            f"{a.get('prompt')!s} -> {a.get('answer')!s} (expected {a.get('expected')!s})" for a in wrong
        )
        warnings.append(
            Reason(
                code="known-answer-wrong",
                stage="real-gate",
                detail=f"{len(wrong)} of {len(answers)} wrong: {shown}",
            )
        )
    return reasons, warnings


def _measured(task: Any) -> bool:
    """A task with a name and at least one metric with a name and a numeric value."""
    if not isinstance(task, Mapping) or not task.get("name"):
        return False
    return any(
        isinstance(m, Mapping) and m.get("name") and _float(m.get("value")) is not None
        for m in task.get("metrics") or []
    )


def accuracy_flags(data: Mapping[str, Any]) -> list[AccuracyFlag]:
    """Every implausible metric of an accuracy result: the stage's own judgement or, where it did not
    judge (or said plausible), the same rule applied here; the stage's word wins only to flag."""
    from runners.accuracy.checks import judge_metric

    refs_all = _mapping(data.get("references"))
    plaus = _mapping(data.get("plausibility"))
    stage_flag = data.get("implausible", plaus.get("implausible"))
    stage_why = _text(plaus.get("why")) or (None if isinstance(stage_flag, bool) else _text(stage_flag))
    out: list[AccuracyFlag] = []
    for task in data.get("tasks") or []:
        if not isinstance(task, Mapping) or not task.get("name"):
            continue
        name = str(task["name"])
        task_refs = _mapping(task.get("reference"))
        more_refs = _mapping(refs_all.get(name))
        for m in task.get("metrics") or []:
            if not isinstance(m, Mapping) or not m.get("name"):
                continue
            value = _float(m.get("value"))
            if value is None:
                continue
            metric = str(m["name"])
            ref = _float(m.get("reference"))
            if ref is None:
                ref = _float(task_refs.get(metric, more_refs.get(metric)))
            judged = judge_metric(name, metric, value, _float(m.get("stderr")), ref)
            flagged_by_stage = m.get("implausible") is True or m.get("flag") == "implausible"
            if judged["implausible"] or flagged_by_stage:
                out.append(
                    AccuracyFlag(
                        task=name,
                        metric=metric,
                        value=value,
                        why=_text(m.get("why") or m.get("implausible_reason")) or judged["why"],
                        chance=judged.get("chance"),
                        reference=ref,
                    )
                )
    if stage_flag and not out:
        # the stage flagged something this reader cannot tie to a metric: keep it, unattributed
        out.append(AccuracyFlag(task="?", metric="?", value=None, why=stage_why))
    return out


def _reproduced(data: Mapping[str, Any]) -> Reason | None:
    """The values must have been confirmed by a second measurement (the target CI's tolerance)."""
    repro = data.get("reproducibility")
    if isinstance(repro, Mapping) and repro.get("agree") is True:
        return None
    detail = _text(repro.get("summary")) if isinstance(repro, Mapping) else None
    return Reason(code="accuracy-unconfirmed", stage="accuracy", detail=detail)


def _accuracy(results: Mapping[str, StageResult]) -> tuple[list[Reason], list[AccuracyFlag]]:
    r = results.get("accuracy")
    if r is None:
        return [Reason(code="not-run", stage="accuracy")], []
    if r.status == "skipped":
        return [Reason(code="skipped", stage="accuracy", detail=r.reason or r.diagnosis)], []
    tasks = [t for t in r.data.get("tasks") or [] if _measured(t)]
    if not tasks:
        return [Reason(code="accuracy-missing", stage="accuracy")], []
    reasons: list[Reason] = []
    flags = accuracy_flags(r.data)
    if flags:
        reasons.append(Reason(code="accuracy-implausible", stage="accuracy"))
    if (unconfirmed := _reproduced(r.data)) is not None:
        reasons.append(unconfirmed)
    if r.data.get("task_source") == "local":
        names = ", ".join(str(t.get("name")) for t in tasks)
        reasons.append(Reason(code="accuracy-local-task", stage="accuracy", detail=names))
    return reasons, flags


def _served(results: Mapping[str, StageResult]) -> Literal["real", "dummy", "none"]:
    for stage, served in (("real-gate", "real"), ("dummy-gate", "dummy")):
        r = results.get(stage)
        if r is not None and r.status == "passed":
            return served  # type: ignore[return-value]
    return "none"


def judge(results: Mapping[str, StageResult], profile: str) -> Verdict:
    """The verdict of a job from its stage results and the runner profile that ran them."""
    hardware = profile_hardware(profile)
    served = _served(results)
    failure = _first_failure(results)
    if failure is not None:
        return Verdict(
            level="failed",
            reasons=[
                Reason(code="stage-failed", stage=failure.stage, detail=failure.reason or failure.status)
            ],
            failed_stage=failure.stage,
            failed_reason=failure.reason or failure.status,
            failed_diagnosis=failure.diagnosis,
            served=served,
            profile=profile,
            hardware=hardware,
        )
    real = results.get("real-gate")
    quality_reasons, warnings = _quality(real)
    acc_reasons, flags = _accuracy(results)
    reasons = [*_gate_reasons(results), *_parity_reasons(real), *quality_reasons, *acc_reasons]
    return Verdict(
        level="serves-not-validated" if reasons else "validated",
        reasons=reasons,
        warnings=warnings,
        accuracy_flags=flags,
        served=served,
        profile=profile,
        hardware=hardware,
    )


def codes(reasons: Iterable[Reason]) -> list[str]:
    return [r.code for r in reasons]
