"""Whitespace hygiene for rendered Markdown, so templates can stay readable Jinja.

Outside fenced code: a heading always has a blank line before it, and runs of blank lines collapse to
one. Inside fences nothing changes (commands and log excerpts are shown exactly).
"""

from __future__ import annotations

import re

_FENCE = re.compile(r"^\s*(`{3,}|~{3,})")


def tidy(markdown: str) -> str:
    out: list[str] = []
    fence: str | None = None
    for line in markdown.splitlines():
        m = _FENCE.match(line)
        if fence is not None:
            out.append(line)
            if (
                m
                and m.group(1)[0] == fence[0]
                and len(m.group(1)) >= len(fence)
                and not line.strip()[len(m.group(1)) :]
            ):
                fence = None
            continue
        if m:
            fence = m.group(1)
        if not line.strip():
            if out and not out[-1].strip():
                continue
            out.append("")
            continue
        if line.startswith("#") and out and out[-1].strip():
            out.append("")
        out.append(line)
    while out and not out[-1].strip():
        out.pop()
    return "\n".join(out) + "\n"
