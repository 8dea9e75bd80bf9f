"""The prompt file parsers, without a database."""

import gzip
import io
import json

import pytest

from annotate.importers import (
    PromptRow,
    RowError,
    detect_format,
    open_maybe_gzip,
    parse_prompts,
)
from tests.factories import hh_record, hh_transcript, jsonl_bytes, prompt_record


def parse(data: bytes, file_format: str = "jsonl", k: int = 4, max_bytes: int = 10**9):
    stream = open_maybe_gzip(io.BytesIO(data))
    return list(
        parse_prompts(
            stream, file_format=file_format, completions_per_prompt=k, max_bytes=max_bytes
        )
    )


def only_error(items) -> RowError:
    errors = [item for item in items if isinstance(item, RowError)]
    assert len(errors) == 1, errors
    return errors[0]


# --- JSONL --------------------------------------------------------------------------------


def test_jsonl_rows_keep_text_ids_metadata_and_models():
    record = prompt_record(1, metadata={"topic": "math"}, model="m-7b")
    record["completions"][2] = {
        "text": "Four.",
        "model": "m-70b",
        "params": {"temperature": 0.7},
        "id": "c3",
    }
    [row] = parse(jsonl_bytes([record]))
    assert isinstance(row, PromptRow)
    assert (row.line, row.external_id, row.text, row.messages) == (
        1,
        "p1",
        "Question number 1?",
        None,
    )
    assert row.metadata == {"topic": "math"}
    assert [c.text for c in row.completions] == ["Answer 1.0", "Answer 1.1", "Four.", "Answer 1.3"]
    assert [c.model_name for c in row.completions] == ["m-7b", "m-7b", "m-70b", "m-7b"]
    assert row.completions[2].generation_params == {"temperature": 0.7}
    assert row.completions[2].external_id == "c3"
    assert row.reference_tiers is None


def test_jsonl_chat_prompt_keeps_its_messages():
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi?"}]
    record = prompt_record(1, messages=messages)
    del record["prompt"]
    [row] = parse(jsonl_bytes([record]))
    assert row.text == "" and row.messages == messages


def test_blank_lines_are_skipped_and_line_numbers_stay_physical():
    data = jsonl_bytes([prompt_record(1), "", "   ", prompt_record(2)])
    assert [row.line for row in parse(data)] == [1, 4]


@pytest.mark.parametrize(
    ("line", "field", "message"),
    [
        ('{"prompt": "x", "completions": [', "line", "invalid JSON"),
        ('["not", "an", "object"]', "line", "must be a JSON object"),
        (
            json.dumps(prompt_record(9, k=3)),
            "completions",
            "has 3 completions; this project takes 4",
        ),
        (json.dumps(prompt_record(9, completions="abcd")), "completions", "must be a list"),
        (json.dumps(prompt_record(9, prompt="   ")), "prompt", "is empty"),
        (json.dumps(prompt_record(9, prompt=7)), "prompt", "must be a string"),
        (
            json.dumps(prompt_record(9, completions=["a", "", "c", "d"])),
            "completions[1]",
            "is empty",
        ),
        (
            json.dumps(prompt_record(9, completions=["a", {"txt": "b"}, "c", "d"])),
            "completions[1].txt",
            "unknown field",
        ),
        (
            json.dumps(prompt_record(9, completions=["a", "b\u0000", "c", "d"])),
            "completions[1]",
            "NUL",
        ),
        (
            json.dumps(prompt_record(9, messages=[{"role": "user", "content": "x"}])),
            "prompt",
            "exactly one of",
        ),
        (json.dumps({**prompt_record(9), "completion": []}), "completion", "unknown field"),
        (json.dumps(prompt_record(9, metadata=[1, 2])), "metadata", "must be a JSON object"),
        (json.dumps(prompt_record(9, id="")), "id", "1 to 200 characters"),
        (json.dumps(prompt_record(9, id=True)), "id", "a string or an integer"),
    ],
)
def test_each_bad_jsonl_line_is_reported_with_line_and_field(line, field, message):
    items = parse(jsonl_bytes([prompt_record(1), line, prompt_record(3)]))
    error = only_error(items)
    assert (error.line, error.field) == (2, field)
    assert message in error.message
    assert [row.line for row in items if isinstance(row, PromptRow)] == [1, 3]


@pytest.mark.parametrize(
    ("messages", "field", "message"),
    [
        ([], "messages", "non-empty list"),
        ([{"role": "user"}], "messages[0]", "exactly 'role' and 'content'"),
        ([{"role": "robot", "content": "x"}], "messages[0].role", "must be one of"),
        ([{"role": "user", "content": ""}], "messages[0]", "is empty"),
        (
            [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}],
            "messages",
            "must end with a user message",
        ),
    ],
)
def test_bad_chat_messages_are_reported(messages, field, message):
    record = prompt_record(1, messages=messages)
    del record["prompt"]
    error = only_error(parse(jsonl_bytes([record])))
    assert (error.line, error.field) == (1, field)
    assert message in error.message


def test_invalid_utf8_names_the_line_and_byte():
    data = (
        jsonl_bytes([prompt_record(1)])
        + b'{"prompt": "caf\xe9"}\n'
        + jsonl_bytes([prompt_record(3)])
    )
    items = parse(data)
    error = only_error(items)
    assert (error.line, error.field) == (2, "line")
    assert "invalid UTF-8 at byte 15" in error.message
    assert len([i for i in items if isinstance(i, PromptRow)]) == 2


def test_ids_used_twice_are_left_to_the_import():
    """services.imports refuses the second (tests/annotate/test_duplicate_filter.py): it
    finds the first line without the parser holding every id."""
    items = parse(jsonl_bytes([prompt_record(1), prompt_record(2), prompt_record(1)]))
    assert [item.external_id for item in items] == ["p1", "p2", "p1"]


def test_integer_ids_become_strings_and_collide_with_equal_strings():
    items = parse(jsonl_bytes([prompt_record(1, id=7), prompt_record(2, id="7")]))
    assert [item.external_id for item in items] == ["7", "7"]


def test_a_file_over_the_byte_limit_is_a_fatal_error():
    data = jsonl_bytes([prompt_record(i) for i in range(100)])
    items = parse(data, max_bytes=len(data) // 2)
    error = items[-1]
    assert isinstance(error, RowError) and error.fatal
    assert error.field == "file" and "larger than the limit" in error.message


def test_gzip_is_detected_by_content_and_limited_after_decompression():
    data = jsonl_bytes([prompt_record(i) for i in range(50)])
    assert len(parse(gzip.compress(data))) == 50
    items = parse(gzip.compress(data), max_bytes=len(data) - 1)
    assert items[-1].fatal


def test_a_utf8_bom_is_ignored():
    data = b"\xef\xbb\xbf" + jsonl_bytes([prompt_record(1)])
    [row] = parse(data)
    assert row.external_id == "p1"


# --- CSV ----------------------------------------------------------------------------------

CSV_HEADER = "id,prompt,completion_1,completion_2,model,metadata\n"


def test_csv_rows_with_quoted_multiline_cells_keep_their_start_line():
    data = (
        CSV_HEADER
        + 'a,"Say hi",Hi,Hello,m1,"{""k"": 1}"\n'
        + 'b,"Two\nlines",x,"y\nz",,\n'
        + "c,Third,p,q,,\n"
    ).encode()
    rows = parse(data, "csv", k=2)
    assert [(r.line, r.external_id) for r in rows] == [(2, "a"), (3, "b"), (6, "c")]
    assert rows[0].metadata == {"k": 1} and rows[0].completions[0].model_name == "m1"
    assert rows[1].text == "Two\nlines" and rows[1].completions[1].text == "y\nz"


def test_csv_chat_prompts_come_from_a_messages_column():
    messages = json.dumps([{"role": "user", "content": "Hi"}]).replace('"', '""')
    data = f'messages,completion_1,completion_2\n"{messages}",a,b\n'.encode()
    [row] = parse(data, "csv", k=2)
    assert row.messages == [{"role": "user", "content": "Hi"}]


@pytest.mark.parametrize(
    ("header", "message"),
    [
        (
            "prompt,completion_1,completion_2,completion_3\n",
            "has 3 completion columns; this project takes 2",
        ),
        ("prompt,completion_1,completion_3\n", "has 2 completion columns"),
        ("prompt,completion_1,completion_2,score\n", "unknown column 'score'"),
        ("completion_1,completion_2\n", "exactly one of the columns 'prompt' and 'messages'"),
        ("prompt,prompt,completion_1,completion_2\n", "a column name twice"),
    ],
)
def test_bad_csv_headers_stop_the_file(header, message):
    error = only_error(parse((header + "x,y,z\n").encode(), "csv", k=2))
    assert error.fatal and (error.line, error.field) == (1, "header")
    assert message in error.message


@pytest.mark.parametrize(
    ("row", "field", "message"),
    [
        ("a,Q,only-one\n", "line", "has 3 cells; the header has 4"),
        ("a,Q,x,   \n", "completion_2", "is empty"),
        ('a,"",x,y\n', "prompt", "is empty"),
    ],
)
def test_bad_csv_rows_are_reported(row, field, message):
    data = ("id,prompt,completion_1,completion_2\n" + "ok,Q,x,y\n" + row).encode()
    items = parse(data, "csv", k=2)
    error = only_error(items)
    assert (error.line, error.field) == (3, field)
    assert message in error.message


def test_csv_invalid_utf8_is_reported_and_the_next_rows_still_read():
    data = b"prompt,completion_1,completion_2\nQ,x,y\nQ\xff,x,y\nR,x,y\n"
    items = parse(data, "csv", k=2)
    assert only_error(items).line == 3
    assert [r.text for r in items if isinstance(r, PromptRow)] == ["Q", "R"]


def test_csv_bad_metadata_json_names_the_cell():
    data = b"prompt,completion_1,completion_2,metadata\nQ,x,y,{oops\n"
    error = only_error(parse(data, "csv", k=2))
    assert (error.line, error.field) == (2, "metadata")


# --- HH-RLHF ------------------------------------------------------------------------------


def test_hh_rlhf_row_becomes_chat_prompt_two_completions_and_a_reference_ranking():
    record = hh_record("And then?", "Then you rest.", "Go away.", history=("Hi", "Hello!"))
    [row] = parse(jsonl_bytes([record]), "hh-rlhf", k=2)
    assert row.messages == [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello!"},
        {"role": "user", "content": "And then?"},
    ]
    assert [c.text for c in row.completions] == ["Then you rest.", "Go away."]
    assert row.reference_tiers == [[0], [1]]
    assert row.metadata == {"source": "hh-rlhf"}


def test_hh_rlhf_transcripts_that_differ_early_are_invalid_rows():
    record = {
        "chosen": hh_transcript("Hi", "Hello", "Q", "good"),
        "rejected": hh_transcript("Hey", "Hello", "Q", "bad"),
    }
    items = parse(jsonl_bytes([hh_record("Q", "a", "b"), record]), "hh-rlhf", k=2)
    error = only_error(items)
    assert (error.line, error.field) == (2, "rejected")
    assert "differ before the final assistant turn (at turn 1)" in error.message


@pytest.mark.parametrize(
    ("record", "field", "message"),
    [
        (
            {"chosen": hh_transcript("Q", ""), "rejected": hh_transcript("Q", "b")},
            "chosen",
            "is empty",
        ),
        (
            {"chosen": "Human: Q Assistant: a", "rejected": hh_transcript("Q", "b")},
            "chosen",
            "must start with",
        ),
        (
            {"chosen": hh_transcript("Q"), "rejected": hh_transcript("Q", "b")},
            "chosen",
            "must end with an Assistant turn",
        ),
        ({"chosen": hh_transcript("Q", "a")}, "rejected", "must be a transcript string"),
    ],
)
def test_bad_hh_rlhf_rows(record, field, message):
    error = only_error(parse(jsonl_bytes([record]), "hh-rlhf", k=2))
    assert (error.line, error.field) == (1, field)
    assert message in error.message


def test_hh_rlhf_an_extra_assistant_turn_on_one_side_is_a_difference_not_a_guess():
    # As in the real harmless-base data: one transcript has two assistant turns at its end.
    record = {
        "chosen": hh_transcript("Hi", "Hello", "Q", "first part") + "\n\nAssistant: more",
        "rejected": hh_transcript("Hi", "Hello", "Q", "other answer"),
    }
    error = only_error(parse(jsonl_bytes([record]), "hh-rlhf", k=2))
    assert error.field == "rejected"
    assert "differ before the final assistant turn (at turn 4)" in error.message


def test_hh_rlhf_both_ending_with_two_assistant_turns_is_reported():
    both = hh_transcript("Q", "a") + "\n\nAssistant: "
    record = {"chosen": both + "x", "rejected": both + "y"}
    error = only_error(parse(jsonl_bytes([record]), "hh-rlhf", k=2))
    assert "must answer a Human turn" in error.message


def test_hh_rlhf_needs_a_project_of_two_completions():
    error = only_error(parse(jsonl_bytes([hh_record("Q", "a", "b")]), "hh-rlhf", k=4))
    assert error.fatal and "2 completions each" in error.message


# --- formats ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "head", "expected"),
    [
        ("x.csv", b"prompt,completion_1", "csv"),
        ("x.CSV.gz", b"prompt", "csv"),
        ("x.jsonl", json.dumps(prompt_record(1)).encode(), "jsonl"),
        ("x.jsonl.gz", json.dumps(hh_record("q", "a", "b")).encode() + b"\n{", "hh-rlhf"),
        ("x.jsonl", b"{broken", "jsonl"),
    ],
)
def test_detect_format(name, head, expected):
    assert detect_format(name, head) == expected


def test_unknown_format_is_fatal():
    error = only_error(parse(b"", "xml"))
    assert error.fatal and error.field == "format"


@pytest.mark.parametrize("text", [
    '{"a": "nul \\u0000 here"}', '{"a": "lone \\ud800"}', '{"k\\u0000": 1}',
    '{"a": ' + "[" * 64 + "]" * 64 + "}", "[" * 65 + "]" * 65,
    '{"a": "\ud800 raw"}',  # a str not decoded from UTF-8 can hold one as itself
])
def test_lines_the_storability_walk_would_refuse_are_never_skipped(text):
    """loads_strict skips its walk over the value only where the walk cannot fail."""
    from annotate import importers

    assert importers._may_be_unstorable(text)
    with pytest.raises(importers._FieldError):
        importers.loads_strict(text)


def test_plain_lines_skip_the_walk_and_still_parse():
    from annotate import importers

    text = json.dumps(prompt_record(1, metadata={"nested": [[1], {"b": "ok"}]}))
    assert not importers._may_be_unstorable(text)
    assert importers.loads_strict(text)["metadata"] == {"nested": [[1], {"b": "ok"}]}


# --- the parser's shortcuts give today's answers ------------------------------------------


@pytest.mark.parametrize(("line", "field", "key"), [
    ('{"prompt": "a", "prompt": "b", "completions": ["1", "2", "3", "4"]}', "prompt", "prompt"),
    ('{"prompt": "a", "completions": ["1", {"text": "x", "text": "y"}, "3", "4"]}',
     "text", "text"),
    ('{"messages": [{"role": "user", "content": "q", "role": "user"}], '
     '"completions": ["1", "2", "3", "4"]}', "role", "role"),
    # a string holding '":' neither hides a duplicate nor makes one
    ('{"prompt": "a\\": 1, \\"prompt\\": \\"b", "prompt" : "c", '
     '"completions": ["1", "2", "3", "4"]}', "prompt", "prompt"),
])
def test_a_duplicate_key_anywhere_is_refused_with_its_name(line, field, key):
    error = only_error(parse(jsonl_bytes([prompt_record(1), line])))
    assert (error.line, error.field, error.message) == (
        2, field, f"duplicate key {key!r} in an object")


def test_a_string_holding_a_key_separator_is_text_not_a_key():
    text = 'a": 1, "prompt": "b'
    [row] = parse(jsonl_bytes([prompt_record(1, prompt=text, completions=[
        'x":', '":"', "\\\":", "4"])]))
    assert row.text == text and [c.text for c in row.completions] == ['x":', '":"', '\\":', "4"]


def test_a_byte_order_mark_past_the_first_line_is_named_as_json_loads_names_it():
    error = only_error(parse(jsonl_bytes([prompt_record(1)]) + b"\xef\xbb\xbf"
                             + jsonl_bytes([prompt_record(2)])))
    assert (error.line, error.field) == (2, "line")
    assert error.message == ("invalid JSON: Unexpected UTF-8 BOM (decode using utf-8-sig) "
                             "at column 1")


@pytest.mark.parametrize("blank", ["", " ", "\t\n", "\u3000", "\u2028", "\x1c", "\x85"])
def test_a_completion_of_whitespace_only_is_empty(blank):
    error = only_error(parse(jsonl_bytes([prompt_record(1, completions=["a", blank, "c", "d"])])))
    assert (error.field, error.message) == ("completions[1]", "is empty")


def test_text_content_keys_are_the_canonical_json_digest():
    from annotate.content import _digest, content_key

    texts = ["plain", 'q"uote\\', "tab\tnew\nline\x1f\x7f", "é 😀 \u2028", ""]
    for text in texts:
        assert content_key(text, None, texts) == _digest([text, texts])
    messages = [{"role": "user", "content": "Hi"}]
    assert content_key("", messages, ["a"]) == _digest([messages, ["a"]])


def test_a_parsed_row_carries_its_content_key():
    """Made where the row is parsed (an import's read-ahead thread), compared by the import."""
    from annotate.content import content_key

    chat = {"messages": [{"role": "user", "content": "Hi"}], "completions": ["a", "b", "c", "d"]}
    text, chat_row = parse(jsonl_bytes([prompt_record(1), chat]))
    assert text.content_key == content_key(text.text, None, [c.text for c in text.completions])
    assert chat_row.content_key == content_key("", chat["messages"], ["a", "b", "c", "d"])
    assert text.content_key != chat_row.content_key
