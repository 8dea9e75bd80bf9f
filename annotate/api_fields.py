"""JSON fields of the API with the shape the schema promises (and generated clients type).

The values stay plain JSON here: the pure core (annotate.ranking) checks them against the
prompt's completions and says what is wrong, as it does for pages and imports.
"""

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from .ranking import FLAG_NAMES

COMPLETION_IDS = {"type": "array", "items": {"type": "integer"}}
MESSAGE = {
    "type": "object",
    "properties": {"role": {"type": "string", "example": "user"},
                   "content": {"type": "string"}},
    "required": ["role", "content"],
}
MESSAGES = {"type": "array", "items": MESSAGE}


@extend_schema_field({"type": "array", "items": {**COMPLETION_IDS, "minItems": 1},
                      "minItems": 1, "example": [[12], [14, 13], [11]]})
class TiersField(serializers.JSONField):
    """Tiers of completion ids, best first; ids in one tier are tied."""


@extend_schema_field({"type": "object", "example": {"12": ["unsafe"]},
                      "additionalProperties": {"type": "array",
                                               "items": {"type": "string", "enum": FLAG_NAMES}}})
class FlagsField(serializers.JSONField):
    """Flags by completion id: {"<completion id>": ["unsafe", ...]}."""


@extend_schema_field({"type": "object", "example": {"12": {"overall": 4}, "13": {"overall": 2}},
                      "additionalProperties": {"type": "object",
                                               "additionalProperties": {"type": "integer"}}})
class ScoresField(serializers.JSONField):
    """Rate mode: scores by completion id, then by aspect: {"<completion id>": {"<aspect>": n}}
    (a project without aspects scores one, "overall")."""


@extend_schema_field(COMPLETION_IDS)
class CompletionIdsField(serializers.JSONField):
    """Completion ids in an order (the order they were shown in)."""


@extend_schema_field({**MESSAGES, "nullable": True})
class MessagesField(serializers.JSONField):
    """Chat messages [{role, content}], or null where the prompt is plain text."""


@extend_schema_field({"oneOf": [{"type": "string", "minLength": 1}, {**MESSAGES, "minItems": 1}]})
class TextOrMessagesField(serializers.JSONField):
    """Text, or chat messages [{role, content}]."""
