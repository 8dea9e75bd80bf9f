"""Preference rows from TRL JSONL, grouped by prompt, and the token sequences a reward model reads.

The data contract is TRL's preference format, as annotate.exporters writes it:

    {"prompt": "2+2?", "chosen": " 4", "rejected": " 5", "margin": 0.33,
     "prompt_id": 7, "chosen_id": 31, "rejected_id": 32}

`prompt`, `chosen` and `rejected` are strings, or message lists for chats (the prompt's turns,
then one assistant message each). `margin`, the ids and `subset` (RewardBench's layout) are
optional. Every (prompt, response) becomes one token sequence by one rendering (below), chosen
when the job is asked for and saved beside the model, so the K-way trainer, TRL's trainer,
scoring and a `pipeline` all read the same tokens.

Renderings (RewardTrainingConfig.rendering):

- "chat_template": chats through the tokenizer's chat template (as TRL does); plain text as
  TRL renders it, prompt + response + EOS with the tokenizer's special tokens.
- "pair": the pair encoding of BERT-style reward models, `tokenizer(prompt_text, response)`
  ([CLS] prompt [SEP] response [SEP], with token type ids); a chat's prompt turns become
  `conversation_text` and its reply the second text.
- "text": `conversation_text(prompt turns + reply)` or prompt + response, then EOS (SEP for
  encoders), tokenized with the tokenizer's special tokens: for decoders with no template.
- "auto": what `choose_rendering(tokenizer)` picks.

A sequence over `max_length` is truncated, never dropped: the response is kept whole where it
fits and the prompt (the conversation) is cut from the left; a response that alone is too long
keeps its beginning (and, for chat_template and text, its last token, where a decoder reads
the reward).
"""

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

Text = str | list[dict[str, Any]]
RENDERING_FILE = "reward_input.json"  # beside a trained model: how its input was rendered
ROLE_NAMES = {"system": "System", "user": "User", "assistant": "Assistant"}


class DataError(ValueError):
    """A preference file that cannot be read; the message names the file, line and field."""


@dataclass(frozen=True)
class PreferenceRow:
    prompt: Text
    chosen: Text
    rejected: Text
    margin: float = 0.0
    subset: str | None = None
    prompt_key: str = ""  # rows with equal keys share a prompt
    chosen_key: str = ""
    rejected_key: str = ""


@dataclass
class PromptGroup:
    """One prompt, its distinct completions, and its pairs as (chosen, rejected, margin)."""

    prompt: Text
    completions: list[Text] = field(default_factory=list)
    pairs: list[tuple[int, int, float]] = field(default_factory=list)


def read_preferences(path: str | Path) -> list[PreferenceRow]:
    """Read a TRL preference JSONL file; raise DataError naming the first bad line."""
    path = Path(path)
    rows = []
    with path.open(encoding="utf-8") as handle:
        for line_number, line in enumerate(handle, 1):
            if line.strip():
                rows.append(_row(parse_json_line(path, line_number, line), path, line_number))
    if not rows:
        raise DataError(f"{path.name}: no preference rows")
    return rows


def parse_json_line(path: Path, line_number: int, line: str) -> dict:
    """One JSONL line as an object; DataError naming the file and line."""
    try:
        value = json.loads(line)
    except json.JSONDecodeError as exc:
        raise DataError(f"{path.name}, line {line_number}: invalid JSON ({exc.msg})") from None
    if not isinstance(value, dict):
        raise DataError(f"{path.name}, line {line_number}: expected a JSON object")
    return value


def _row(value: dict, path: Path, line_number: int) -> PreferenceRow:
    where = f"{path.name}, line {line_number}"
    for name in ("chosen", "rejected"):
        if not is_text(value.get(name)):
            raise DataError(f"{where}, field '{name}': missing, or not a string or message list")
    prompt = value.get("prompt", [] if isinstance(value["chosen"], list) else "")
    if not is_text(prompt):
        raise DataError(f"{where}, field 'prompt': not a string or message list")
    if isinstance(prompt, list) != isinstance(value["chosen"], list) or isinstance(
        value["chosen"], list
    ) != isinstance(value["rejected"], list):
        raise DataError(f"{where}: prompt, chosen and rejected must all be text or all chats")
    margin = value.get("margin", 0.0)
    if not isinstance(margin, int | float) or isinstance(margin, bool):
        raise DataError(f"{where}, field 'margin': must be a number")
    # Without a prompt column each row stands alone (the prompt is inside chosen/rejected).
    prompt_key = _key(value, "prompt_id", prompt) if "prompt" in value else f"row:{line_number}"
    return PreferenceRow(
        prompt=prompt, chosen=value["chosen"], rejected=value["rejected"], margin=float(margin),
        subset=value.get("subset"), prompt_key=prompt_key,
        chosen_key=_key(value, "chosen_id", value["chosen"]),
        rejected_key=_key(value, "rejected_id", value["rejected"]),
    )


def is_text(value: object) -> bool:
    if isinstance(value, str):
        return True
    return isinstance(value, list) and all(
        isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str)
        for m in value
    )


def _key(value: dict, id_field: str, text: Text) -> str:
    if value.get(id_field) is not None:
        return f"id:{value[id_field]}"
    return "text:" + json.dumps(text, ensure_ascii=False, sort_keys=True)


def group_by_prompt(rows: Sequence[PreferenceRow], use_margin: bool = True) -> list[PromptGroup]:
    """Group pairs by prompt, each distinct completion once, in first-seen order.

    >>> rows = [PreferenceRow("Q", "a", "b", 1.0, prompt_key="1", chosen_key="a", rejected_key="b"),
    ...         PreferenceRow("Q", "a", "c", 0.5, prompt_key="1", chosen_key="a", rejected_key="c"),
    ...         PreferenceRow("Q", "b", "c", 0.0, prompt_key="1", chosen_key="b", rejected_key="c")]
    >>> (group,) = group_by_prompt(rows)
    >>> group.completions, group.pairs
    (['a', 'b', 'c'], [(0, 1, 1.0), (0, 2, 0.5), (1, 2, 0.0)])
    """
    groups: dict[str, PromptGroup] = {}
    indexes: dict[str, dict[str, int]] = {}
    for row in rows:
        group = groups.setdefault(row.prompt_key, PromptGroup(row.prompt))
        index = indexes.setdefault(row.prompt_key, {})
        for key, text in ((row.chosen_key, row.chosen), (row.rejected_key, row.rejected)):
            if key not in index:
                index[key] = len(group.completions)
                group.completions.append(text)
        margin = row.margin if use_margin else 0.0
        group.pairs.append((index[row.chosen_key], index[row.rejected_key], margin))
    return list(groups.values())


class Tokens(NamedTuple):
    """One model input: token ids, token type ids (pair rendering only), and whether it was cut."""

    ids: list[int]
    type_ids: list[int] | None = None
    truncated: bool = False


def choose_rendering(tokenizer) -> str:
    """Return the rendering "auto" means for this tokenizer: its chat template when it has one,
    else the pair encoding for an encoder (a tokenizer with CLS and SEP tokens, as BERT), else
    plain text.

    >>> from types import SimpleNamespace as T
    >>> choose_rendering(T(chat_template="{{ messages }}", cls_token=None, sep_token=None))
    'chat_template'
    >>> choose_rendering(T(chat_template=None, cls_token="[CLS]", sep_token="[SEP]"))
    'pair'
    >>> choose_rendering(T(chat_template=None, cls_token=None, sep_token=None))
    'text'
    """
    if getattr(tokenizer, "chat_template", None):
        return "chat_template"
    if getattr(tokenizer, "cls_token", None) and getattr(tokenizer, "sep_token", None):
        return "pair"
    return "text"


def resolve_rendering(rendering: str, tokenizer) -> str:
    """Return the concrete rendering for a requested one; raise ValueError if it cannot work."""
    if rendering == "auto":
        return choose_rendering(tokenizer)
    if rendering == "chat_template" and not getattr(tokenizer, "chat_template", None):
        raise ValueError("rendering 'chat_template': this tokenizer has no chat template; use "
                         "'pair' (encoders such as BERT) or 'text'")
    if rendering not in ("chat_template", "pair", "text"):
        raise ValueError(f"unknown rendering {rendering!r}")
    return rendering


def model_max_length(*sources) -> int | None:
    """Return the longest input the model can read: the least of its config's positions
    (`max_position_embeddings`, `n_positions`) and the tokenizer's `model_max_length`, for
    any configs and tokenizers given; None if none of them says.

    >>> from types import SimpleNamespace as S
    >>> model_max_length(S(max_position_embeddings=512), S(model_max_length=int(1e30)))
    512
    """
    limits = []
    for source in sources:
        for name in ("max_position_embeddings", "n_positions", "model_max_length"):
            value = getattr(source, name, None)
            if isinstance(value, int) and 0 < value < 10**8:
                limits.append(value)
    return min(limits) if limits else None


def conversation_text(messages: list[dict[str, Any]]) -> str:
    """Render chat turns as plain text, for tokenizers with no chat template.

    >>> conversation_text([{"role": "user", "content": "Hi"},
    ...                    {"role": "assistant", "content": "Yo"}])
    'User: Hi\\n\\nAssistant: Yo'
    """
    return "\n\n".join(f"{ROLE_NAMES.get(m['role'], m['role'].capitalize())}: {m['content']}"
                       for m in messages)


def reward_input(tokenizer, prompt: Text, response: Text, rendering: str = "auto",
                 max_length: int | None = None) -> dict:
    """Return what the reward model reads for (prompt, response), as keyword arguments of
    `tokenizer(**inputs)`; the same dict is a `pipeline("text-classification")` input.
    With `max_length`, a longer pair input comes back cut as training cuts it (the other
    renderings are cut as tokens: score those through RewardScorer).

    >>> class Tok:
    ...     chat_template, cls_token, sep_token, eos_token = None, "[CLS]", "[SEP]", None
    >>> reward_input(Tok(), [{"role": "user", "content": "Hi"}],
    ...              [{"role": "assistant", "content": "Hello"}])
    {'text': 'User: Hi', 'text_pair': 'Hello'}
    """
    rendering = resolve_rendering(rendering, tokenizer)
    chat = isinstance(prompt, list) or isinstance(response, list)
    if rendering == "pair":
        inputs = {"text": _as_text(prompt), "text_pair": _reply_text(response)}
        if max_length and len(tokenizer(**inputs)["input_ids"]) > max_length:
            inputs = _truncated_pair(tokenizer, inputs, max_length)[1]
        return inputs
    if rendering == "chat_template" and chat:
        # The template writes its own special tokens: the tokenizer must add none.
        return {"text": tokenizer.apply_chat_template(_messages(prompt, response), tokenize=False),
                "add_special_tokens": False}
    if chat:
        text = conversation_text(_messages(prompt, response))
    else:
        text = prompt + response
    eos = end_token(tokenizer)
    return {"text": text if eos is None or text.endswith(eos) else text + eos}


def _as_text(prompt: Text) -> str:
    return conversation_text(prompt) if isinstance(prompt, list) else prompt


def _reply_text(response: Text) -> str:
    if isinstance(response, str):
        return response
    if len(response) == 1:
        return response[0]["content"]
    return conversation_text(response)


def end_token(tokenizer) -> str | None:
    """The token TRL appends to plain-text sequences: EOS, else SEP (BERT-like models)."""
    return tokenizer.eos_token or getattr(tokenizer, "sep_token", None)


def reward_text(tokenizer, prompt: Text, response: Text) -> str:
    """Return the text a reward model reads for (prompt, response), as TRL renders it."""
    if isinstance(prompt, list) or isinstance(response, list):
        return tokenizer.apply_chat_template(_messages(prompt, response), tokenize=False)
    text = prompt + response
    eos = end_token(tokenizer)
    return text if eos is None or text.endswith(eos) else text + eos


def encode(tokenizer, prompt: Text, response: Text, rendering: str = "auto",
           max_length: int | None = None) -> Tokens:
    """Return the tokens of (prompt, response) in `rendering`, truncated to `max_length`
    (the prompt cut from the left, see the module docstring)."""
    rendering = resolve_rendering(rendering, tokenizer)
    inputs = reward_input(tokenizer, prompt, response, rendering)
    tokens = _tokenize(tokenizer, inputs, rendering)
    if max_length is None or len(tokens.ids) <= max_length:
        return tokens
    if rendering == "pair":
        return _truncated_pair(tokenizer, inputs, max_length)[0]
    return Tokens(_cut_prompt(tokenizer, tokens.ids, _prompt_ids(tokenizer, prompt, rendering),
                              max_length), None, True)


def _tokenize(tokenizer, inputs: dict, rendering: str) -> Tokens:
    encoded = tokenizer(**inputs)
    types = encoded.get("token_type_ids") if rendering == "pair" else None
    return Tokens(list(encoded["input_ids"]), list(types) if types is not None else None)


def _prompt_ids(tokenizer, prompt: Text, rendering: str) -> list[int]:
    """The tokens a rendering writes for the prompt alone (the start of every sequence)."""
    if rendering == "chat_template" and isinstance(prompt, list):
        if not prompt:
            return []
        text = tokenizer.apply_chat_template(prompt, tokenize=False)
        return list(tokenizer(text, add_special_tokens=False)["input_ids"])
    return list(tokenizer(_as_text(prompt))["input_ids"])


def _cut_prompt(tokenizer, ids: list[int], prompt_ids: list[int], max_length: int) -> list[int]:
    """Cut the prompt part of `ids` from the left, keeping leading special tokens (BOS)."""
    split = 0
    while split < min(len(ids), len(prompt_ids)) and ids[split] == prompt_ids[split]:
        split += 1
    specials = set(tokenizer.all_special_ids)
    lead = 0
    while lead < split and ids[lead] in specials:
        lead += 1
    reply = ids[split:]
    room = max_length - lead - len(reply)
    if room >= 0:
        return ids[:lead] + ids[split - room:split] + reply if room else ids[:lead] + reply
    keep = max_length - lead - 1  # a reply too long on its own: its start and its last token
    return ids[:lead] + reply[:keep] + reply[-1:]


def _truncated_pair(tokenizer, inputs: dict, max_length: int) -> tuple[Tokens, dict]:
    """Cut a pair input to max_length as text, so the same text gives the same tokens anywhere
    (a pipeline included): the response keeps its start, the prompt its end. Return the
    tokens and the cut texts."""
    room = max_length - tokenizer.num_special_tokens_to_add(pair=True)
    response = _text_head(tokenizer, inputs["text_pair"], room)
    prompt_room = room - _count(tokenizer, response)
    prompt = _text_tail(tokenizer, inputs["text"], prompt_room)
    while True:  # re-tokenizing a cut text can, rarely, give one token more
        tokens = _tokenize(tokenizer, {"text": prompt, "text_pair": response}, "pair")
        if len(tokens.ids) <= max_length:
            return tokens._replace(truncated=True), {"text": prompt, "text_pair": response}
        prompt_room -= 1
        if prompt_room < 0:
            response = _text_head(tokenizer, response, _count(tokenizer, response) - 1)
        prompt = _text_tail(tokenizer, prompt, max(prompt_room, 0))


def _count(tokenizer, text: str) -> int:
    return len(tokenizer(text, add_special_tokens=False)["input_ids"])


def _text_head(tokenizer, text: str, count: int) -> str:
    """The start of `text` that holds its first `count` tokens."""
    offsets = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)[
        "offset_mapping"]
    if len(offsets) <= count:
        return text
    return text[:offsets[count - 1][1]] if count > 0 else ""


def _text_tail(tokenizer, text: str, count: int) -> str:
    """The end of `text` that holds its last `count` tokens."""
    offsets = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)[
        "offset_mapping"]
    if len(offsets) <= count:
        return text
    return text[offsets[len(offsets) - count][0]:] if count > 0 else ""


def save_rendering(directory: Path, rendering: str, max_length: int) -> None:
    """Record beside a model how its input is rendered, for scoring and pipelines."""
    (Path(directory) / RENDERING_FILE).write_text(json.dumps(
        {"rendering": rendering, "max_length": max_length}, indent=2) + "\n")


def saved_rendering(directory: str | Path, tokenizer=None) -> dict:
    """Return {"rendering", "max_length"} as a model was trained; a model saved before this
    was recorded was trained on its chat template where it had one, else on TRL's text."""
    path = Path(directory) / RENDERING_FILE
    if path.is_file():
        return json.loads(path.read_text())
    legacy = "chat_template" if getattr(tokenizer, "chat_template", None) else "text"
    return {"rendering": legacy, "max_length": None}


def _messages(prompt: Text, response: Text) -> list[dict]:
    prompt_turns = prompt if isinstance(prompt, list) else [{"role": "user", "content": prompt}]
    reply = response if isinstance(response, list) else [
        {"role": "assistant", "content": response}]
    return [*prompt_turns, *reply]


def batches_of_groups(groups: Sequence[PromptGroup], pairs_per_batch: int) -> Iterator[list[int]]:
    """Yield lists of group indexes holding at most `pairs_per_batch` pairs (one group at least).

    >>> groups = [PromptGroup("p", ["a", "b"], [(0, 1, 0.0)] * n) for n in (3, 3, 6, 1)]
    >>> list(batches_of_groups(groups, 6))
    [[0, 1], [2], [3]]
    """
    batch, pairs = [], 0
    for index, group in enumerate(groups):
        if batch and pairs + len(group.pairs) > pairs_per_batch:
            yield batch
            batch, pairs = [], 0
        batch.append(index)
        pairs += len(group.pairs)
    if batch:
        yield batch
