"""Tokenizer ids the model's embedding has no row for (pure).

`vocab_size` in config.json is the number of embedding rows. vLLM accepts a prompt id up to the
larger of the tokenizer's and the model's vocabulary (renderers/base.py), so a tokenizer id past
`vocab_size` indexes past the embedding and the request (or the engine) fails; when the id is a
special token the chat template writes (`<|im_start|>`), that is every chat request. The ids
come from the tokenizer files alone: tokenizer.json (`added_tokens`, the model vocabulary),
tokenizer_config.json (`added_tokens_decoder`) and added_tokens.json.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from runners.analysis.model import Problem

EXAMPLES = 3


@dataclass(frozen=True)
class TokenId:
    id: int
    content: str
    special: bool
    source: str


def token_ids(side: Mapping[str, Any]) -> list[TokenId]:
    """Every (id, token) the tokenizer files declare, with where it came from."""
    out: list[TokenId] = []
    tok = side.get("tokenizer.json")
    if isinstance(tok, dict):
        for t in tok.get("added_tokens") or []:
            if isinstance(t, dict) and isinstance(t.get("id"), int):
                out.append(
                    TokenId(
                        t["id"],
                        str(t.get("content", "")),
                        bool(t.get("special")),
                        "tokenizer.json added_tokens",
                    )
                )
        model = tok.get("model")
        vocab = model.get("vocab") if isinstance(model, dict) else None
        if isinstance(vocab, dict) and vocab:
            top = max(((i, t) for t, i in vocab.items() if isinstance(i, int)), default=None)
            if top is not None:
                out.append(TokenId(top[0], str(top[1]), False, "tokenizer.json model vocab"))
        elif isinstance(vocab, list) and vocab:  # Unigram: [[piece, score], ...], id = position
            last = vocab[-1]
            piece = last[0] if isinstance(last, list) and last else ""
            out.append(TokenId(len(vocab) - 1, str(piece), False, "tokenizer.json model vocab"))
    cfg = side.get("tokenizer_config.json")
    decoder = cfg.get("added_tokens_decoder") if isinstance(cfg, dict) else None
    if isinstance(decoder, dict):
        for key, t in decoder.items():
            if str(key).isdigit() and isinstance(t, dict):
                out.append(
                    TokenId(
                        int(key),
                        str(t.get("content", "")),
                        bool(t.get("special")),
                        "tokenizer_config.json added_tokens_decoder",
                    )
                )
    added = side.get("added_tokens.json")
    if isinstance(added, dict):
        out.extend(
            TokenId(i, str(t), False, "added_tokens.json") for t, i in added.items() if isinstance(i, int)
        )
    return out


def ids_beyond_vocab(vocab_size: int | None, side: Mapping[str, Any]) -> list[Problem]:
    """One problem for the ids at or past `vocab_size`: blocking when a special token is among them."""
    if not vocab_size:
        return []
    seen: dict[int, TokenId] = {}
    for t in token_ids(side):
        if t.id >= vocab_size and (t.id not in seen or (t.special and not seen[t.id].special)):
            seen[t.id] = t
    if not seen:
        return []
    beyond = sorted(seen.values(), key=lambda t: (not t.special, t.id))
    special = [t for t in beyond if t.special]
    shown = ", ".join(
        f"{t.id} {t.content!r}{' (special)' if t.special else ''} from {t.source}" for t in beyond[:EXAMPLES]
    )
    more = f" (+{len(beyond) - EXAMPLES} more)" if len(beyond) > EXAMPLES else ""
    top = max(seen)
    text = (
        f"{len(beyond)} tokenizer id{'s' if len(beyond) != 1 else ''} at or past vocab_size {vocab_size} "
        f"(the embedding has rows 0..{vocab_size - 1}): {shown}{more}; vLLM checks prompt ids against the "
        f"tokenizer too, so a prompt or chat template containing {'them' if len(beyond) > 1 else 'it'} "
        "indexes past the embedding and the request (or the engine) fails"
    )
    if special:
        return [
            Problem.of(
                "tokenizer-special-id-beyond-vocab",
                text + f" — special tokens the chat template writes are among them. Set vocab_size to at "
                f"least {top + 1} and resize embed_tokens / lm_head, or use the tokenizer the weights were "
                "trained with",
            )
        ]
    return [Problem.of("tokenizer-id-beyond-vocab", text)]
