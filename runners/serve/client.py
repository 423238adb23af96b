"""OpenAI-style requests to a READY server: chat / text completion, logprobs, streaming.

Every blocking request runs so that a cancel is noticed within 0.25 s (`_run_cancellable`); a
reply is a small dataclass (ok, status, content or body, elapsed, the request as sent), so the
gates can put the exchange in their evidence. `server_error_evidence` explains a failure that
happened after READY from the server's log.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

from runners.contracts import Evidence
from runners.gates import evidence as ev
from runners.serve.errors import ServeError
from runners.serve.lifecycle import RunningServer
from runners.serve.readiness import _failure_evidence


@dataclass
class ChatReply:
    ok: bool
    status: int | None
    content: str
    elapsed_s: float
    error: str | None = None
    body_excerpt: str = ""
    request: dict[str, Any] = field(default_factory=dict)


def _run_cancellable(fn: Callable[[], Any], cancel: Any, timeout: float) -> Any:
    """Run a blocking call in a thread; return early (raising ServeError) on cancel."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:  # handed back to the caller
            box["error"] = exc

    t = threading.Thread(target=target, daemon=True, name="serve-request")
    t.start()
    deadline = time.monotonic() + timeout + 5
    while t.is_alive():
        if cancel is not None and cancel.is_set():
            raise ServeError("cancelled", "the job was cancelled during a request")
        if time.monotonic() > deadline:
            break
        t.join(0.2)
    if "error" in box:
        raise box["error"]
    if "value" not in box:
        raise httpx.ReadTimeout("request did not finish in time")
    return box["value"]


def chat_payload(
    served_name: str, prompt: str, max_tokens: int, image_url: str | None = None
) -> dict[str, Any]:
    content: Any = prompt
    if image_url is not None:
        content = [{"type": "text", "text": prompt}, {"type": "image_url", "image_url": {"url": image_url}}]
    return {
        "model": served_name,
        "messages": [{"role": "user", "content": content}],
        "temperature": 0,
        "max_tokens": max_tokens,
    }


def chat_completion(
    server: RunningServer,
    prompt: str,
    max_tokens: int,
    *,
    image_url: str | None = None,
    timeout: float | None = None,
) -> ChatReply:
    """One OpenAI chat completion (temperature 0). ok = 200 with non-empty choices[0].message.content."""
    payload = chat_payload(server.served_name, prompt, max_tokens, image_url)
    limit = server.request_timeout_s if timeout is None else timeout
    shown = json.loads(json.dumps(payload))
    if image_url is not None:
        shown["messages"][0]["content"][1]["image_url"]["url"] = image_url[:40] + "…"
    t0 = time.monotonic()

    def call() -> httpx.Response:
        with httpx.Client(trust_env=False) as client:
            return client.post(f"{server.base_url}/v1/chat/completions", json=payload, timeout=limit)

    try:
        r: httpx.Response = _run_cancellable(call, server.cancel, limit)
    except httpx.HTTPError as exc:
        return ChatReply(
            False, None, "", time.monotonic() - t0, error=f"{type(exc).__name__}: {exc}", request=shown
        )
    elapsed = time.monotonic() - t0
    body = r.text
    content = ""
    try:
        content = r.json()["choices"][0]["message"]["content"] or ""
    except (ValueError, KeyError, IndexError, TypeError):
        content = ""
    ok = r.status_code == 200 and bool(content.strip())
    error = None if ok else (f"HTTP {r.status_code}" + ("" if r.status_code != 200 else ": empty content"))
    return ChatReply(
        ok, r.status_code, content, elapsed, error=error, body_excerpt=ev.clip_line(body, 600), request=shown
    )


def _post(server: RunningServer, path: str, payload: dict[str, Any], limit: float) -> httpx.Response:
    def call() -> httpx.Response:
        with httpx.Client(trust_env=False) as client:
            return client.post(f"{server.base_url}{path}", json=payload, timeout=limit)

    r: httpx.Response = _run_cancellable(call, server.cancel, limit)
    return r


def text_completion(
    server: RunningServer, prompt: str, max_tokens: int, *, timeout: float | None = None
) -> ChatReply:
    """One OpenAI (legacy) completion, temperature 0: the smoke of a base model without a chat
    template. ok = 200 with non-empty choices[0].text. Same reply shape as chat_completion."""
    payload: dict[str, Any] = {
        "model": server.served_name,
        "prompt": prompt,
        "temperature": 0,
        "max_tokens": max_tokens,
    }
    limit = server.request_timeout_s if timeout is None else timeout
    t0 = time.monotonic()
    try:
        r = _post(server, "/v1/completions", payload, limit)
    except httpx.HTTPError as exc:
        return ChatReply(
            False, None, "", time.monotonic() - t0, error=f"{type(exc).__name__}: {exc}", request=payload
        )
    content = ""
    try:
        content = r.json()["choices"][0]["text"] or ""
    except (ValueError, KeyError, IndexError, TypeError):
        content = ""
    ok = r.status_code == 200 and bool(content.strip())
    error = None if ok else (f"HTTP {r.status_code}" + ("" if r.status_code != 200 else ": empty content"))
    return ChatReply(
        ok,
        r.status_code,
        content,
        time.monotonic() - t0,
        error=error,
        body_excerpt=ev.clip_line(r.text, 600),
        request=payload,
    )


@dataclass
class LogprobsReply:
    """`/v1/completions` with logprobs: the parsed JSON body (None unless HTTP 200 JSON)."""

    ok: bool
    status: int | None
    body: dict[str, Any] | None
    elapsed_s: float
    error: str | None = None
    request: dict[str, Any] = field(default_factory=dict)


def completion_logprobs(
    server: RunningServer,
    prompt_token_ids: Sequence[int],
    max_tokens: int,
    top_k: int,
    *,
    timeout: float | None = None,
) -> LogprobsReply:
    """Greedy continuation of exact prompt token ids with top-k logprobs, for reference parity.

    Asks for exactly `max_tokens` raw-model tokens: temperature 0, `ignore_eos` (the reference does
    not stop at EOS either), `repetition_penalty` 1 (generation_config.json defaults must not apply),
    tokens returned as ids (`return_tokens_as_token_ids`, a vLLM extension)."""
    payload: dict[str, Any] = {
        "model": server.served_name,
        "prompt": list(prompt_token_ids),
        "temperature": 0,
        "max_tokens": max_tokens,
        "logprobs": top_k,
        "ignore_eos": True,
        "repetition_penalty": 1.0,
        "return_tokens_as_token_ids": True,
    }
    limit = server.request_timeout_s if timeout is None else timeout
    t0 = time.monotonic()
    try:
        r = _post(server, "/v1/completions", payload, limit)
    except httpx.HTTPError as exc:
        return LogprobsReply(
            False, None, None, time.monotonic() - t0, error=f"{type(exc).__name__}: {exc}", request=payload
        )
    body: dict[str, Any] | None = None
    try:
        parsed = r.json()
        body = parsed if isinstance(parsed, dict) else None
    except ValueError:
        body = None
    ok = r.status_code == 200 and body is not None
    return LogprobsReply(
        ok,
        r.status_code,
        body,
        time.monotonic() - t0,
        error=None if ok else f"HTTP {r.status_code}: {ev.clip_line(r.text, 300)}",
        request=payload,
    )


def error_message(body_excerpt: str) -> str | None:
    """The server's own words from an OpenAI-style error body ({"error": {"message": ...}})."""
    try:
        data = json.loads(body_excerpt)
    except ValueError:  # clipped body: take the message field by pattern
        m = re.search(r'"message"\s*:\s*"((?:[^"\\]|\\.)*)', body_excerpt)
        if m is None:
            return None
        try:
            return str(json.loads(f'"{m.group(1)}"'))
        except ValueError:
            return m.group(1)
    err = data.get("error") if isinstance(data, dict) else None
    if isinstance(err, dict) and isinstance(err.get("message"), str):
        return str(err["message"])
    if isinstance(data, dict) and isinstance(data.get("message"), str):
        return str(data["message"])
    return None


@dataclass
class StreamStats:
    ok: bool
    ttft_s: float | None
    total_s: float
    completion_tokens: int
    error: str | None = None


def stream_completion(
    server: RunningServer, prompt: str, max_tokens: int, *, timeout: float | None = None
) -> StreamStats:
    """A streamed chat completion: time to first token and token count (capacity figures)."""
    payload = chat_payload(server.served_name, prompt, max_tokens)
    payload.update(stream=True, stream_options={"include_usage": True})
    limit = server.request_timeout_s if timeout is None else timeout
    t0 = time.monotonic()
    ttft: float | None = None
    tokens = 0
    try:
        with (
            httpx.Client(trust_env=False) as client,
            client.stream("POST", f"{server.base_url}/v1/chat/completions", json=payload, timeout=limit) as r,
        ):
            if r.status_code != 200:
                r.read()
                return StreamStats(False, None, time.monotonic() - t0, 0, error=f"HTTP {r.status_code}")
            for line in r.iter_lines():
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                chunk = json.loads(line[6:])
                if chunk.get("usage"):
                    tokens = int(chunk["usage"].get("completion_tokens") or tokens)
                for choice in chunk.get("choices") or []:
                    if (choice.get("delta") or {}).get("content") and ttft is None:
                        ttft = time.monotonic() - t0
    except (httpx.HTTPError, ValueError) as exc:
        return StreamStats(False, ttft, time.monotonic() - t0, tokens, error=f"{type(exc).__name__}: {exc}")
    return StreamStats(ttft is not None, ttft, time.monotonic() - t0, tokens)


#: An 8x8 RGB PNG gradient as a data: URL: a text+image request needs no network.
TINY_PNG_DATA_URL = (
    "data:image/png;base64,"
    "iVBORw0KGgoAAAANSUhEUgAAAAgAAAAICAIAAABLbSncAAAAbElEQVR4nBXNQRUAUQhCUaMYhShGeVGIQhSizB+XXA"
    "7ODDtouIHBQ4YOM8suWm5h8ZKl+0CskDiBsIioHhx76LiDw0eO3oN/4FVf+J8h0PduzBqZ8x/bxNQPwgaFy192SGgelC0q13/CJaXlA8Z7WAGfV950AAAAAElFTkSuQmCC"
)


def server_error_evidence(
    server: RunningServer, *, since_line: int, real_weights: bool
) -> tuple[list[Evidence], ev.SignatureHit | None, ev.LogHit | None]:
    """Explain a failure that happened after READY (false-ready): look only at lines after `since_line`."""
    server.sink.wait_drained(0.5)
    lines = server.log_lines()
    return _failure_evidence(lines, server.log_path, real_weights=real_weights, start=since_line)
