"""What makes two prompts the same: pure functions, no Django.

prompt_key names a prompt by its content (its text, or its chat messages); content_key
names a prompt with its completions. An import refuses a second copy of the same content
in a project, and an export splits train and test by prompt_key, so identical prompts
always land on the same side.
"""

import hashlib
import json
from collections.abc import Sequence

# json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":")), without
# building an encoder per call: an export keys every prompt.
_canonical = json.JSONEncoder(sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode
# What _canonical writes for one string; used directly for a text prompt's key, which needs
# no encoder: JSONEncoder.encode builds one per call, most of the cost of keying an import.
_quoted = json.encoder.encode_basestring


def _digest(value: object) -> str:
    return hashlib.sha256(_canonical(value).encode()).hexdigest()


def prompt_key(text: str, messages: list[dict[str, str]] | None) -> str:
    """The prompt's content, as a hash: equal for equal text (or equal messages).

    >>> prompt_key("Why?", None) == prompt_key("Why?", None) != prompt_key("Why not?", None)
    True
    """
    return _digest(messages if messages else text)


def content_key(text: str, messages: list[dict[str, str]] | None,
                completions: Sequence[str]) -> str:
    """The prompt with its completions, in order, as a hash.

    >>> content_key("Why?", None, ["A", "B"]) == content_key("Why?", None, ["A", "B"])
    True
    >>> content_key("Why?", None, ["A", "B"]) == content_key("Why?", None, ["B", "A"])
    False
    """
    if messages or type(text) is not str or any(type(c) is not str for c in completions):
        return _digest([messages if messages else text, list(completions)])
    # _canonical's text for [text, [completion, ...]], written out (the same bytes).
    canonical = f"[{_quoted(text)},[{','.join(map(_quoted, completions))}]]"
    return hashlib.sha256(canonical.encode()).hexdigest()
