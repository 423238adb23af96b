"""The one Jinja environment for all user-facing text (comments, reports, YAML, docs).

StrictUndefined: a missing variable is a bug, not an empty string. Escaping is explicit per
output format through filters, because one environment renders Markdown, YAML and HTML:
  - `md_cell`  : text inside a Markdown table cell (pipes, newlines, HTML)
  - `md_inline`: inline Markdown text (HTML-escaped, backticks neutralised)
  - `md_code`  : a fenced code block that the content cannot close
  - `yaml_str` : a YAML scalar (always a quoted, escaped string)
  - `clip(n)`  : cut long text with a marker
HTML pages (`*.html` templates) are autoescaped.
"""

from __future__ import annotations

import functools
import html
import json
import os
import re
from pathlib import Path
from typing import Any

import jinja2


def templates_dir() -> Path:
    env = os.environ.get("ADAPT_BOT_TEMPLATES")
    if env:
        return Path(env)
    here = Path(__file__).resolve().parent
    for cand in (here.parent / "templates", here.parent / "adapt_bot_templates"):
        if cand.is_dir():
            return cand
    raise FileNotFoundError("templates/ directory not found; set ADAPT_BOT_TEMPLATES")


def clip(text: Any, limit: int = 2000, marker: str = " …[truncated]") -> str:
    s = "" if text is None else str(text)
    return s if len(s) <= limit else s[: max(0, limit - len(marker))] + marker


def md_inline(text: Any) -> str:
    s = html.escape("" if text is None else str(text), quote=False)
    s = s.replace("`", "'").replace("\r", " ").replace("\n", " ")
    # neutralise @mentions and #references of untrusted text without changing what it says
    s = re.sub(r"@(?=\w)", "@\u200b", s)
    return s


def md_cell(text: Any) -> str:
    return md_inline(text).replace("|", "\\|")


def md_code(text: Any, lang: str = "") -> str:
    s = "" if text is None else str(text)
    longest = max((len(m) for m in re.findall(r"`+", s)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}{lang}\n{s}\n{fence}"


def no_macros(text: Any) -> str:
    """Neutralise template syntax of the docs toolchains (MkDocs macros, MyST substitutions): text
    from configs and logs must not be evaluated when the target repo builds its docs."""
    s = "" if text is None else str(text)
    return re.sub(r"([{])([{%#])", "\\1\u200b\\2", s)


def md_doc(text: Any) -> str:
    """Inline text in a docs page: `md_inline` + `no_macros`."""
    return no_macros(md_inline(text))


def md_doc_cell(text: Any) -> str:
    """A table cell in a docs page: `md_cell` + `no_macros`."""
    return no_macros(md_cell(text))


def yaml_str(text: Any) -> str:
    # JSON strings are valid YAML double-quoted scalars.
    return json.dumps("" if text is None else str(text), ensure_ascii=False)


@functools.cache
def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(templates_dir())),
        undefined=jinja2.StrictUndefined,
        autoescape=jinja2.select_autoescape(enabled_extensions=("html",), default_for_string=False),
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(clip=clip, md_inline=md_inline, md_cell=md_cell, md_code=md_code, yaml_str=yaml_str)
    env.filters.update(no_macros=no_macros, md_doc=md_doc, md_doc_cell=md_doc_cell)
    return env


def render(template: str, /, **context: Any) -> str:
    return environment().get_template(template).render(**context)
