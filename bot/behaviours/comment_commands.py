"""`/adapt` lines in issue and PR comments (created or edited) become intents, one per line.

An edited comment only runs lines it did not already run: the dedupe key is (repo, comment, line).
"""

from __future__ import annotations

from bot.commands import Command, parse_commands
from bot.events import EventContext, Intent, dict_of, digest, int_of, issue_fields, str_of
from bot.routing import Outcome, Router, ignore

router = Router()


@router.register("issue_comment", "created", "edited")
def on_comment(ctx: EventContext) -> Outcome:
    comment = dict_of(ctx.payload.get("comment"))
    body = str_of(comment.get("body"))
    comment_id = int_of(comment.get("id"))
    fields = issue_fields(ctx.payload)
    if "/adapt" not in body:
        return ignore("comment has no /adapt command")
    if comment_id is None or fields["issue"] is None or ctx.repo is None:
        return ignore("comment event without comment id, issue or repository")
    intents: list[Intent] = []
    for parsed in parse_commands(body):
        key = f"cmd:{ctx.repo}:{comment_id}:{digest(parsed.line)}"
        common = {"comment_id": comment_id, "command_line": parsed.line, **fields}
        if isinstance(parsed, Command):
            intents.append(_from_command(ctx, parsed, key, common))
        else:
            intents.append(
                ctx.base("invalid", "comment", key, error=parsed.message, error_command=parsed.name, **common)
            )
    if not intents:
        return ignore("/adapt only inside code or quotes")
    return Outcome(intents)


def _from_command(ctx: EventContext, cmd: Command, key: str, common: dict[str, object]) -> Intent:
    if cmd.name == "run":
        return ctx.base("start", "comment", key, options=dict(cmd.args), **common)
    if cmd.name == "rerun":
        return ctx.base("rerun", "comment", key, stage=cmd.args["stage"], **common)
    if cmd.name == "help":
        return ctx.base("help", "comment", key, help_topic=cmd.args.get("command"), **common)
    if cmd.name == "status":
        return ctx.base("status", "comment", key, **common)
    return ctx.base("cancel", "comment", key, **common)
