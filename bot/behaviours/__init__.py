"""Everything the bot reacts to, in the order handlers run (one module per behaviour)."""

from __future__ import annotations

from bot.behaviours import check_run_actions, comment_commands, installation, label_trigger, pull_request
from bot.routing import Router

ROUTER = Router()
for _module in (label_trigger, comment_commands, check_run_actions, pull_request, installation):
    ROUTER.include(_module.router)
