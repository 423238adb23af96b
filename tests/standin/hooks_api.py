"""Stand-in for GitHub's webhook sender and the App's webhook deliveries API.

`deliver(state, event, payload, url=None)` is GitHub sending a webhook: a signed POST to the App's
hook URL (`state.hook_url`, secret `state.hook_secret`), recorded like GitHub's delivery log
(status code 0 when the receiver could not be reached). The API routes (App JWT) list that log
(`GET /app/hook/deliveries`, newest first, `status=success|failure`) and redeliver one entry
(`POST /app/hook/deliveries/{id}/attempts`: the same payload and GUID, sent again in the
background, recorded with `redelivery: true`), shapes checked against githubkit's models.
"""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any

import httpx
from fastapi import APIRouter, Depends, HTTPException
from fastapi.responses import JSONResponse

from tests.standin import shapes
from tests.standin.app import State, app_auth
from tests.standin.git_api import validated
from tests.standin.server import send_webhook
from tests.standin.state import StandinState

router = APIRouter()


def deliver(
    state: StandinState,
    event: str,
    payload: dict[str, Any],
    url: str | None = None,
    guid: str | None = None,
    redelivery: bool = False,
) -> dict[str, Any]:
    """Send one webhook the way GitHub does and record the attempt in the delivery log."""
    target = url or state.hook_url
    guid = guid or str(uuid.uuid4())
    t0 = time.monotonic()
    try:
        resp = send_webhook(str(target), event, payload, state.hook_secret, guid)
        code, status = resp.status_code, "OK" if resp.status_code < 300 else f"HTTP {resp.status_code}"
    except httpx.HTTPError as exc:
        code, status = 0, f"failed to connect: {type(exc).__name__}"
    repo = payload.get("repository") or {}
    entry = {
        "id": state.next_id(),
        "guid": guid,
        "delivered_at": shapes.now_iso(),
        "redelivery": redelivery,
        "duration": round(time.monotonic() - t0, 3),
        "status": status,
        "status_code": code,
        "event": event,
        "action": payload.get("action"),
        "installation_id": (payload.get("installation") or {}).get("id"),
        "repository_id": repo.get("id"),
        "throttled_at": None,
        "_payload": payload,
    }
    with state.lock:
        state.hook_deliveries.append(entry)
    return entry


def _public(entry: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in entry.items() if not k.startswith("_")}


@router.get("/app/hook/deliveries", dependencies=[Depends(app_auth)])
def list_deliveries(state: State, per_page: int = 30, status: str | None = None) -> list[dict[str, Any]]:
    with state.lock:
        items = list(reversed(state.hook_deliveries))
    if status == "success":
        items = [d for d in items if 200 <= d["status_code"] < 300]
    elif status == "failure":
        items = [d for d in items if not 200 <= d["status_code"] < 300]
    out = [_public(d) for d in items[: max(1, min(per_page, 100))]]
    return [validated("HookDeliveryItem", d) for d in out]


@router.post("/app/hook/deliveries/{delivery_id}/attempts", dependencies=[Depends(app_auth)])
def redeliver(delivery_id: int, state: State) -> JSONResponse:
    with state.lock:
        found = [d for d in state.hook_deliveries if d["id"] == delivery_id]
    if not found:
        raise HTTPException(404, "Not Found")
    d = found[0]
    threading.Thread(
        target=deliver,
        args=(state, d["event"], d["_payload"]),
        kwargs={"guid": d["guid"], "redelivery": True},
        daemon=True,
    ).start()
    return JSONResponse({}, status_code=202)
