"""`pull_request.closed`: if it is a job's PR, record whether it was merged (the job keeps its state)."""

from __future__ import annotations

from bot.events import EventContext, dict_of, int_of
from bot.routing import Outcome, Router, ignore

router = Router()


@router.register("pull_request", "closed")
def on_closed(ctx: EventContext) -> Outcome:
    pr = dict_of(ctx.payload.get("pull_request"))
    number = int_of(pr.get("number")) or int_of(ctx.payload.get("number"))
    if number is None or ctx.repo is None:
        return ignore("pull_request.closed without a number or repository")
    key = f"prclosed:{ctx.repo}:{number}:{pr.get('closed_at')}"
    return Outcome([ctx.base("pr_closed", "pull_request", key, pr=number, merged=bool(pr.get("merged")))])
