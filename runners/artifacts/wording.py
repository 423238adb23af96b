"""Plain-text wording of a verdict (templates/artifacts/verdict.txt.j2): the status comment's headline
and the closing summary of `adapt-bot run` say the same words as the documents."""

from __future__ import annotations

from runners.render import render
from runners.verdict import Verdict


def verdict_headline(verdict: Verdict) -> str:
    """One line: "✅ validated on Atlas A2 Series", "⚠️ serves, not validated", "❌ failed: real-gate: …"."""
    return render("artifacts/verdict.txt.j2", v=verdict, part="headline").strip()


def verdict_block(verdict: Verdict) -> str:
    """The headline, what ran, and every reason / warning, one per line."""
    return render("artifacts/verdict.txt.j2", v=verdict, part="block").rstrip()
