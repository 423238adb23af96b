"""`issues.labeled` with the trigger label starts a job — for the labeller's rights, not GitHub's.

GitHub lets a `triage` user add labels, so a label is a request like `/adapt run`: the control
plane checks that the labeller (the event's `sender`) holds the repository's configured permission
(`permission` in `.github/adapt-bot.yml`, default `write`) and answers a refusal with a reply.
"""

from __future__ import annotations

from bot.events import EventContext, dict_of, issue_fields, str_of
from bot.routing import Outcome, Router, ignore

router = Router()


@router.register("issues", "labeled")
def on_labeled(ctx: EventContext) -> Outcome:
    label = str_of(dict_of(ctx.payload.get("label")).get("name"))
    fields = issue_fields(ctx.payload)
    if not label:
        return ignore("labeled event without a label name")
    if ctx.trigger_labels is not None and label not in ctx.trigger_labels:
        return ignore(f"label {label!r} is not a trigger label")
    if fields["issue"] is None or ctx.repo is None:
        return ignore("labeled event without an issue or repository")
    if fields["is_pull_request"]:
        return ignore("label added to a pull request, not an issue")
    if ctx.sender_login is None:
        return ignore("labeled event without a sender")
    updated = str_of(dict_of(ctx.payload.get("issue")).get("updated_at"))
    key = f"label:{ctx.repo}:{fields['issue']}:{label}:{ctx.action}:{updated}"
    return Outcome([ctx.base("start", "label", key, label=label, **fields)])
