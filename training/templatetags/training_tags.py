from django import template

from training.kinds import KINDS

register = template.Library()


@register.filter
def kind_label(kind_name: str) -> str:
    """A job kind's label from its declaration ("reward" -> "Reward model")."""
    kind = KINDS.get(kind_name)
    return kind.label if kind else kind_name


@register.filter
def duration(seconds: float | None) -> str:
    """"42 s", "3 min 05 s", "1 h 02 min"; empty for None."""
    if seconds is None:
        return ""
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"
