"""Streaming parsers for prompt files. Pure Python: no Django, no database.

Each parser reads a binary stream line by line and yields, in file order, a PromptRow for
every valid record and a RowError (line, field, message) for every invalid one, so the
caller can stop at the first error, collect them all, or skip them. Nothing here writes.

Formats:
- jsonl: {"prompt": str | "messages": [{role, content}], "completions": [str | {text, model,
  params, id}], "id"?, "metadata"?, "model"?} per line.
- csv: a header with prompt (or messages, as JSON), completion_1..completion_K, and
  optionally id, model, metadata (JSON object).
- hh-rlhf: Anthropic's {"chosen": transcript, "rejected": transcript} per line; the shared
  dialogue becomes a chat prompt, the two final assistant turns its completions, and the
  original preference a reference ranking.
Any of them may be gzip-compressed (detected by its magic bytes, not its name).
"""

import csv
import gzip
import io
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import IO, Any

FORMATS = ("jsonl", "csv", "hh-rlhf")
ROLES = ("system", "user", "assistant")
MAX_ID_LENGTH = 200
GZIP_MAGIC = b"\x1f\x8b"


@dataclass(frozen=True)
class CompletionRow:
    text: str
    model_name: str = ""
    generation_params: dict[str, Any] = field(default_factory=dict)
    external_id: str = ""


@dataclass(frozen=True)
class PromptRow:
    line: int
    external_id: str
    text: str  # "" for a chat prompt
    messages: list[dict[str, str]] | None
    metadata: dict[str, Any]
    completions: list[CompletionRow]
    # A preference that came with the data, as tiers of completion positions, best first.
    reference_tiers: list[list[int]] | None = None
    # A gold prompt's known answer, as tiers of completion positions, and "ranking" or "best".
    gold_tiers: list[list[int]] | None = None
    gold_mode: str = ""


@dataclass(frozen=True)
class RowError:
    line: int
    field: str
    message: str
    fatal: bool = False  # the rest of the file cannot be read (size, header, format)

    def describe(self, filename: str) -> str:
        return f"{filename}, line {self.line}, field '{self.field}': {self.message}"

    def as_dict(self) -> dict[str, Any]:
        return {"line": self.line, "field": self.field, "message": self.message}


class _FieldError(Exception):
    def __init__(self, field_name: str, message: str):
        super().__init__(message)
        self.field = field_name
        self.message = message


class FileTooLarge(Exception):
    pass


def open_maybe_gzip(binary: IO[bytes]) -> IO[bytes]:
    """Return a stream of the file's bytes, decompressing it if it starts like gzip."""
    buffered = binary if isinstance(binary, io.BufferedReader) else io.BufferedReader(binary)
    if buffered.peek(2)[:2] == GZIP_MAGIC:
        return gzip.GzipFile(fileobj=buffered, mode="rb")  # type: ignore[return-value]
    return buffered


def detect_format(filename: str, head: bytes) -> str:
    """Guess the format from the file name and its first bytes (already decompressed).

    >>> detect_format("prompts.csv", b"prompt,completion_1")
    'csv'
    >>> detect_format("pairs.jsonl.gz", b'{"chosen": "...", "rejected": "..."}')
    'hh-rlhf'
    """
    name = filename.lower().removesuffix(".gz")
    if name.endswith(".csv"):
        return "csv"
    first_line = head.split(b"\n", 1)[0]
    try:
        record = json.loads(first_line)
    except ValueError:
        return "jsonl"  # the parser will report the bad line
    if isinstance(record, dict) and "chosen" in record and "rejected" in record:
        return "hh-rlhf"
    return "jsonl"


def parse_prompts(
    binary: IO[bytes], *, file_format: str, completions_per_prompt: int, max_bytes: int
) -> Iterator[PromptRow | RowError]:
    """Yield a PromptRow or a RowError for each record of a (decompressed) binary stream."""
    if file_format not in FORMATS:
        yield RowError(0, "format", f"unknown format {file_format!r}; use one of {FORMATS}", True)
        return
    if file_format == "hh-rlhf" and completions_per_prompt != 2:
        yield RowError(
            0,
            "format",
            f"HH-RLHF rows give 2 completions each, but this project takes "
            f"{completions_per_prompt} per prompt",
            True,
        )
        return
    lines = _numbered_lines(_limited(binary, max_bytes))
    rows = (
        _parse_csv(lines, completions_per_prompt)
        if file_format == "csv"
        else _parse_jsonl(lines, completions_per_prompt, hh_rlhf=file_format == "hh-rlhf")
    )
    seen_ids: dict[str, int] = {}
    try:
        for row in rows:
            if isinstance(row, PromptRow) and row.external_id:
                first_line = seen_ids.setdefault(row.external_id, row.line)
                if first_line != row.line:
                    row = RowError(
                        row.line,
                        "id",
                        f"duplicate id {row.external_id!r} (first used on line {first_line})",
                    )
            yield row
    except FileTooLarge:
        yield RowError(0, "file", f"file is larger than the limit of {max_bytes:,} bytes", True)


# --- lines --------------------------------------------------------------------------------


def _limited(binary: IO[bytes], max_bytes: int) -> Iterator[bytes]:
    read = 0
    for raw in binary:
        read += len(raw)
        if read > max_bytes:
            raise FileTooLarge
        yield raw


def _numbered_lines(raw_lines: Iterator[bytes]) -> Iterator[tuple[int, str | RowError]]:
    for number, raw in enumerate(raw_lines, start=1):
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            yield number, RowError(number, "line", f"invalid UTF-8 at byte {exc.start}")
            continue
        yield number, text.removeprefix("\ufeff") if number == 1 else text


# --- JSONL and HH-RLHF ------------------------------------------------------------------


def _parse_jsonl(
    lines: Iterator[tuple[int, str | RowError]], k: int, *, hh_rlhf: bool
) -> Iterator[PromptRow | RowError]:
    to_row = _hh_rlhf_row if hh_rlhf else _jsonl_row
    for number, text in lines:
        if isinstance(text, RowError):
            yield text
            continue
        if not text.strip():
            continue
        try:
            record = json.loads(text)
        except json.JSONDecodeError as exc:
            yield RowError(number, "line", f"invalid JSON: {exc.msg} at column {exc.colno}")
            continue
        try:
            if not isinstance(record, dict):
                raise _FieldError("line", "each line must be a JSON object")
            yield to_row(record, number, k)
        except _FieldError as exc:
            yield RowError(number, exc.field, exc.message)


JSONL_KEYS = {"id", "prompt", "messages", "completions", "metadata", "model", "gold"}


def _jsonl_row(record: dict[str, Any], line: int, k: int) -> PromptRow:
    unknown = sorted(set(record) - JSONL_KEYS)
    if unknown:
        raise _FieldError(unknown[0], f"unknown field; allowed: {', '.join(sorted(JSONL_KEYS))}")
    text, messages = _prompt_or_messages(record.get("prompt"), record.get("messages"))
    default_model = _optional_str(record.get("model"), "model")
    completions = record.get("completions")
    if not isinstance(completions, list):
        raise _FieldError("completions", "must be a list of completions")
    if len(completions) != k:
        raise _FieldError(
            "completions", f"has {len(completions)} completions; this project takes {k}"
        )
    gold_tiers, gold_mode = _gold(record.get("gold"), k)
    return PromptRow(
        line=line,
        external_id=_external_id(record.get("id"), "id"),
        text=text,
        messages=messages,
        metadata=_metadata(record.get("metadata")),
        completions=[
            _completion(item, f"completions[{index}]", default_model)
            for index, item in enumerate(completions)
        ],
        gold_tiers=gold_tiers,
        gold_mode=gold_mode,
    )


_TURN = re.compile(r"\n\n(Human|Assistant):[ ]?")
_HH_ROLE = {"Human": "user", "Assistant": "assistant"}


def _hh_rlhf_row(record: dict[str, Any], line: int, k: int) -> PromptRow:
    chosen = _transcript(record.get("chosen"), "chosen")
    rejected = _transcript(record.get("rejected"), "rejected")
    for name, turns in (("chosen", chosen), ("rejected", rejected)):
        if turns[-1]["role"] != "assistant":
            raise _FieldError(name, "must end with an Assistant turn")
    dialogue = chosen[:-1]
    if dialogue != rejected[:-1]:
        turn = next(
            (i for i, (a, b) in enumerate(zip(dialogue, rejected[:-1], strict=False)) if a != b),
            min(len(dialogue), len(rejected) - 1),
        )
        raise _FieldError(
            "rejected", f"transcripts differ before the final assistant turn (at turn {turn + 1})"
        )
    if not dialogue or dialogue[-1]["role"] != "user":
        raise _FieldError("chosen", "the final Assistant turn must answer a Human turn")
    completions = [
        _completion(turns[-1]["content"], name, "")
        for name, turns in (("chosen", chosen), ("rejected", rejected))
    ]
    return PromptRow(
        line=line,
        external_id=_external_id(record.get("id"), "id"),
        text="",
        messages=dialogue,
        metadata={"source": "hh-rlhf"},
        completions=completions,
        reference_tiers=[[0], [1]],
    )


def _transcript(value: Any, name: str) -> list[dict[str, str]]:
    """Split an HH-RLHF transcript ("\\n\\nHuman: ...\\n\\nAssistant: ...") into turns."""
    if not isinstance(value, str):
        raise _FieldError(name, "must be a transcript string")
    parts = _TURN.split(value)
    if parts[0].strip() or len(parts) < 3:
        raise _FieldError(name, "must start with '\\n\\nHuman:'")
    return [{"role": _HH_ROLE[parts[i]], "content": parts[i + 1]} for i in range(1, len(parts), 2)]


# --- CSV ----------------------------------------------------------------------------------

CSV_COLUMNS = {"id", "prompt", "messages", "model", "metadata"}


def _parse_csv(
    lines: Iterator[tuple[int, str | RowError]], k: int
) -> Iterator[PromptRow | RowError]:
    decode_errors: list[RowError] = []
    consumed = 0

    def texts() -> Iterator[str]:
        nonlocal consumed
        for number, text in lines:
            consumed = number
            if isinstance(text, RowError):
                decode_errors.append(text)
                yield "\n"  # an empty record, so the reader goes on with the next line
            else:
                yield text

    reader = csv.reader(texts(), strict=True)
    try:
        header = next(reader)
    except StopIteration:
        return
    except csv.Error as exc:
        yield RowError(1, "header", f"invalid CSV: {exc}", True)
        return
    if decode_errors:
        yield RowError(1, "header", decode_errors.pop().message, True)
        return
    try:
        completion_columns = _csv_header(header, k)
    except _FieldError as exc:
        yield RowError(1, exc.field, exc.message, True)
        return
    while True:
        start = consumed + 1
        try:
            cells = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            yield RowError(start, "line", f"invalid CSV: {exc}")
            continue
        if decode_errors:
            yield from decode_errors
            decode_errors.clear()
            continue
        if not cells or cells == [""] * len(cells):
            continue
        try:
            yield _csv_row(header, cells, completion_columns, start)
        except _FieldError as exc:
            yield RowError(start, exc.field, exc.message)


def _csv_header(header: list[str], k: int) -> list[str]:
    if len(set(header)) != len(header):
        raise _FieldError("header", "has a column name twice")
    completion_columns = [name for name in header if re.fullmatch(r"completion_\d+", name)]
    unknown = [
        name for name in header if name not in CSV_COLUMNS and name not in completion_columns
    ]
    if unknown:
        raise _FieldError("header", f"unknown column {unknown[0]!r}")
    if ("prompt" in header) == ("messages" in header):
        raise _FieldError("header", "needs exactly one of the columns 'prompt' and 'messages'")
    expected = [f"completion_{i}" for i in range(1, k + 1)]
    if sorted(completion_columns) != sorted(expected):
        raise _FieldError(
            "header",
            f"has {len(completion_columns)} completion columns; this project takes {k}: "
            f"{', '.join(expected)}",
        )
    return expected


def _csv_row(header: list[str], cells: list[str], completion_columns: list[str], line: int):
    if len(cells) != len(header):
        raise _FieldError("line", f"has {len(cells)} cells; the header has {len(header)}")
    row = dict(zip(header, cells, strict=True))
    messages = None
    if "messages" in row:
        messages = _json_cell(row["messages"], "messages")
    text, messages = _prompt_or_messages(row.get("prompt"), messages)
    default_model = row.get("model", "")
    metadata = _json_cell(row["metadata"], "metadata") if row.get("metadata") else {}
    return PromptRow(
        line=line,
        external_id=_external_id(row.get("id") or None, "id"),
        text=text,
        messages=messages,
        metadata=_metadata(metadata),
        completions=[_completion(row[name], name, default_model) for name in completion_columns],
    )


def _json_cell(cell: str, name: str) -> Any:
    try:
        return json.loads(cell)
    except json.JSONDecodeError as exc:
        raise _FieldError(name, f"invalid JSON in cell: {exc.msg}") from None


# --- fields -------------------------------------------------------------------------------


def _prompt_or_messages(prompt: Any, messages: Any) -> tuple[str, list[dict[str, str]] | None]:
    if (prompt is None) == (messages is None):
        raise _FieldError("prompt", "give exactly one of 'prompt' (text) and 'messages' (chat)")
    if prompt is not None:
        return _text(prompt, "prompt"), None
    if not isinstance(messages, list) or not messages:
        raise _FieldError("messages", "must be a non-empty list of {role, content}")
    clean = []
    for index, message in enumerate(messages):
        where = f"messages[{index}]"
        if not isinstance(message, dict) or set(message) != {"role", "content"}:
            raise _FieldError(where, "must be an object with exactly 'role' and 'content'")
        if message["role"] not in ROLES:
            raise _FieldError(f"{where}.role", f"must be one of {', '.join(ROLES)}")
        clean.append({"role": message["role"], "content": _text(message["content"], where)})
    if clean[-1]["role"] != "user":
        raise _FieldError("messages", "must end with a user message (completions answer it)")
    return "", clean


def _gold(value: Any, k: int) -> tuple[list[list[int]] | None, str]:
    """{"tiers": [[0], [2, 1], [3]], "mode": "ranking"|"best"}: positions of completions."""
    if value is None:
        return None, ""
    if not isinstance(value, dict) or set(value) - {"tiers", "mode"}:
        raise _FieldError("gold", "must be an object with 'tiers' and optional 'mode'")
    mode = value.get("mode", "ranking")
    if mode not in ("ranking", "best"):
        raise _FieldError("gold.mode", "must be 'ranking' or 'best'")
    tiers = value.get("tiers")
    positions = [p for tier in tiers for p in tier] if isinstance(tiers, list) and all(
        isinstance(tier, list) and tier for tier in tiers) else None
    if positions is None or sorted(positions) != list(range(k)):
        raise _FieldError(
            "gold.tiers", f"must rank the completion positions 0..{k - 1}, each once"
        )
    return tiers, mode


def _completion(item: Any, where: str, default_model: str) -> CompletionRow:
    if isinstance(item, str):
        return CompletionRow(text=_text(item, where), model_name=default_model)
    if not isinstance(item, dict):
        raise _FieldError(where, "must be a string or an object with 'text'")
    unknown = sorted(set(item) - {"text", "model", "params", "id"})
    if unknown:
        raise _FieldError(
            f"{where}.{unknown[0]}", "unknown field; allowed: text, model, params, id"
        )
    params = item.get("params", {})
    if not isinstance(params, dict) or _has_nul(params):
        raise _FieldError(f"{where}.params", "must be an object (with no NUL characters)")
    return CompletionRow(
        text=_text(item.get("text"), f"{where}.text"),
        model_name=_optional_str(item.get("model"), f"{where}.model") or default_model,
        generation_params=params,
        external_id=_external_id(item.get("id"), f"{where}.id"),
    )


def _text(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise _FieldError(where, "must be a string")
    if not value.strip():
        raise _FieldError(where, "is empty")
    if "\x00" in value:
        raise _FieldError(where, "contains a NUL character")
    return value


def _optional_str(value: Any, where: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str) or "\x00" in value or len(value) > MAX_ID_LENGTH:
        raise _FieldError(where, f"must be a string of at most {MAX_ID_LENGTH} characters")
    return value


def _external_id(value: Any, where: str) -> str:
    if value is None:
        return ""
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise _FieldError(where, "must be a string or an integer")
    text = str(value).strip()
    if not text or len(text) > MAX_ID_LENGTH or "\x00" in text:
        raise _FieldError(where, f"must be 1 to {MAX_ID_LENGTH} characters")
    return text


def _metadata(value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _FieldError("metadata", "must be a JSON object")
    if _has_nul(value):
        raise _FieldError("metadata", "contains a NUL character")
    return value


def _has_nul(value: Any) -> bool:
    """True if a NUL is anywhere in a JSON value: PostgreSQL's text and jsonb refuse them."""
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(key) or _has_nul(item) for key, item in value.items())
    if isinstance(value, list):
        return any(_has_nul(item) for item in value)
    return False
