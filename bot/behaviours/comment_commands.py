"""`/adapt` lines in issue and PR comments (created or edited) become intents, one per line.

Only what GitHub shows counts (`bot.commands.command_lines`), and at most a few commands of one
comment run (`max_commands_per_comment` in the context, default `MAX_COMMANDS_PER_COMMENT`): the
rest become ONE `too_many` intent, answered by one reply listing what was not run.

Edits (`issue_comment.edited`): only the lines the edit added (compared with `changes.body.from`)
run, and they run as the comment's AUTHOR — the editor is recorded and must hold the permission
too. Fixing a typo in a stranger's comment therefore never runs the stranger's command with the
editor's rights. An edit that did not change the body, or a comment written by a bot, runs nothing.
"""

from __future__ import annotations

from bot.commands import MAX_COMMANDS_PER_COMMENT, Command, parse_comment
from bot.events import EventContext, Intent, dict_of, digest, int_of, issue_fields, str_of
from bot.routing import Outcome, Router, ignore

router = Router()
#: Lines shown in the refusal of a comment with too many commands (the rest are counted).
REFUSED_SHOWN = 5


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
    author_info = dict_of(comment.get("user"))
    if author_info.get("type") == "Bot":
        return ignore("comment written by a bot")
    author = str_of(author_info.get("login")) or ctx.sender_login
    before: str | None = None
    if ctx.action == "edited":
        previous = dict_of(dict_of(ctx.payload.get("changes")).get("body")).get("from")
        if not isinstance(previous, str):
            return ignore("edit did not change the comment body")
        before = previous
    editor = ctx.sender_login if ctx.sender_login != author else None
    limit = ctx.extra.get("max_commands_per_comment")
    if not isinstance(limit, int):
        limit = MAX_COMMANDS_PER_COMMENT
    found = parse_comment(body, before=before, limit=limit)
    who = {"sender": author, "editor": editor}
    intents: list[Intent] = []
    for parsed in found.parsed:
        key = f"cmd:{ctx.repo}:{comment_id}:{digest(parsed.line)}"
        common = {"comment_id": comment_id, "command_line": parsed.line, **fields, **who}
        if isinstance(parsed, Command):
            intents.append(_from_command(ctx, parsed, key, common))
        else:
            intents.append(
                ctx.base("invalid", "comment", key, error=parsed.message, error_command=parsed.name, **common)
            )
    if found.refused:
        key = f"cmd:{ctx.repo}:{comment_id}:too-many:{digest(*found.refused)}"
        detail = {
            "limit": len(found.parsed),
            "total": found.total,
            "refused": len(found.refused),
            "shown": found.refused[:REFUSED_SHOWN],
        }
        intents.append(
            ctx.base("too_many", "comment", key, comment_id=comment_id, detail=detail, **fields, **who)
        )
    if not intents:
        if before is not None:
            return ignore("the edit added no /adapt line")
        return ignore("/adapt only inside code, quotes or HTML comments")
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
