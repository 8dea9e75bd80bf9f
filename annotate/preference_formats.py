"""Rows of preference datasets users already have: TRL and UltraFeedback. Pure Python.

Each function here turns one parsed JSON object into a PromptRow whose `reference_tiers` is
the preference the row carries (stored as an imported ranking), or raises _FieldError naming
the field. annotate.importers reads the lines and reports the errors with their line.

- trl: TRL's preference rows, {"prompt", "chosen", "rejected"}, as text or as messages, and
  the implicit-prompt form (only "chosen" and "rejected"; their shared beginning is the
  prompt), read the way TRL's own `maybe_extract_prompt` reads them.
- ultrafeedback: openbmb/UltraFeedback's rows, {"instruction", "completions": [{"model",
  "response", "overall_score", "fine-grained_score", "annotations", ...}]}, ranked by score.
"""

import math
from typing import Any

from .importers import (
    ROLES,
    CompletionRow,
    PromptRow,
    _external_id,
    _FieldError,
    _metadata,
    _optional_str,
    _text,
)

# --- TRL ----------------------------------------------------------------------------------

TRL_KEYS = {"prompt", "chosen", "rejected", "id", "metadata"}
# Columns that TRL's own datasets carry beside the pair (trl-lib/ultrafeedback_binarized,
# HuggingFaceH4/ultrafeedback_binarized): kept in the prompt's metadata, except "messages",
# a copy of the chosen conversation.
TRL_EXTRA_KEYS = {"prompt_id", "score_chosen", "score_rejected", "messages"}


def trl_row(record: dict[str, Any], line: int, k: int) -> PromptRow:
    """Return a prompt with the completions [chosen, rejected] and chosen ranked first.

    >>> row = trl_row({"prompt": "Sky?", "chosen": "Blue.", "rejected": "Green."}, 1, 2)
    >>> row.text, [c.text for c in row.completions], row.reference_tiers
    ('Sky?', ['Blue.', 'Green.'], [[0], [1]])
    """
    unknown = sorted(set(record) - TRL_KEYS - TRL_EXTRA_KEYS)
    if unknown:
        raise _FieldError(unknown[0], f"unknown field; allowed: {', '.join(sorted(TRL_KEYS))}")
    for name in ("chosen", "rejected"):
        if name not in record:
            raise _FieldError(name, "is missing: a TRL preference row needs 'chosen' and "
                                    "'rejected'")
    chosen, rejected = record["chosen"], record["rejected"]
    conversational = isinstance(chosen, list)
    if not isinstance(chosen, str | list):
        raise _FieldError("chosen", "must be a string or a list of messages")
    if isinstance(rejected, list) != conversational or not isinstance(rejected, str | list):
        raise _FieldError("rejected", f"must be {_form(conversational)}, as 'chosen' is")
    prompt = record.get("prompt")
    # As TRL does: a prompt of the other form than the answers (a text prompt beside whole
    # conversations) is not the prompt; the answers' shared beginning is.
    if prompt is None or isinstance(prompt, list) != conversational:
        text, messages, answers = _implicit_prompt(chosen, rejected, conversational)
    elif conversational:
        text, messages = "", _messages(prompt, "prompt")
        answers = [_assistant_turn(chosen, "chosen"), _assistant_turn(rejected, "rejected")]
    else:
        text, messages = _text(prompt, "prompt"), None
        answers = [_text(chosen, "chosen"), _text(rejected, "rejected")]
    if messages is not None and messages[-1]["role"] != "user":
        if prompt is not None and isinstance(prompt, list):
            raise _FieldError("prompt", "must end with a user message (the answers reply to it)")
        raise _FieldError("chosen", "shares a beginning with 'rejected' (the prompt) that does "
                                    "not end with a user message")
    return PromptRow(
        line=line,
        external_id=_external_id(record.get("id"), "id"),
        text=text,
        messages=messages,
        metadata=_trl_metadata(record),
        completions=[CompletionRow(text=answers[0]), CompletionRow(text=answers[1])],
        reference_tiers=[[0], [1]],
    )


def _form(conversational: bool) -> str:
    return "a list of messages" if conversational else "a string"


def _implicit_prompt(chosen: Any, rejected: Any, conversational: bool):
    """Split two answers into their shared beginning (the prompt) and the rest.

    Text splits where the characters first differ (a space there goes with the answers, as
    in TRL); conversations split after the last message they share.
    """
    if not conversational:
        chosen, rejected = _text(chosen, "chosen"), _text(rejected, "rejected")
        split = _shared_length(chosen, rejected)
        if split and chosen[split - 1] == " ":
            split -= 1
        prompt = chosen[:split]
        if not prompt.strip():
            raise _FieldError("chosen", "shares no beginning with 'rejected' to take as the "
                                        "prompt: give a 'prompt'")
        return prompt, None, _answers(chosen[split:], rejected[split:], _text)
    chosen, rejected = _messages(chosen, "chosen"), _messages(rejected, "rejected")
    split = _shared_length(chosen, rejected)
    if not split:
        raise _FieldError("chosen", "shares no first message with 'rejected' to take as the "
                                    "prompt: give a 'prompt'")
    answers = _answers(chosen[split:], rejected[split:], _assistant_turn)
    return "", chosen[:split], answers


def _answers(chosen: Any, rejected: Any, check) -> list[str]:
    if not chosen or not rejected:
        shorter = "chosen" if not chosen else "rejected"
        raise _FieldError(shorter, "has nothing after the beginning it shares with the other "
                                   "answer: chosen and rejected must differ")
    return [check(chosen, "chosen"), check(rejected, "rejected")]


def _shared_length(first, second) -> int:
    length = 0
    for a, b in zip(first, second, strict=False):
        if a != b:
            break
        length += 1
    return length


def _messages(value: Any, where: str) -> list[dict[str, str]]:
    if not isinstance(value, list) or not value:
        raise _FieldError(where, "must be a non-empty list of {role, content}")
    clean = []
    for index, message in enumerate(value):
        place = f"{where}[{index}]"
        if not isinstance(message, dict) or set(message) != {"role", "content"}:
            raise _FieldError(place, "must be an object with exactly 'role' and 'content'")
        if message["role"] not in ROLES:
            raise _FieldError(f"{place}.role", f"must be one of {', '.join(ROLES)}")
        clean.append({"role": message["role"], "content": _text(message["content"],
                                                                f"{place}.content")})
    return clean


def _assistant_turn(value: Any, where: str) -> str:
    """The text of an answer given as messages: exactly one assistant message."""
    messages = _messages(value, where) if not isinstance(value, str) else None
    if messages is None or len(messages) != 1 or messages[0]["role"] != "assistant":
        raise _FieldError(where, "must be one assistant message, [{\"role\": \"assistant\", "
                                 "\"content\": ...}] (a completion is one turn)")
    return messages[0]["content"]


def _trl_metadata(record: dict[str, Any]) -> dict[str, Any]:
    metadata = dict(_metadata(record.get("metadata"))) or {"source": "trl"}
    for name in ("prompt_id", "score_chosen", "score_rejected"):
        if name in record:
            metadata[name] = record[name]
    return metadata


# --- UltraFeedback ------------------------------------------------------------------------

ULTRAFEEDBACK_KEYS = {"source", "instruction", "prompt", "models", "completions",
                      "correct_answers", "incorrect_answers", "id"}
ULTRAFEEDBACK_COMPLETION_KEYS = {"model", "principle", "custom_system_prompt", "response",
                                 "annotations", "critique", "overall_score",
                                 "fine-grained_score"}
# The score a row is ranked by: the first that every completion of the row has.
SCORE_RULES = ("overall_score", "fine-grained_score", "mean rating")


def ultrafeedback_row(record: dict[str, Any], line: int, k: int) -> PromptRow:
    """Return a prompt with its completions, ranked by score (equal scores tie).

    >>> row = ultrafeedback_row({"instruction": "Hi?", "completions": [
    ...     {"model": "a", "response": "Hello.", "overall_score": 7.5},
    ...     {"model": "b", "response": "Go.", "overall_score": 3}]}, 1, 2)
    >>> [c.model_name for c in row.completions], row.reference_tiers
    (['a', 'b'], [[0], [1]])
    """
    unknown = sorted(set(record) - ULTRAFEEDBACK_KEYS)
    if unknown:
        raise _FieldError(unknown[0], "unknown field; allowed: "
                                      f"{', '.join(sorted(ULTRAFEEDBACK_KEYS))}")
    if ("instruction" in record) == ("prompt" in record):
        raise _FieldError("instruction", "give exactly one of 'instruction' and 'prompt'")
    name = "instruction" if "instruction" in record else "prompt"
    text = _text(record[name], name)
    items = record.get("completions")
    if not isinstance(items, list):
        raise _FieldError("completions", f"must be a list of {k} completions")
    if len(items) != k:
        raise _FieldError("completions", f"has {len(items)} completions; this project "
                                         f"takes {k}")
    completions = [_uf_completion(item, f"completions[{i}]") for i, item in enumerate(items)]
    rule, scores = _scores(items)
    metadata: dict[str, Any] = {"source": "ultrafeedback", "score": rule, "scores": scores}
    for key in ("source", "correct_answers", "incorrect_answers"):
        if key in record:
            metadata["dataset" if key == "source" else key] = record[key]
    return PromptRow(
        line=line,
        external_id=_external_id(record.get("id"), "id"),
        text=text,
        messages=None,
        metadata=metadata,
        completions=completions,
        reference_tiers=tiers_by_score(scores),
    )


def tiers_by_score(scores: list[float]) -> list[list[int]]:
    """Return the positions in tiers, highest score first; equal scores share a tier.

    >>> tiers_by_score([7.0, 9.5, 7.0, 2.0])
    [[1], [0, 2], [3]]
    """
    tiers: dict[float, list[int]] = {}
    for position, score in enumerate(scores):
        tiers.setdefault(score, []).append(position)
    return [tiers[score] for score in sorted(tiers, reverse=True)]


def _uf_completion(item: Any, where: str) -> CompletionRow:
    if not isinstance(item, dict):
        raise _FieldError(where, "must be an object with 'response'")
    unknown = sorted(set(item) - ULTRAFEEDBACK_COMPLETION_KEYS)
    if unknown:
        allowed = ", ".join(sorted(ULTRAFEEDBACK_COMPLETION_KEYS))
        raise _FieldError(f"{where}.{unknown[0]}", f"unknown field; allowed: {allowed}")
    if "response" not in item:
        raise _FieldError(f"{where}.response", "is missing")
    params = {}
    for key in ("principle", "custom_system_prompt"):  # how the response was asked for
        if item.get(key) is not None:
            params[key] = _text_or_empty(item[key], f"{where}.{key}")
    return CompletionRow(
        text=_text(item["response"], f"{where}.response"),
        model_name=_optional_str(item.get("model"), f"{where}.model"),
        generation_params=params,
    )


def _text_or_empty(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise _FieldError(where, "must be a string")
    return value


def _scores(items: list[dict[str, Any]]) -> tuple[str, list[float]]:
    """Return the rule and each completion's score: overall_score where every completion has
    one, else fine-grained_score, else the mean of its aspects' ratings."""
    per_rule = [[_score(item, rule, f"completions[{i}]") for i, item in enumerate(items)]
                for rule in SCORE_RULES]
    for rule, scores in zip(SCORE_RULES, per_rule, strict=True):
        if all(score is not None for score in scores):
            return rule, scores  # type: ignore[return-value]
    for position in range(len(items)):
        if all(scores[position] is None for scores in per_rule):
            raise _FieldError(f"completions[{position}]", "has no score: give 'overall_score', "
                                                          "'fine-grained_score' or rated "
                                                          "'annotations'")
    raise _FieldError("completions", "have different kinds of scores: every completion of a "
                                     "row needs the same one (overall_score, "
                                     "fine-grained_score or rated annotations)")


def _score(item: dict[str, Any], rule: str, where: str) -> float | None:
    if rule != "mean rating":
        return _number(item.get(rule), f"{where}.{rule}")
    annotations = item.get("annotations")
    if annotations is None:
        return None
    if not isinstance(annotations, dict):
        raise _FieldError(f"{where}.annotations", "must be an object of aspects")
    ratings = [_rating(value, f"{where}.annotations.{aspect}")
               for aspect, value in annotations.items()]
    rated = [rating for rating in ratings if rating is not None]
    return sum(rated) / len(rated) if rated else None


def _number(value: Any, where: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _FieldError(where, "must be a number")
    return float(value)


def _rating(aspect: Any, where: str) -> float | None:
    """An aspect's Rating: a number, a numeric string ("4", as UltraFeedback writes it), or
    "N/A" (not rated)."""
    if not isinstance(aspect, dict) or "Rating" not in aspect:
        raise _FieldError(where, "must be an object with 'Rating'")
    rating = aspect["Rating"]
    if isinstance(rating, str) and rating.strip().upper() in ("N/A", "NA", ""):
        return None
    if isinstance(rating, str):
        try:
            rating = float(rating)
        except ValueError:
            rating = None
        if rating is None or not math.isfinite(rating):
            raise _FieldError(f"{where}.Rating", "must be a number or 'N/A'")
    return _number(rating, f"{where}.Rating")
