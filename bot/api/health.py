"""`/healthz` (Redis reachable) and `/metrics` (Prometheus text, counters kept in Redis).

`/metrics` is on `metrics_router`, which only the metrics app (`ADAPT_BOT_METRICS_BIND`, loopback
by default) includes: the public port serves the webhook and the pages, not the bot's internals."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import redis
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, PlainTextResponse
from starlette.concurrency import run_in_threadpool

from bot.api.intake import DELIVERIES
from bot.api.outbox import CLAIMED, OUTBOX
from bot.jobs.store import STATE_COUNTS
from bot.ledger import Ledger
from bot.quotas import DEVICE_SECONDS_TOTAL

router = APIRouter()
metrics_router = APIRouter()


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


def render_metrics(
    deliveries: dict[str, str],
    states: dict[str, str],
    intents: dict[str, float] | None = None,
    outbox_depth: int = 0,
    spooled: int = 0,
    device_seconds: dict[str, float] | None = None,
) -> str:
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
    i = intents or {}
    lines += [
        "# HELP adapt_bot_outbox_depth Accepted deliveries waiting to be handed to Celery.",
        "# TYPE adapt_bot_outbox_depth gauge",
        f"adapt_bot_outbox_depth {outbox_depth}",
        "# HELP adapt_bot_intents_pending Accepted deliveries not applied yet (retrying included).",
        "# TYPE adapt_bot_intents_pending gauge",
        f"adapt_bot_intents_pending {int(i.get('pending', 0))}",
        "# HELP adapt_bot_intents_oldest_pending_age_seconds Age of the oldest pending delivery.",
        "# TYPE adapt_bot_intents_oldest_pending_age_seconds gauge",
        f"adapt_bot_intents_oldest_pending_age_seconds {i.get('oldest_age_s', 0.0):.1f}",
        "# HELP adapt_bot_intent_retries_total Countdown retries after transient GitHub/Redis errors.",
        "# TYPE adapt_bot_intent_retries_total counter",
        f"adapt_bot_intent_retries_total {int(i.get('counter:retries', 0))}",
        "# HELP adapt_bot_intents_total Intents by how they ended (rearmed: sent again).",
        "# TYPE adapt_bot_intents_total counter",
    ]
    for outcome in ("applied", "dropped", "gave_up", "rearmed"):
        lines.append(f'adapt_bot_intents_total{{outcome="{outcome}"}} {int(i.get("counter:" + outcome, 0))}')
    lines += [
        "# HELP adapt_bot_spooled_deliveries Deliveries in this web process's local spool (Redis away).",
        "# TYPE adapt_bot_spooled_deliveries gauge",
        f"adapt_bot_spooled_deliveries {spooled}",
        "# HELP adapt_bot_device_seconds_total Devices x seconds of servers and references, by repository.",
        "# TYPE adapt_bot_device_seconds_total counter",
    ]
    for repo, ds in sorted((device_seconds or {}).items()):  # bot.quotas.record_spent
        lines.append(f'adapt_bot_device_seconds_total{{repo="{_label(repo)}"}} {ds:.2f}')
    return "\n".join(lines) + "\n"


async def _flush(intake: Any) -> None:
    """Flush the intake's counters on the loop its Redis client lives in (the metrics app may be
    served by another loop or thread)."""
    loop = getattr(intake, "loop", None)
    try:
        if loop is None or loop is asyncio.get_running_loop():
            await intake.flush()
        else:
            fut = asyncio.run_coroutine_threadsafe(intake.flush(), loop)
            await asyncio.wait_for(asyncio.wrap_future(fut), 3.0)
    except Exception:  # Redis away: the counters stay pending; /metrics still answers
        logging.getLogger(__name__).warning("delivery counters not flushed", exc_info=True)


@metrics_router.get("/metrics")
async def metrics(request: Request) -> PlainTextResponse:
    r: redis.Redis = request.app.state.redis
    intake = request.app.state.intake
    await _flush(intake)  # this process's counts; others flush every second

    def read() -> tuple[dict[str, str], dict[str, str], dict[str, float], int, int, dict[str, float]]:
        pipe = r.pipeline(transaction=False)
        pipe.hgetall(DELIVERIES)
        pipe.hgetall(STATE_COUNTS)
        pipe.zcard(OUTBOX)
        pipe.zcard(CLAIMED)
        pipe.hgetall(DEVICE_SECONDS_TOTAL)
        d, s, waiting, claimed, ds = pipe.execute()
        spooled = intake.spool.depth() if intake.spool is not None else 0
        device = {str(k): float(v) for k, v in ds.items()}
        return d, s, Ledger(r).stats(), int(waiting) + int(claimed), spooled, device

    deliveries, states, intents, depth, spooled, device = await run_in_threadpool(read)
    return PlainTextResponse(
        render_metrics(deliveries, states, intents, depth, spooled, device),
        media_type="text/plain; version=0.0.4",
    )
