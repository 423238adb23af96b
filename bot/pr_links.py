"""Which issue a pull request is for: GitHub's closing keywords first, then a bare `#N`. Pure.

`/adapt run --candidate this` on a contributor's PR runs the job of the issue the PR links, the way
GitHub itself links them ("Fixes #12" in the description). Cross-repository references
(`owner/repo#12`) and URLs to other repositories are not links to this repository's issues and are
ignored; so is the PR's own number. Text inside code (blocks and spans) and quotes is not read.
"""

from __future__ import annotations

import re

from runners.model_ref import outside_code_and_quotes

#: GitHub's closing keywords (docs: "Linking a pull request to an issue using a keyword")
_CLOSING = re.compile(
    r"(?<![\w/#])(?:close[sd]?|fix(?:e[sd])?|resolve[sd]?)\s*:?\s+#(?P<n>\d{1,9})\b", re.IGNORECASE
)
#: a bare `#N` not preceded by `owner/repo` (a cross-repository reference) or a word character
_BARE = re.compile(r"(?<![\w/#])#(?P<n>\d{1,9})\b")
_CODE_SPAN = re.compile(r"(`+).*?\1")


def linked_issue(text: str, *, not_: int | None = None) -> int | None:
    """The issue number `text` links (closing keyword wins over a bare reference), or None."""
    lines = "\n".join(_CODE_SPAN.sub(" ", ln) for ln in outside_code_and_quotes(text[:65536]))
    for pattern in (_CLOSING, _BARE):
        for match in pattern.finditer(lines):
            n = int(match.group("n"))
            if n > 0 and n != not_:
                return n
    return None
