"""Redelivery sweep: ask GitHub to send again the webhook deliveries that never reached us.

Why: the spool (bot.api.spool) keeps what a web process received while Redis was away, but a
delivery that reached no web process at all (every replica down, a network cut, a 5xx from a proxy)
is failed at GitHub, which never resends it by itself. The App's webhook deliveries API lists
those (`GET /app/hook/deliveries?status=failure`) and redelivers one on request
(`POST /app/hook/deliveries/{id}/attempts`), for 3 days. Needs the App JWT, so it runs in the
control worker (its outbox thread, every `ADAPT_BOT_REDELIVERY_SWEEP_S`).

A failed delivery whose GUID we know (`adapt:delivery:<guid>`, set when it was accepted) was
received by a later attempt and is skipped; each GUID is asked for at most once an hour. A
redelivery carries the same GUID, so the intake's dedupe and re-arm rules apply to it unchanged.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from bot.config import Settings

log = logging.getLogger(__name__)

ASKED_TTL_S = 3600
MAX_PAGES = 10


def failed_unknown(
    deliveries: list[dict[str, Any]], known: set[str], since: dt.datetime
) -> list[dict[str, Any]]:
    """The newest failed attempt of each GUID we never accepted, delivered after `since` (pure)."""
    out: dict[str, dict[str, Any]] = {}
    for d in deliveries:
        guid = str(d.get("guid") or "")
        code = int(d.get("status_code") or 0)
        at = d.get("delivered_at")
        when = at if isinstance(at, dt.datetime) else parse_iso(str(at))
        if not guid or guid in known or 200 <= code < 300 or when < since:
            continue
        if code and code < 500:  # 4xx: our verdict on it (bad signature, too large) stands
            continue
        if guid not in out or int(d["id"]) > int(out[guid]["id"]):
            out[guid] = d
    return sorted(out.values(), key=lambda d: int(d["id"]))


def sweep(github: Any, r: Any, settings: Settings) -> list[str]:
    """Ask GitHub to redeliver failed deliveries we never accepted; returns their GUIDs.

    `github` is a bot.github.GitHubClient (App JWT), `r` the sync Redis client."""
    gh = github._gh
    since = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=settings.redelivery_lookback_s)
    listed: list[dict[str, Any]] = []
    cursor: str | None = None
    for _ in range(MAX_PAGES):
        kwargs: dict[str, Any] = {"per_page": 100, "status": "failure"}
        if cursor:
            kwargs["cursor"] = cursor
        resp = github.call(
            "GET /app/hook/deliveries", lambda kw=kwargs: gh.rest.apps.list_webhook_deliveries(**kw)
        )
        page = [dict(d) for d in resp.json()]
        listed.extend(page)
        cursor = _next_cursor(resp.headers.get("link", ""))
        oldest = min((str(d.get("delivered_at")) for d in page), default="")
        if not page or cursor is None or oldest < since.isoformat().replace("+00:00", "Z"):
            break
    guids = sorted({str(d.get("guid")) for d in listed if d.get("guid")})
    if not guids:
        return []
    seen = r.mget([f"adapt:delivery:{g}" for g in guids])
    known = {g for g, v in zip(guids, seen, strict=True) if v is not None}
    asked: list[str] = []
    for d in failed_unknown(listed, known, since):
        guid = str(d["guid"])
        if not r.set(f"adapt:redeliver:{guid}", "1", nx=True, ex=ASKED_TTL_S):
            continue  # asked within the hour already
        github.call(
            f"POST redelivery of {guid}",
            lambda i=int(d["id"]): gh.rest.apps.redeliver_webhook_delivery(i),
            mutating=True,
        )
        log.warning(
            "delivery %s (%s.%s) failed at GitHub (status %s) and never reached us: redelivery requested",
            guid,
            d.get("event"),
            d.get("action") or "-",
            d.get("status_code"),
        )
        asked.append(guid)
    return asked


def _next_cursor(link: str) -> str | None:
    """The `cursor` of the rel="next" page in a Link header (GitHub paginates deliveries by cursor)."""
    import urllib.parse

    for part in link.split(","):
        if 'rel="next"' in part and "<" in part:
            url = part[part.index("<") + 1 : part.index(">")]
            values = urllib.parse.parse_qs(urllib.parse.urlparse(url).query).get("cursor")
            return values[0] if values else None
    return None


def sweeper_for(settings: Settings, r: Any) -> Any:
    """A zero-argument sweep for the outbox thread, or None when this process holds no App key."""
    if settings.app_id is None or settings.private_key is None or settings.redelivery_sweep_s <= 0:
        return None
    try:
        settings.private_key_pem()
    except RuntimeError:
        return None
    from bot.github import GitHubClient

    client = GitHubClient(settings, r)
    return lambda: sweep(client, r, settings)


def parse_iso(value: str) -> dt.datetime:
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
