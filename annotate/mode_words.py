"""The words labeler-facing pages use for a project's annotation mode. Pure: no Django.

A rank project's labelers rank and leave rankings; a rate project's rate and leave ratings; a
demonstrate project's write and leave demonstrations. Pages say the mode's words, not "rank".
"""

from dataclasses import dataclass


@dataclass(frozen=True)
class ModeWords:
    verb: str  # "Start ___ing", "Nothing left to ___"
    doing: str  # the activity: "Start ranking"
    done: str  # "You have ___ 3 prompts"
    noun: str  # one result: "Revise this ranking"
    nouns: str  # "My rankings", "12 / 30 rankings"
    by: str  # the criterion's label on the project page
    next_action: str  # the button that leases the next prompt


RANK_WORDS = ModeWords("rank", "ranking", "ranked", "ranking", "rankings", "Rank by",
                       "Rank next prompt")
MODE_WORDS = {
    "rank": RANK_WORDS,
    "rate": ModeWords("rate", "rating", "rated", "rating", "ratings", "Rate by",
                      "Rate next prompt"),
    "demonstrate": ModeWords("write", "writing", "written a response for", "demonstration",
                             "demonstrations", "Write for", "Write the next response"),
}


def mode_words(mode: str) -> ModeWords:
    """Return the words for an annotation mode (a rank project's for an unknown one).

    >>> mode_words("rate").nouns
    'ratings'
    >>> mode_words("demonstrate").verb
    'write'
    """
    return MODE_WORDS.get(mode, RANK_WORDS)
