from django import template

from training.kinds import KINDS

register = template.Library()


@register.filter
def kind_label(kind_name: str) -> str:
    """A job kind's label from its declaration ("reward" -> "Reward model")."""
    kind = KINDS.get(kind_name)
    return kind.label if kind else kind_name
