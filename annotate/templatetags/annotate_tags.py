from django import template

from annotate.rendering import markdown_to_safe_html

register = template.Library()


@register.filter
def markdown(text: str):
    """Render untrusted Markdown as sanitized HTML."""
    return markdown_to_safe_html(text or "")
