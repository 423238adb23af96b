"""The transformers side of reference parity. A SCRIPT for the serving environment's python.

Run by runners.gates.reference as a subprocess (argv list, bounded time and memory); the bot never
imports torch or transformers:

    <vllm-env>/bin/python -I reference_script.py --model DIR --dtype float32 --max-tokens 8 \
        --top-k 5 --prompts PROMPTS.json --out OUT.json [--trust-remote-code]

It loads the checkpoint with `transformers` (the dtype the server uses), tokenizes each prompt the way
vLLM's `/v1/completions` does for a text prompt (`add_special_tokens=True`), and decodes greedily for
exactly N tokens with a plain loop over the model's raw logits: no generation_config (no repetition
penalty, no EOS stop), the same as the server asked with `ignore_eos` and `repetition_penalty 1`.
Per position it writes the chosen token, its log-softmax and the top-k. The JSON also records what
transformers said while loading (missing / unexpected / mismatched keys): a weight the reference
drops is the first place to look when the two sides disagree.
Remote code runs only when `--trust-remote-code` is given (the job allowed it).
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
import traceback
from pathlib import Path
from typing import Any

_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if p and Path(p).resolve() != _HERE]

DTYPES = ("float32", "bfloat16", "float16", "auto")


def _keys(info: dict[str, Any], name: str) -> list[str]:
    raw = info.get(name) or []
    out: list[str] = []
    for item in raw:
        out.append(item if isinstance(item, str) else " ".join(str(x) for x in item))
    return sorted(out)[:50]


def load(model_dir: str, dtype: str, trust_remote_code: bool) -> tuple[Any, Any, dict[str, Any]]:
    import torch
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch_dtype: Any = "auto" if dtype == "auto" else getattr(torch, dtype)
    tok = AutoTokenizer.from_pretrained(model_dir, trust_remote_code=trust_remote_code)
    errors: list[str] = []
    model = None
    info: dict[str, Any] = {}
    classes: list[Any] = [AutoModelForCausalLM]
    extra = getattr(transformers, "AutoModelForImageTextToText", None)
    if extra is not None:
        classes.append(extra)
    for cls in classes:
        try:
            model, info = cls.from_pretrained(
                model_dir, dtype=torch_dtype, trust_remote_code=trust_remote_code, output_loading_info=True
            )
            break
        except (ValueError, KeyError, TypeError) as exc:  # this auto class does not know the config
            errors.append(f"{cls.__name__}: {type(exc).__name__}: {exc}")
    if model is None:
        raise RuntimeError("transformers cannot load this checkpoint: " + " | ".join(errors))
    model.eval()
    loading = {
        "class": type(model).__name__,
        "missing_keys": _keys(info, "missing_keys"),
        "unexpected_keys": _keys(info, "unexpected_keys"),
        "mismatched_keys": _keys(info, "mismatched_keys"),
        "dtype": str(next(model.parameters()).dtype).replace("torch.", ""),
        "transformers": transformers.__version__,
        "torch": torch.__version__,
    }
    return tok, model, loading


def greedy(model: Any, ids: list[int], max_tokens: int, top_k: int) -> dict[str, Any]:
    import torch

    tokens: list[int] = []
    logprobs: list[float] = []
    tops: list[dict[str, float]] = []
    past = None
    inp = torch.tensor([ids], dtype=torch.long)
    with torch.no_grad():
        for _ in range(max_tokens):
            out = model(input_ids=inp, past_key_values=past, use_cache=True)
            past = out.past_key_values
            lp = torch.log_softmax(out.logits[0, -1].float(), dim=-1)
            nxt = int(torch.argmax(lp).item())
            vals, idx = torch.topk(lp, min(top_k, lp.shape[-1]))
            tokens.append(nxt)
            logprobs.append(float(lp[nxt].item()))
            tops.append({str(int(i)): float(v) for v, i in zip(vals.tolist(), idx.tolist(), strict=True)})
            inp = torch.tensor([[nxt]], dtype=torch.long)
    return {"tokens": tokens, "logprobs": logprobs, "top": tops}


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--model", required=True)
    ap.add_argument("--dtype", choices=DTYPES, default="float32")
    ap.add_argument("--max-tokens", type=int, default=8)
    ap.add_argument("--top-k", type=int, default=5)
    ap.add_argument("--prompts", required=True, help="JSON list of prompt strings")
    ap.add_argument("--out", required=True)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--trust-remote-code", action="store_true")
    args = ap.parse_args(argv)
    t0 = time.monotonic()
    result: dict[str, Any] = {"ok": False}
    try:
        import torch

        if args.threads > 0:
            torch.set_num_threads(args.threads)
        prompts = json.loads(Path(args.prompts).read_text(encoding="utf-8"))
        tok, model, loading = load(args.model, args.dtype, args.trust_remote_code)
        t_load = time.monotonic()
        rows = []
        for prompt in prompts:
            ids = list(tok(prompt, add_special_tokens=True)["input_ids"])
            row = greedy(model, ids, args.max_tokens, args.top_k)
            row["prompt"] = prompt
            row["prompt_token_ids"] = ids
            row["text"] = tok.decode(row["tokens"], skip_special_tokens=True)
            rows.append(row)
        t_end = time.monotonic()
        result = {
            "ok": True,
            "prompts": rows,
            "loading": loading,
            "load_s": round(t_load - t0, 3),
            "generate_s": round(t_end - t_load, 3),
        }
    except Exception as exc:  # reported to the gate as "reference failed: ..."
        result = {
            "ok": False,
            "error": f"{type(exc).__name__}: {exc}"[:2000],
            "traceback": traceback.format_exc()[-4000:],
        }
    result["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    result["total_s"] = round(time.monotonic() - t0, 3)
    Path(args.out).write_text(json.dumps(result), encoding="utf-8")
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
