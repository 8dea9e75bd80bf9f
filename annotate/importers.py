"""Streaming parsers for prompt files. Pure Python: no Django, no database.

Each parser reads a binary stream line by line and yields, in file order, a PromptRow for
every valid record and a RowError (line, field, message) for every invalid one, so the
caller can stop at the first error, collect them all, or skip them. Nothing here writes.

Formats:
- jsonl: {"prompt": str | "messages": [{role, content}], "completions": [str | {text, model,
  params, id} | {role: "assistant", content}], "id"?, "metadata"?, "model"?} per line.
- csv: a header with prompt (or messages, as JSON), completion_1..completion_K, and
  optionally id, model, metadata (JSON object).
- hh-rlhf: Anthropic's {"chosen": transcript, "rejected": transcript} per line; the shared
  dialogue becomes a chat prompt, the two final assistant turns its completions, and the
  original preference a reference ranking.
- trl and ultrafeedback: TRL's preference rows and UltraFeedback's scored completions, with
  the preference they carry as a reference ranking (annotate.preference_formats).
Any of them may be gzip-compressed (detected by its magic bytes, not its name).

What a spreadsheet writes imports as it is: a UTF-8 byte order mark at the start is skipped
and CRLF is a line end. What cannot be stored faithfully is refused with its line and field:
invalid UTF-8, NUL characters, lines over a byte limit, JSON with NaN or Infinity, duplicate
keys or deep nesting, ragged CSV rows.
"""

import csv
import gzip
import io
import json
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import IO, Any

from . import content

FORMATS = ("jsonl", "csv", "hh-rlhf", "trl", "ultrafeedback")
PAIR_FORMATS = {"hh-rlhf": "HH-RLHF", "trl": "TRL preference"}  # 2 completions per row
ROLES = ("system", "user", "assistant")
MAX_ID_LENGTH = 200
GZIP_MAGIC = b"\x1f\x8b"
UTF8_BOM = b"\xef\xbb\xbf"
DEFAULT_MAX_LINE_BYTES = 8 * 1024 * 1024
SKIP_CHUNK_BYTES = 64 * 1024  # how much of an over-long line is read at a time to skip it
MAX_JSON_DEPTH = 64
MAX_ERROR_TEXT = 500
DETECT_BYTES = 256 * 1024  # how much of the file's start detection reads (a line can be long)
DETECT_LINES = 20


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
    # The prompt with its completions, as a hash (annotate.content): what an import compares
    # to refuse a copy. Made with the row, so in the thread that parses the file, which is
    # not the importer's on PostgreSQL (services.imports, annotate/read_ahead.py).
    content_key: str = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        object.__setattr__(self, "content_key", content.content_key(
            self.text, self.messages, [completion.text for completion in self.completions]))


@dataclass(frozen=True)
class RowError:
    line: int
    field: str
    message: str
    fatal: bool = False  # the rest of the file cannot be read (size, header, format)

    def __post_init__(self):
        # Errors quote the file (field names, keys) and are stored with a skipped import: keep
        # them storable (no NUL, no lone surrogate) and short, whatever the file held.
        object.__setattr__(self, "field", _storable(self.field, 200))
        object.__setattr__(self, "message", _storable(self.message, MAX_ERROR_TEXT))

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


class _DuplicateKey(Exception):
    def __init__(self, key: str):
        super().__init__(key)
        self.key = key


def open_maybe_gzip(binary: IO[bytes], max_bytes: int | None = None) -> IO[bytes]:
    """Return a stream of the file's bytes, decompressing it if it starts like gzip.

    With `max_bytes`, a gzip file that expands past it raises FileTooLarge before a line is
    parsed: its decompressed bytes are only counted first (a gzip bomb costs the seconds of
    decompressing up to the limit, not minutes of parsing), then it is read from the start.
    """
    buffered = binary if isinstance(binary, io.BufferedReader) else io.BufferedReader(binary)
    if buffered.peek(2)[:2] != GZIP_MAGIC:
        return buffered
    if max_bytes is not None and buffered.seekable():
        start = buffered.tell()
        counted = gzip.GzipFile(fileobj=buffered, mode="rb")
        size = 0
        while chunk := counted.read(GZIP_COUNT_CHUNK):
            size += len(chunk)
            if size > max_bytes:
                raise FileTooLarge
        buffered.seek(start)
    return gzip.GzipFile(fileobj=buffered, mode="rb")  # type: ignore[return-value]


GZIP_COUNT_CHUNK = 1 << 20


def peekable(stream: IO[bytes]) -> io.BufferedReader:
    """Return `stream` buffered so that peek() shows its first DETECT_BYTES for detection."""
    return io.BufferedReader(stream, buffer_size=DETECT_BYTES)  # type: ignore[arg-type]


@dataclass(frozen=True)
class FormatGuess:
    file_format: str
    error: RowError | None = None  # set when no line of the head looked like a known format


def detect_format(filename: str, head: bytes) -> str:
    """Guess the format from the file name and its first bytes (already decompressed).

    >>> detect_format("prompts.csv", b"prompt,completion_1")
    'csv'
    >>> detect_format("pairs.jsonl.gz", b'{"chosen": "\\\\n\\\\nHuman: Hi", "rejected": "..."}')
    'hh-rlhf'
    >>> detect_format("pairs.jsonl", b'{"prompt": "Hi", "chosen": "Hello", "rejected": "Go"}')
    'trl'
    """
    return guess_format(filename, head).file_format


def guess_format(filename: str, head: bytes) -> FormatGuess:
    """Guess the format from the name, or from the fields of the first JSON objects in `head`.

    The first object whose fields fit a format decides. If objects were read and none fits,
    the guess is the closest format, with a fatal error naming it and the formats known. If
    no line is a JSON object, the guess is jsonl: its parser reports each line.
    """
    name = filename.lower().removesuffix(".gz")
    if name.endswith(".csv"):
        return FormatGuess("csv")
    first: tuple[int, dict[str, Any]] | None = None
    lines = head.removeprefix(UTF8_BOM).split(b"\n")[:DETECT_LINES]
    for number, line in enumerate(lines, start=1):
        try:
            record = json.loads(line)
        except (ValueError, RecursionError):  # RecursionError: e.g. thousands of '['
            continue
        if not isinstance(record, dict):
            continue
        file_format = _format_of(record)
        if file_format:
            return FormatGuess(file_format)
        first = first or (number, record)
    if first is None:
        return FormatGuess("jsonl")
    number, record = first
    closest = _closest_format(record)
    fields = ", ".join(sorted(record)[:10]) or "none"
    return FormatGuess(closest, RowError(
        number, "format",
        f"cannot tell the format from the fields ({fields}); guessed {closest}, which "
        f"{FORMAT_NEEDS[closest]}. Known formats: {', '.join(FORMATS)}; name one with "
        "--format (or the form's and the API's format) if the file is one of them",
        fatal=True,
    ))


# What each JSON format needs, as detection tells them apart.
FORMAT_NEEDS = {
    "jsonl": "needs 'prompt' (or 'messages') and 'completions'",
    "hh-rlhf": "needs 'chosen' and 'rejected' transcripts starting with '\\n\\nHuman:'",
    "trl": "needs 'chosen' and 'rejected' (and 'prompt' unless they share it)",
    "ultrafeedback": "needs 'instruction' and 'completions' with 'response' and scores",
}


def _format_of(record: dict[str, Any]) -> str:
    """The format whose fields `record` has, or "" if none."""
    if "chosen" in record and "rejected" in record:
        chosen = record["chosen"]
        return "hh-rlhf" if isinstance(chosen, str) and _TURN.match(chosen) else "trl"
    completions = record.get("completions")
    first = completions[0] if isinstance(completions, list) and completions else None
    if "instruction" in record or (isinstance(first, dict) and "response" in first):
        return "ultrafeedback"
    if ("prompt" in record or "messages" in record) and completions is not None:
        return "jsonl"
    return ""


def _closest_format(record: dict[str, Any]) -> str:
    keys = set(record)
    overlap = {
        "trl": len(keys & {"chosen", "rejected"}),
        "ultrafeedback": len(keys & {"instruction", "models", "source"}),
        "jsonl": len(keys & {"prompt", "messages", "completions", "id", "metadata", "model"}),
    }
    best = max(overlap.values())
    return next(name for name in ("jsonl", "trl", "ultrafeedback") if overlap[name] == best)


def parse_prompts(
    binary: IO[bytes],
    *,
    file_format: str,
    completions_per_prompt: int,
    max_bytes: int,
    max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
) -> Iterator[PromptRow | RowError]:
    """Yield a PromptRow or a RowError for each record of a (decompressed) binary stream.

    At most `max_bytes` are read (then a fatal error), and no more than `max_line_bytes` of
    one line are held: a longer line is skipped in chunks and reported.
    """
    if file_format not in FORMATS:
        yield RowError(0, "format", f"unknown format {file_format!r}; use one of {FORMATS}", True)
        return
    if file_format in PAIR_FORMATS and completions_per_prompt != 2:
        yield RowError(
            0,
            "format",
            f"{PAIR_FORMATS[file_format]} rows give 2 completions each, but this project takes "
            f"{completions_per_prompt} per prompt",
            True,
        )
        return
    lines = _numbered_lines(binary, max_bytes, max_line_bytes)
    rows = (
        _parse_csv(lines, completions_per_prompt)
        if file_format == "csv"
        else _parse_jsonl(lines, completions_per_prompt, _row_parser(file_format))
    )
    # An id used twice in the file is the import's to refuse (services.imports): it finds
    # the first line without holding every id read here.
    try:
        yield from rows
    except FileTooLarge:
        yield RowError(0, "file", f"file is larger than the limit of {max_bytes:,} bytes", True)


# --- lines --------------------------------------------------------------------------------


def _numbered_lines(
    binary: IO[bytes], max_bytes: int, max_line_bytes: int
) -> Iterator[tuple[int, str | RowError]]:
    """Yield (line number, text) per physical line ("\n" ends one, so CRLF does too), or a
    RowError for a line that is too long or not UTF-8. Raise FileTooLarge past `max_bytes`."""
    read = 0
    number = 0
    while raw := binary.readline(max_line_bytes + 1):
        number += 1
        read += len(raw)
        too_long = len(raw) > max_line_bytes and not raw.endswith(b"\n")
        while too_long and raw and not raw.endswith(b"\n") and read <= max_bytes:
            raw = binary.readline(SKIP_CHUNK_BYTES)  # skip the rest without holding it
            read += len(raw)
        if read > max_bytes:
            raise FileTooLarge
        if too_long:
            message = f"is longer than the limit of {max_line_bytes:,} bytes"
            yield number, RowError(number, "line", message)
        else:
            yield number, _decoded(raw, number)


def _decoded(raw: bytes, number: int) -> str | RowError:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        if number == 1 and raw.startswith((b"\xff\xfe", b"\xfe\xff")):
            return RowError(1, "file", "is UTF-16; save it as UTF-8", fatal=True)
        return RowError(number, "line", f"invalid UTF-8 at byte {exc.start}")
    # A byte order mark is how Excel and Notepad mark UTF-8: skip it, it is not data.
    return text.removeprefix("\ufeff") if number == 1 else text


# --- strict JSON --------------------------------------------------------------------------

_SURROGATE = re.compile("[\ud800-\udfff]")


def loads_strict(text: str, where: str = "") -> Any:
    """Parse JSON that can be stored as it was written, or raise _FieldError naming `where`.

    Python's json takes NaN and Infinity (not JSON; PostgreSQL's jsonb refuses them), keeps
    the last of duplicate keys (silently dropping data), and recurses per nesting level.

    >>> loads_strict('{"a": [1, 2.5, "x"]}')
    {'a': [1, 2.5, 'x']}
    """
    name = where or "line"
    try:
        value = _decode_strict(text)
    except _DuplicateKey as exc:
        key = _join(where, exc.key) if where else exc.key
        raise _FieldError(key, f"duplicate key {exc.key!r} in an object") from None
    except RecursionError:
        raise _FieldError(name, f"nested more than {MAX_JSON_DEPTH} levels deep") from None
    except json.JSONDecodeError as exc:
        raise _FieldError(name, f"invalid JSON: {exc.msg} at column {exc.colno}") from None
    except _FieldError as exc:
        raise _FieldError(name, exc.message) from None
    except ValueError as exc:  # e.g. an integer of more than 4,300 digits
        raise _FieldError(name, f"invalid JSON: {str(exc)[:200]}") from None
    if _may_be_unstorable(text):
        _check_json_value(value, where)
    return value


def _decode_strict(text: str) -> Any:
    """json.loads(text) with the hooks above, its decoder built once: json.loads builds one
    per call when given hooks (a fifth of parsing a line of the benchmark)."""
    if text.startswith("\ufeff"):  # json.loads names a byte order mark; decode() does not
        return json.loads(text, object_pairs_hook=_unique_keys, parse_constant=_no_constant,
                          parse_float=_finite_float)
    return _STRICT_DECODER.decode(text)


def _may_be_unstorable(text: str) -> bool:
    """False when no value parsed from `text` can fail _check_json_value, so the walk (40%
    of parsing an ASCII file) is skipped: json.loads refuses raw control characters in
    strings, so a NUL or a lone surrogate arrives only as a \\u escape (or as itself in a str
    not decoded from UTF-8), and nesting past MAX_JSON_DEPTH needs as many brackets."""
    return ("\\u" in text or "\x00" in text
            or (not text.isascii() and _SURROGATE.search(text) is not None)
            or text.count("[") + text.count("{") > MAX_JSON_DEPTH)


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    record = dict(pairs)
    if len(record) != len(pairs):
        seen: set[str] = set()
        raise _DuplicateKey(next(key for key, _ in pairs if key in seen or seen.add(key)))
    return record


def _no_constant(name: str) -> Any:
    raise _FieldError("line", f"{name} is not a JSON number (use null or a string)")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _FieldError("line", f"the number {text[:40]} is out of range")
    return value


_STRICT_DECODER = json.JSONDecoder(object_pairs_hook=_unique_keys, parse_constant=_no_constant,
                                   parse_float=_finite_float)


def _check_json_value(value: Any, where: str) -> None:
    """Refuse nesting past MAX_JSON_DEPTH and text PostgreSQL cannot store, naming the place.

    Iterative, so a deep value cannot exhaust the stack here either.
    """
    stack: list[tuple[Any, int, str]] = [(value, 1, where)]
    while stack:
        item, depth, path = stack.pop()
        if isinstance(item, str):
            problem = _text_problem(item)
            if problem:
                raise _FieldError(path or "line", problem)
            continue
        if not isinstance(item, dict | list):
            continue
        if depth > MAX_JSON_DEPTH:
            raise _FieldError(path or "line", f"nested more than {MAX_JSON_DEPTH} levels deep")
        if isinstance(item, list):
            children = [(child, f"{path}[{index}]") for index, child in enumerate(item)]
        else:
            children = []
            for key, child in item.items():
                problem = _text_problem(key)
                if problem:
                    raise _FieldError(path or "line", f"has a key that {problem}")
                children.append((child, _join(path, key)))
        stack.extend((child, depth + 1, child_path) for child, child_path in reversed(children))


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _text_problem(text: str) -> str | None:
    if "\x00" in text:
        return "contains a NUL character"
    if not text.isascii() and _SURROGATE.search(text):
        return "contains an unpaired surrogate (\\ud800-\\udfff): not valid Unicode"
    return None


def _storable(text: str, limit: int) -> str:
    if not text.isascii() or "\x00" in text:
        text = text.replace("\x00", "\\x00").encode("utf-8", "backslashreplace").decode()
    return text if len(text) <= limit else text[: limit - 3] + "..."


# --- JSONL and HH-RLHF ------------------------------------------------------------------


def _row_parser(file_format: str):
    """The function that turns one JSON object of `file_format` into a PromptRow."""
    from . import preference_formats  # it builds on this module's field checks

    return {
        "jsonl": _jsonl_row,
        "hh-rlhf": _hh_rlhf_row,
        "trl": preference_formats.trl_row,
        "ultrafeedback": preference_formats.ultrafeedback_row,
    }[file_format]


def _parse_jsonl(
    lines: Iterator[tuple[int, str | RowError]], k: int, to_row
) -> Iterator[PromptRow | RowError]:
    for number, text in lines:
        if isinstance(text, RowError):
            yield text
            continue
        if not text.strip():
            continue
        try:
            record = loads_strict(text)
            if not isinstance(record, dict):
                raise _FieldError("line", "each line must be a JSON object")
            yield to_row(record, number, k)
        except _FieldError as exc:
            yield RowError(number, exc.field, exc.message)


JSONL_KEYS = {"id", "prompt", "messages", "completions", "metadata", "model", "gold"}


def _jsonl_row(record: dict[str, Any], line: int, k: int) -> PromptRow:
    if not JSONL_KEYS.issuperset(record):
        unknown = sorted(set(record) - JSONL_KEYS)
        raise _FieldError(unknown[0], f"unknown field; allowed: {', '.join(sorted(JSONL_KEYS))}")
    text, messages = _prompt_or_messages(record.get("prompt"), record.get("messages"))
    default_model = _optional_str(record.get("model"), "model")
    completions = record.get("completions")
    if completions is None:
        raise _FieldError("completions", f"is missing: give a list of {k} completions")
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
        completions=_completions(completions, default_model),
        gold_tiers=gold_tiers,
        gold_mode=gold_mode,
    )


def _completions(items: list[Any], default_model: str) -> list[CompletionRow]:
    """_completion of each item, with a plain text written out: most completions are one,
    and this is the import's innermost loop (its name for errors is made only if needed)."""
    rows = []
    for index, item in enumerate(items):
        if type(item) is str and item and not item.isspace() and "\x00" not in item:
            rows.append(CompletionRow(item, default_model))
        else:
            rows.append(_completion(item, f"completions[{index}]", default_model))
    return rows


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
    default_model = _optional_str(row.get("model") or None, "model")
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
    return loads_strict(cell, name)


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
    if positions is not None and not all(type(p) is int for p in positions):
        positions = None  # 1.0, True or "1" are not positions
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
    if "role" in item or "content" in item:  # a chat message: {"role": "assistant", ...}
        return _message_completion(item, where, default_model)
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


def _message_completion(item: dict[str, Any], where: str, default_model: str) -> CompletionRow:
    """A completion written as a chat message, {"role": "assistant", "content": ...}, with
    the optional model, params and id of a completion object."""
    unknown = sorted(set(item) - {"role", "content", "model", "params", "id"})
    if unknown:
        raise _FieldError(f"{where}.{unknown[0]}",
                          "unknown field; allowed: role, content, model, params, id")
    if item.get("role") != "assistant":
        raise _FieldError(f"{where}.role", "must be 'assistant' (a completion answers the "
                                           "prompt)")
    text = _text(item.get("content"), f"{where}.content")
    return _completion({"text": text, **{key: item[key] for key in ("model", "params", "id")
                                         if key in item}}, where, default_model)


def _text(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise _FieldError(where, "must be a string")
    if not value or value.isspace():  # as `not value.strip()`, without the copy
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
