"""`/healthz` (Redis reachable) and `/metrics` (Prometheus text, counters kept in Redis)."""

from __future__ import annotations

import redis
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, PlainTextResponse
from starlette.concurrency import run_in_threadpool

from bot.api.intake import DELIVERIES
from bot.jobs.store import STATE_COUNTS

router = APIRouter()


@router.get("/healthz")
async def healthz(request: Request) -> JSONResponse:
    r: redis.Redis = request.app.state.redis
    try:
        await run_in_threadpool(r.ping)
    except redis.RedisError as exc:
        return JSONResponse({"ok": False, "redis": type(exc).__name__}, status_code=503)
    return JSONResponse({"ok": True, "redis": "ok"})


def _label(v: str) -> str:
    return v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", " ")


def render_metrics(deliveries: dict[str, str], states: dict[str, str]) -> str:
    lines = [
        "# HELP adapt_bot_webhook_deliveries_total Webhook deliveries by event and outcome.",
        "# TYPE adapt_bot_webhook_deliveries_total counter",
    ]
    for key in sorted(deliveries):
        event, _, outcome = key.partition("|")
        labels = f'event="{_label(event)}",outcome="{_label(outcome)}"'
        lines.append(f"adapt_bot_webhook_deliveries_total{{{labels}}} {int(deliveries[key])}")
    lines += ["# HELP adapt_bot_jobs Jobs by state.", "# TYPE adapt_bot_jobs gauge"]
    for state in ("queued", "running", "waiting", "succeeded", "failed", "cancelled"):
        lines.append(f'adapt_bot_jobs{{state="{state}"}} {max(0, int(states.get(state, 0)))}')
    return "\n".join(lines) + "\n"


@router.get("/metrics")
async def metrics(request: Request) -> PlainTextResponse:
    r: redis.Redis = request.app.state.redis
    await request.app.state.intake.flush()  # this process's counts; others flush every second

    def read() -> tuple[dict[str, str], dict[str, str]]:
        pipe = r.pipeline(transaction=False)
        pipe.hgetall(DELIVERIES)
        pipe.hgetall(STATE_COUNTS)
        d, s = pipe.execute()
        return d, s

    deliveries, states = await run_in_threadpool(read)
    return PlainTextResponse(render_metrics(deliveries, states), media_type="text/plain; version=0.0.4")
