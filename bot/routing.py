"""Route a verified delivery on its raw (event, action) to the behaviours that handle it.

Each behaviour module registers handlers on its own `Router`; `bot.behaviours.ROUTER` merges them, so
one file lists everything the bot reacts to. Handlers run in registration order; a failing handler is
logged and contained so it cannot silence the others. Pure apart from logging.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from bot.events import EventContext, Intent

log = logging.getLogger(__name__)


@dataclass
class Outcome:
    """What one handler made of a delivery: intents to apply, or the reason it did nothing."""

    intents: list[Intent] = field(default_factory=list)
    reason: str | None = None


def ignore(reason: str) -> Outcome:
    return Outcome(reason=reason)


Handler = Callable[[EventContext], Outcome]


class Router:
    def __init__(self) -> None:
        self._handlers: dict[tuple[str, str], list[Handler]] = {}

    def register(self, event: str, *actions: str) -> Callable[[Handler], Handler]:
        """Decorator; an action of "*" matches every action of the event."""

        def deco(fn: Handler) -> Handler:
            for action in actions or ("*",):
                self._handlers.setdefault((event, action), []).append(fn)
            return fn

        return deco

    def include(self, other: Router) -> None:
        for key, handlers in other._handlers.items():
            self._handlers.setdefault(key, []).extend(handlers)

    def handlers_for(self, event: str, action: str) -> list[Handler]:
        return [*self._handlers.get((event, action), ()), *self._handlers.get((event, "*"), ())]

    def routes(self) -> list[tuple[str, str, str]]:
        """(event, action, handler) for documentation and tests."""
        return [(e, a, h.__module__ + "." + h.__name__) for (e, a), hs in self._handlers.items() for h in hs]

    def dispatch(self, ctx: EventContext) -> Outcome:
        handlers = self.handlers_for(ctx.event, ctx.action)
        if not handlers:
            return ignore(f"no handler for {ctx.event}.{ctx.action or '-'}")
        if ctx.sender_is_bot:
            return ignore(f"sender {ctx.sender_login!r} is a bot")
        merged = Outcome()
        reasons: list[str] = []
        for handler in handlers:
            try:
                out = handler(ctx)
            except Exception:
                log.exception(
                    "handler %s failed on %s.%s (%s)", handler.__name__, ctx.event, ctx.action, ctx.delivery
                )
                reasons.append(f"{handler.__name__} failed")
                continue
            merged.intents.extend(out.intents)
            if out.reason:
                reasons.append(out.reason)
        if not merged.intents:
            merged.reason = "; ".join(reasons) or "nothing to do"
        return merged
