"""The bot's PR after delivery: a push re-gates it, a merge or close ends the job's life.

- `pull_request.synchronize` (someone pushed to the PR's branch) -> the same `rerun` intent as
  `/adapt rerun dummy-gate` on the PR (bot.intents applies it: permission, quota, status comment;
  it compares the push with the bot's delivered head and runs the pushed code as the job's
  candidate when it touches files beyond the bot's own docs/YAML).
  A push by a bot (GitHub's `sender.type == "Bot"`, which the App's own commits carry) is dropped
  by the router before this handler runs, so the bot's own deliveries never re-gate themselves.
- `pull_request.closed` -> `pr_closed` (merged or not, and the PR's head branch, so that
  bot.intents can post the closing summary, close the issue, archive the job, delete the branch).

Whether the PR is a job's PR is decided by the control plane (store.for_pr); here only the
payload is read. Pure.
"""

from __future__ import annotations

from bot.events import EventContext, dict_of, int_of, str_of
from bot.routing import Outcome, Router, ignore

router = Router()

#: The stage a push re-runs from (everything after it follows), as `/adapt rerun dummy-gate`.
REGATE_STAGE = "dummy-gate"


def _head(pr: dict[str, object]) -> dict[str, object]:
    head = dict_of(pr.get("head"))
    return {
        "head_ref": str_of(head.get("ref")),
        "head_sha": str_of(head.get("sha")),
        "head_repo": str_of(dict_of(head.get("repo")).get("full_name")),
    }


@router.register("pull_request", "synchronize")
def on_synchronize(ctx: EventContext) -> Outcome:
    pr = dict_of(ctx.payload.get("pull_request"))
    number = int_of(pr.get("number")) or int_of(ctx.payload.get("number"))
    if number is None or ctx.repo is None:
        return ignore("pull_request.synchronize without a number or repository")
    after = str_of(ctx.payload.get("after")) or str_of(dict_of(pr.get("head")).get("sha"))
    key = f"prsync:{ctx.repo}:{number}:{after}"
    return Outcome(
        [
            ctx.base(
                "rerun",
                "pull_request",
                key,
                issue=number,
                is_pull_request=True,
                pr=number,
                stage=REGATE_STAGE,
                # `before`: the head the push replaced (the bot's own commit on a first push), the
                # base bot.intents compares the pushed head with when the job has none recorded
                detail={"push": True, "before": str_of(ctx.payload.get("before")), **_head(pr)},
            )
        ]
    )


@router.register("pull_request", "closed")
def on_closed(ctx: EventContext) -> Outcome:
    pr = dict_of(ctx.payload.get("pull_request"))
    number = int_of(pr.get("number")) or int_of(ctx.payload.get("number"))
    if number is None or ctx.repo is None:
        return ignore("pull_request.closed without a number or repository")
    key = f"prclosed:{ctx.repo}:{number}:{pr.get('closed_at')}"
    return Outcome(
        [
            ctx.base(
                "pr_closed",
                "pull_request",
                key,
                pr=number,
                merged=bool(pr.get("merged")),
                detail=_head(pr),
            )
        ]
    )
