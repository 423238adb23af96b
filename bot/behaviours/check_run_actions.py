"""Buttons on the bot's check runs (`check_run.requested_action`) send the same intents as commands.

The buttons are declared once (`bot.commands.CHECK_ACTIONS`, also what `bot.delivery` puts on the
check runs); a click on anything else is ignored. The check run's `external_id` holds the job id.
The pressed run's id and status go along (`detail`): a press whose run no PR lists (the base
branch head) and whose job is gone is answered on that run itself (bot.checks.answer_press). A
click carries no unique id of its own, so its dedupe key lives only briefly (long enough to fold
the copies two hooks send, short enough for a deliberate second click). The clicker's permission
is checked by the control plane like a command's.
"""

from __future__ import annotations

from bot.commands import CHECK_ACTION_BY_ID
from bot.events import EventContext, dict_of, int_of, str_of
from bot.routing import Outcome, Router, ignore

router = Router()
CLICK_DEDUPE_TTL_S = 120


@router.register("check_run", "requested_action")
def on_requested_action(ctx: EventContext) -> Outcome:
    ident = str_of(dict_of(ctx.payload.get("requested_action")).get("identifier"))
    run = dict_of(ctx.payload.get("check_run"))
    prs = run.get("pull_requests") if isinstance(run.get("pull_requests"), list) else []
    pr = int_of(dict_of(prs[0]).get("number")) if prs else None
    job_id = str_of(run.get("external_id")) or None
    if ctx.repo is None:
        return ignore("check_run without a repository")
    action = CHECK_ACTION_BY_ID.get(ident)
    if action is None:
        return ignore(f"check-run action {ident[:40]!r} is not one of ours")
    key = f"check:{ctx.repo}:{int_of(run.get('id'))}:{ident}"
    common = {
        "pr": pr,
        "issue": pr,
        "is_pull_request": True,
        "job_id": job_id,
        "dedupe_ttl_s": CLICK_DEDUPE_TTL_S,
        # the pressed run itself: a press no PR lists and no job answers is answered on it
        "detail": {"check_run_id": int_of(run.get("id")), "check_run_status": str_of(run.get("status"))},
    }
    if action.command == "cancel":
        return Outcome([ctx.base("cancel", "check_run", key, **common)])
    return Outcome([ctx.base("rerun", "check_run", key, stage=action.stage, **common)])
