"""Untrusted text to safe HTML: Markdown rendered, then sanitized with an allow-list.

Prompts and completions are model output or imported data: hostile until proven otherwise.
Raw HTML in them is shown as text (a labeler should see that a completion wrote `<script>`),
never as markup; links keep only http, https and mailto; images are not fetched. nh3 then
cleans the result again as a second line of defence.
"""

from html import escape, unescape

import nh3
from django.utils.safestring import SafeString, mark_safe
from markdown_it import MarkdownIt
from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexers import get_lexer_by_name
from pygments.util import ClassNotFound

# fmt: off
ALLOWED_TAGS = {
    "p", "br", "hr", "strong", "em", "code", "pre", "blockquote", "ul", "ol", "li",
    "h1", "h2", "h3", "h4", "h5", "h6", "table", "thead", "tbody", "tr", "th", "td", "a",
    "s", "span", "div",
}
# fmt: on
# Classes only for code highlighting (Pygments' token classes); no style, no event handlers.
ALLOWED_ATTRIBUTES = {
    "a": {"href", "title"},
    "code": {"class"},
    "pre": {"class"},
    "span": {"class"},
    "div": {"class"},
    "ol": {"start"},
}
SAFE_URL_SCHEMES = {"http", "https", "mailto"}


def _highlight(code: str, language: str, _attrs: str) -> str:
    try:
        lexer = get_lexer_by_name(language) if language else None
    except ClassNotFound:
        lexer = None
    body = escape(code) if lexer is None else highlight(code, lexer, HtmlFormatter(nowrap=True))
    # Starting with "<pre" tells markdown-it not to wrap it again.
    return f'<pre class="codehilite"><code>{body}</code></pre>'


_markdown = (
    MarkdownIt("commonmark", {"html": False, "linkify": False, "highlight": _highlight})
    .enable("table")
    .enable("strikethrough")
    .disable("image")  # remote images would be fetched by the labeler's browser
)


def markdown_to_safe_html(text: str) -> SafeString:
    """Render Markdown with raw HTML shown as text, and strip anything not on the allow-list."""
    clean = nh3.clean(
        _markdown.render(text),
        tags=ALLOWED_TAGS,
        attributes=ALLOWED_ATTRIBUTES,
        url_schemes=SAFE_URL_SCHEMES,
        link_rel="noopener noreferrer nofollow",
    )
    return mark_safe(clean)  # noqa: S308 - sanitized by nh3 just above


def plain_preview(text: str, limit: int = 120) -> str:
    """Return the text a reader sees, without Markdown marks, on one line of at most `limit`.

    For lists of rankings: the Markdown is rendered and its tags dropped, so `code` and **bold**
    read as words; the caller's template escapes what is left.

    >>> plain_preview("Use `print()` and **bold**.\\n\\n```python\\nx = 1\\n```")
    'Use print() and bold. x = 1'
    >>> plain_preview("word " * 40, limit=20)
    'word word word word…'
    >>> plain_preview("<b>raw</b> & 1 < 2")
    '<b>raw</b> & 1 < 2'
    """
    words = unescape(nh3.clean(_markdown.render(text), tags=set())).split()
    line = " ".join(words)
    if len(line) <= limit:
        return line
    return line[:limit].rsplit(" ", 1)[0].rstrip(" ,.;:") + "…"
