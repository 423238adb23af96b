"""`installation*` events are recorded (which account installed the App, on which repositories)."""

from __future__ import annotations

from bot.events import EventContext, dict_of, str_of
from bot.routing import Outcome, Router, ignore

router = Router()


def _names(items: object) -> list[str]:
    if not isinstance(items, list):
        return []
    return [str_of(dict_of(r).get("full_name")) for r in items if str_of(dict_of(r).get("full_name"))][:500]


@router.register("installation")
@router.register("installation_repositories")
def on_installation(ctx: EventContext) -> Outcome:
    inst = dict_of(ctx.payload.get("installation"))
    if ctx.installation_id is None:
        return ignore("installation event without an installation id")
    detail = {
        "action": ctx.action,
        "account": str_of(dict_of(inst.get("account")).get("login")),
        "added": _names(ctx.payload.get("repositories_added")) or _names(ctx.payload.get("repositories")),
        "removed": _names(ctx.payload.get("repositories_removed")),
    }
    key = f"inst:{ctx.installation_id}:{ctx.event}:{ctx.action}:{ctx.delivery}"
    return Outcome([ctx.base("installation", "installation", key, detail=detail)])
