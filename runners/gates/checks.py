"""What the gates check on a server that is READY and answered its smoke: output quality, known
answers and reference parity (issue 10). I/O here is requests to the running server and reading the
checkpoint's tokenizer files; the decisions are in runners.gates.quality and runners.gates.parity.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from runners.contracts import Evidence
from runners.gates import parity as par
from runners.gates import quality as qual
from runners.gates.reference import ReferenceRun
from runners.serve import RunningServer, chat_completion, completion_logprobs

KNOWN_ANSWER_MAX_TOKENS = 16


def chat_template_present(model_dir: Path, facts: Mapping[str, Any] | None = None) -> bool:
    """Does the checkpoint ship a chat template (tokenizer_config.json, chat_template.jinja/.json)?
    The analysis result says so when present; the files are the fallback."""
    if facts is not None and isinstance(facts.get("chat_template"), bool) and facts.get("chat_template"):
        return True
    if (model_dir / "chat_template.jinja").is_file() or (model_dir / "chat_template.json").is_file():
        return True
    cfg = _json(model_dir / "tokenizer_config.json")
    return bool(cfg.get("chat_template"))


def special_tokens_of(model_dir: Path) -> list[str]:
    """Special-token strings of the tokenizer (their text in a reply is not content)."""
    cfg = _json(model_dir / "tokenizer_config.json")
    out: set[str] = set()
    for key in ("bos_token", "eos_token", "unk_token", "pad_token", "sep_token", "cls_token", "mask_token"):
        v = cfg.get(key)
        if isinstance(v, str):
            out.add(v)
        elif isinstance(v, dict) and isinstance(v.get("content"), str):
            out.add(v["content"])
    decoder = cfg.get("added_tokens_decoder")
    if isinstance(decoder, dict):
        for item in decoder.values():
            if isinstance(item, dict) and item.get("special") and isinstance(item.get("content"), str):
                out.add(item["content"])
    extra = cfg.get("additional_special_tokens") or cfg.get("extra_special_tokens")
    if isinstance(extra, list):
        out.update(t for t in extra if isinstance(t, str))
    return sorted(out)


def _json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def known_answers(server: RunningServer) -> list[qual.AnswerCheck]:
    """Ask the known-answer prompts (chat models only), temperature 0."""
    out = []
    for item in qual.KNOWN_ANSWERS:
        reply = chat_completion(server, item.prompt, KNOWN_ANSWER_MAX_TOKENS)
        out.append(qual.check_answer(item, reply.content, reply.status))
    return out


def parity_against(server: RunningServer, ref: ReferenceRun, cancel: Any = None) -> par.ParityResult:
    """Wait for the reference, ask the server the same prompt token ids, compare."""
    outcome = ref.wait(cancel)
    if not outcome.ok:
        return par.skipped(
            outcome.skip_reason or "reference unavailable",
            top_k=ref.top_k,
            max_tokens=ref.max_tokens,
            dtype=ref.dtype,
            reference=outcome.info,
        )
    prompts: list[str] = []
    ids: list[list[int]] = []
    servers: list[par.Stream] = []
    refs: list[par.Stream] = []
    for row in outcome.prompts:
        prompt_ids = [int(t) for t in row.get("prompt_token_ids") or []]
        reply = completion_logprobs(server, prompt_ids, ref.max_tokens, ref.top_k)
        if not reply.ok or reply.body is None:
            return par.skipped(
                f"reference ran, but the server's logprobs request failed: {reply.error}",
                top_k=ref.top_k,
                max_tokens=ref.max_tokens,
                dtype=ref.dtype,
                reference=outcome.info,
            )
        try:
            choice = reply.body["choices"][0]
            stream = par.parse_vllm_logprobs(choice)
        except (KeyError, IndexError, TypeError, ValueError) as exc:
            return par.skipped(
                f"reference ran, but the server's logprobs answer could not be read: {exc}",
                top_k=ref.top_k,
                max_tokens=ref.max_tokens,
                dtype=ref.dtype,
                reference=outcome.info,
            )
        prompts.append(str(row.get("prompt", "")))
        ids.append(prompt_ids)
        servers.append(stream)
        refs.append(
            par.Stream(
                tokens=[int(t) for t in row.get("tokens") or []],
                logprobs=list(row.get("logprobs") or []),
                top=[{int(k): float(v) for k, v in (t or {}).items()} for t in row.get("top") or []],
                text=str(row.get("text") or ""),
            )
        )
    result = par.compare(
        prompts,
        servers,
        refs,
        prompt_token_ids=ids,
        top_k=ref.top_k,
        max_tokens=ref.max_tokens,
        dtype=ref.dtype,
    )
    result.reference = dict(outcome.info)
    return result


def _lp(v: float | None) -> str:
    return "not in top-k" if v is None else f"{v:.4f}"


def mismatch_diagnosis(result: par.ParityResult) -> str:
    """Why the gate failed with `reference-mismatch`, pointing at the usual causes."""
    row = result.prompts[result.first_failure or 0] if result.prompts else None
    where = ""
    if row is not None and row.divergence is not None:
        d = row.divergence
        where = (
            f": prompt {row.prompt!r} diverged at generated token {d.position} after {row.matched} equal "
            f"tokens — server token {d.server_token} (server logprob {_lp(d.server_logprob)}, reference "
            f"logprob {_lp(d.reference_logprob_of_server_token)}) vs reference token {d.reference_token} "
            f"(reference logprob {_lp(d.reference_logprob)}, server logprob "
            f"{_lp(d.server_logprob_of_reference_token)}), neither inside the other's top-{result.top_k}"
        )
    elif row is not None:
        where = f": prompt {row.prompt!r}: {row.note}"
    dmax = (
        f"; max |Δlogprob| over the matched prefix {result.max_abs_dlogprob:.4f}"
        if (result.max_abs_dlogprob is not None)
        else ""
    )
    loading = result.reference.get("loading") if isinstance(result.reference, dict) else None
    dropped = ""
    if isinstance(loading, dict):
        parts = []
        for key, label in (
            ("unexpected_keys", "ignored (unexpected) checkpoint keys"),
            ("missing_keys", "missing keys"),
            ("mismatched_keys", "shape-mismatched keys"),
        ):
            keys = loading.get(key) or []
            if keys:
                parts.append(f"{label}: {', '.join(map(str, keys[:4]))}{' …' if len(keys) > 4 else ''}")
        if parts:
            dropped = "; transformers reported " + "; ".join(parts)
    return (
        f"the served model does not compute what transformers computes on the same weights "
        f"({result.dtype}, greedy, {result.max_tokens} tokens){where}{dmax}{dropped}. This is usually "
        "the weight mapping (a tensor loaded into the wrong parameter, or dropped by one side), the "
        "dtype, rope (rope_theta / scaling / partial rotary), or a norm (eps, QK-norm, offset) — a "
        "config field one side honours and the other ignores counts too"
    )


MISMATCH_NEXT_STEP = (
    "compare vLLM's model class (load_weights mapping, config fields it reads) with transformers' "
    "modeling file for this architecture, starting with the keys and fields named in the diagnosis; "
    "rerun the real gate after the fix (data.parity holds both token streams)"
)


def parity_evidence(result: par.ParityResult) -> list[Evidence]:
    """Prompts, both token streams, the first divergence, max |Δlogprob|: one line per prompt."""
    out = []
    for i, row in enumerate(result.prompts, 1):
        div = row.divergence
        text = (
            f"parity prompt {i} {row.prompt!r} ids {row.prompt_token_ids}: "
            f"server {row.server.tokens} / reference {row.reference.tokens}; "
            + (
                f"first divergence at {div.position}: server {div.server_token} "
                f"({_lp(div.server_logprob)}) vs reference {div.reference_token} "
                f"({_lp(div.reference_logprob)}), "
                f"within top-{result.top_k}: {div.within_top_k}"
                if div is not None
                else row.note
            )
            + (f"; max |Δlogprob| {row.max_abs_dlogprob:.2e}" if row.max_abs_dlogprob is not None else "")
        )
        out.append(Evidence(kind="parity", text=text))
    if result.status == "skipped":
        out.append(Evidence(kind="parity", text=result.reason))
    return out


__all__ = [
    "MISMATCH_NEXT_STEP",
    "chat_template_present",
    "known_answers",
    "mismatch_diagnosis",
    "parity_against",
    "parity_evidence",
    "special_tokens_of",
]
