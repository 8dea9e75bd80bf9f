"""Model-written text made storable. Pure Python: no Django, no torch.

A byte-level model (a randomly initialised one always, a real one with byte fallback
sometimes) can write bytes the project's import refuses (NUL) or that no one can read
(escape sequences, backspaces), and a decoder can hand back unpaired surrogates that are not
valid Unicode. clean_text() removes what cannot be stored or shown and keeps the rest as the
model wrote it.
"""

import re

# C0 controls except tab (\x09) and newline (\x0a); carriage returns go too, so "\r\n" is "\n".
_CONTROLS = re.compile("[\x00-\x08\x0b-\x1f]")


def clean_text(text: str) -> str:
    """Return `text` without NUL and the other C0 control characters (newline and tab stay),
    surrogate pairs joined and every lone surrogate replaced by U+FFFD.

    >>> clean_text("a\\x00b\\x1b[1mc\\r\\n\\td\\ud800")
    'ab[1mc\\n\\td\\ufffd'
    """
    text = _CONTROLS.sub("", text)
    if text.isascii():
        return text
    # UTF-16 round trip: a high+low pair becomes its character, a lone half becomes U+FFFD.
    return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")


def is_blank(text: str) -> bool:
    """True for text the import refuses as empty: nothing but whitespace.

    >>> is_blank(" \\n\\t"), is_blank(" ok ")
    (True, False)
    """
    return not text.strip()
