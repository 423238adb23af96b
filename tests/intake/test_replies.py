"""Replies never speak a stranger's text in the App's voice (issue 12): links, images, mentions and
`#123` / `org/repo#123` references from untrusted text are inert in every reply kind. Checked on
GitHub's own rendering (cmark-gfm): no <a>, no <img>, and outside code spans no text that GitHub's
reference and mention filters would link."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from typing import Any

import cmarkgfm
import pytest

from bot.comments import code_span, inert, render_reply, usage_for

HOSTILE = (
    "[click](https://evil.example/x) ![img](https://evil.example/i.png) #1 octo-org/other#2 GH-3 "
    "@admin-user @octo-org/team www.evil.example https://evil.example/y mail@evil.example "
    "<img src=x onerror=alert(1)> <a href=https://evil.example>a</a> `code` \\[x](http://y) [^1] "
    "<https://evil.example/z> ``` ~~~"
)


class _Seen(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.code_depth = 0
        self.text = ""

    def handle_starttag(self, tag: str, attrs: Any) -> None:
        self.tags.append(tag)
        self.code_depth += tag in ("code", "pre")

    def handle_endtag(self, tag: str) -> None:
        self.code_depth -= tag in ("code", "pre")

    def handle_data(self, data: str) -> None:
        if not self.code_depth:
            self.text += data


def rendered(body: str) -> _Seen:
    seen = _Seen()
    seen.feed(cmarkgfm.github_flavored_markdown_to_html(body))
    return seen


def assert_inert(body: str, author: str = "stranger") -> None:
    seen = rendered(body)
    assert "a" not in seen.tags and "img" not in seen.tags, body
    text = seen.text.replace(f"@{author}", "", 1)  # the one mention we mean: the author's
    assert not re.search(r"(?<![\w\u200b])#\d", text), text
    assert not re.search(r"\bGH-\d", text), text
    assert not re.search(r"@[A-Za-z0-9]", text), text
    assert not re.search(r"(?i)https?://|\bwww\.", text), text
    assert "onerror" not in "".join(seen.tags)


KINDS: list[tuple[str, dict[str, Any]]] = [
    ("invalid", {"error": f"unknown option `{HOSTILE}`", "usage": usage_for("run")}),
    ("refused", {"error": HOSTILE}),
    ("no-model", {"error": f"`{HOSTILE}` is not a model id"}),
    ("config-error", {"error": HOSTILE}),
    ("permission", {"needed": "write", "level": "none", "detail": "adapt-model"}),
    ("label-permission", {"needed": "write", "level": "triage", "detail": "adapt-model"}),
    ("too-many", {"detail": {"limit": 3, "total": 9, "refused": 6, "shown": [HOSTILE] * 5}}),
    ("other", {"error": HOSTILE}),
]


@pytest.mark.parametrize(("kind", "ctx"), KINDS, ids=[k for k, _ in KINDS])
def test_every_reply_kind_renders_untrusted_text_inert(kind: str, ctx: dict[str, Any]) -> None:
    body = render_reply(kind, user="stranger", command=f"/adapt run {HOSTILE}", **ctx)
    assert_inert(body)
    assert body.startswith("@stranger")  # the author is still notified


def test_the_command_is_quoted_verbatim_in_a_code_span() -> None:
    body = render_reply("refused", user="u", command="/adapt run ``x`` [a](http://b)", error="no")
    seen = rendered(body)
    html = cmarkgfm.github_flavored_markdown_to_html(body)
    assert "<code>/adapt run ``x`` [a](http://b)</code>" in html and "a" not in seen.tags


@pytest.mark.parametrize("text", ["`", "``a``", " lead", "trail ", "x\ny", "a" * 400])
def test_code_span_cannot_be_closed_by_its_content(text: str) -> None:
    html = cmarkgfm.github_flavored_markdown_to_html(f"> {code_span(text)} [tail](http://t)")
    assert html.count("<code>") == 1 and "<a" in html  # one span; the text after it is still ours
    assert "\n" not in code_span(text)


def test_inert_keeps_what_it_says() -> None:
    assert inert("see #12 and org/repo#3").replace("\u200b", "") == "see #12 and org/repo#3"
    assert inert("[a](b)") == "\\[a\\](b)"
