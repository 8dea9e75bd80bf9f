"""Hostile and broken import files, through every way in: the service, the API and the command.

Carol administers the "helpful" project (4 completions a prompt) and already imported two
prompts. Every bad file below is refused with the file, line and field named, never a 500,
and leaves her project exactly as it was (through the API, the upload is answered 202 and
the worker's refusal is on the import's status). Over-size uploads are refused before their
bytes are read: the tests hand the server a request body that counts what is read from it.
"""

import gzip
import io
import json
from dataclasses import dataclass

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import CommandError, call_command
from django.test import Client
from rest_framework.test import APIClient

from annotate import importers, services, tasks
from annotate.importers import parse_prompts
from annotate.models import Completion, Prompt, PromptImport, Ranking
from annotate.uploads import UploadLimitHandler
from tests.factories import jsonl_bytes, prompt_record

pytestmark = pytest.mark.django_db

MiB = 1024 * 1024
CSV_HEADER = b"id,prompt,completion_1,completion_2,completion_3,completion_4\n"
GOOD_LINE = json.dumps(prompt_record(1)).encode() + b"\n"  # line 1 of the JSONL files


def jsonl_line(**fields) -> bytes:
    """A line that is valid except for `fields`, as raw JSON text."""
    record = prompt_record(2)
    text = json.dumps(record)[:-1]  # without the closing brace
    extra = "".join(f', "{name}": {raw}' for name, raw in fields.items())
    return (text + extra + "}\n").encode()


def record_line(record: dict) -> bytes:
    return json.dumps(record).encode() + b"\n"


def without(name: str) -> dict:
    record = prompt_record(2)
    del record[name]
    return record


BIG_LINE = b'{"id": "big", "prompt": "' + b"x" * (10 * MiB) + b'", "completions": []}\n'

# (file name, its bytes, (line, field, part of the message)) -- one error each.
BAD_FILES = {
    "jsonl: invalid UTF-8": (
        "p.jsonl", GOOD_LINE + b'{"prompt": "caf\xe9"}\n', (2, "line", "invalid UTF-8 at byte")),
    "jsonl: UTF-16": (
        "p.jsonl", GOOD_LINE.decode().encode("utf-16"), (1, "file", "is UTF-16")),
    "jsonl: raw NUL byte": (
        "p.jsonl", GOOD_LINE + GOOD_LINE.replace(b"Question", b"Ques\x00tion").replace(
            b'"p1"', b'"p2"'), (2, "line", "invalid JSON: Invalid control character")),
    "jsonl: escaped NUL": (
        "p.jsonl", GOOD_LINE + record_line(prompt_record(2, prompt="a\u0000b")),
        (2, "prompt", "contains a NUL character")),
    "jsonl: NUL in a metadata key": (
        "p.jsonl", GOOD_LINE + record_line(prompt_record(2, metadata={"a\u0000": 1})),
        (2, "metadata", "has a key that contains a NUL character")),
    "jsonl: unpaired surrogate": (
        "p.jsonl", GOOD_LINE + jsonl_line(metadata='{"note": "\\ud800"}'),
        (2, "metadata.note", "unpaired surrogate")),
    "jsonl: a 10 MB line": (
        "p.jsonl", GOOD_LINE + BIG_LINE, (2, "line", "longer than the limit of 8,388,608 bytes")),
    "jsonl: 100,000 [": (
        "p.jsonl", GOOD_LINE + b"[" * 100_000 + b"\n", (2, "line", "nested more than 64 levels")),
    "jsonl: nested 100 deep in metadata": (
        "p.jsonl", GOOD_LINE + jsonl_line(metadata='{"a": ' + "[" * 100 + "]" * 100 + "}"),
        (2, "metadata.a" + "[0]" * 62, "nested more than 64 levels")),
    "jsonl: NaN": (
        "p.jsonl", GOOD_LINE + jsonl_line(metadata='{"score": NaN}'),
        (2, "line", "NaN is not a JSON number")),
    "jsonl: -Infinity": (
        "p.jsonl", GOOD_LINE + jsonl_line(metadata='{"score": -Infinity}'),
        (2, "line", "-Infinity is not a JSON number")),
    "jsonl: a float out of range": (
        "p.jsonl", GOOD_LINE + jsonl_line(metadata='{"score": 1e999}'),
        (2, "line", "the number 1e999 is out of range")),
    "jsonl: an integer of 5,000 digits": (
        "p.jsonl", GOOD_LINE + jsonl_line(metadata='{"n": ' + "7" * 5000 + "}"),
        (2, "line", "invalid JSON: Exceeds the limit")),
    "jsonl: duplicate key": (
        "p.jsonl", GOOD_LINE + jsonl_line(prompt='"the second prompt"'),
        (2, "prompt", "duplicate key 'prompt' in an object")),
    "jsonl: missing completions": (
        "p.jsonl", GOOD_LINE + record_line(without("completions")),
        (2, "completions", "is missing: give a list of 4 completions")),
    "jsonl: missing prompt": (
        "p.jsonl", GOOD_LINE + record_line(without("prompt")), (2, "prompt", "exactly one of")),
    "jsonl: extra field": (
        "p.jsonl", GOOD_LINE + jsonl_line(score="0.5"), (2, "score", "unknown field")),
    "jsonl: gold positions that are not integers": (
        "p.jsonl", GOOD_LINE + record_line(prompt_record(2, gold={"tiers": [[0.0], [1, 2, 3]]})),
        (2, "gold.tiers", "must rank the completion positions")),
    "jsonl: empty file": ("p.jsonl", b"", (0, "file", "has no prompts")),
    "jsonl.gz: a corrupt gzip stream": (
        "p.jsonl.gz", b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03" + bytes(range(256)) * 4,
        (0, "file", "cannot be read: Error -3 while decompressing data")),
    "csv: invalid UTF-8": (
        "p.csv", CSV_HEADER + b"a,Q,w,x,y,z\nb,Q\xff,w,x,y,z\n", (3, "line", "invalid UTF-8")),
    "csv: NUL in a cell": (
        "p.csv", CSV_HEADER + b"a,Q\x00,w,x,y,z\n", (2, "prompt", "contains a NUL character")),
    "csv: a 10 MB line": (
        "p.csv", CSV_HEADER + b"a,Q,w,x,y," + b"z" * (10 * MiB) + b"\n",
        (2, "line", "longer than the limit")),
    "csv: too few cells": (
        "p.csv", CSV_HEADER + b"a,Q,w,x,y\n", (2, "line", "has 5 cells; the header has 6")),
    "csv: too many cells": (
        "p.csv", CSV_HEADER + b"a,Q,w,x,y,z,extra\n", (2, "line", "has 7 cells; the header has 6")),
    "csv: a missing column": (
        "p.csv", b"id,prompt,completion_1,completion_2,completion_3\na,Q,w,x,y\n",
        (1, "header", "has 3 completion columns; this project takes 4")),
    "csv: an extra column": (
        "p.csv", CSV_HEADER.replace(b"\n", b",score\n") + b"a,Q,w,x,y,z,1\n",
        (1, "header", "unknown column 'score'")),
    "csv: NaN in a JSON cell": (
        "p.csv", CSV_HEADER.replace(b"\n", b",metadata\n") + b'a,Q,w,x,y,z,"{""s"": NaN}"\n',
        (2, "metadata", "NaN is not a JSON number")),
    "csv: duplicate key in a JSON cell": (
        "p.csv", CSV_HEADER.replace(b"\n", b",metadata\n") + b'a,Q,w,x,y,z,"{""k"":1,""k"":2}"\n',
        (2, "metadata.k", "duplicate key 'k'")),
    "csv: a model name too long to store": (
        "p.csv", CSV_HEADER.replace(b"\n", b",model\n") + b"a,Q,w,x,y,z," + b"m" * 300 + b"\n",
        (2, "model", "at most 200 characters")),
    "csv: header only": ("p.csv", CSV_HEADER, (0, "file", "has no prompts")),
    "csv: empty file": ("p.csv", b"", (0, "file", "has no prompts")),
}


@dataclass
class Refusal:
    errors: list[dict]  # line, field, message
    said: str  # all that a person reads: the exception, the response or the command's error


@pytest.fixture
def existing(project, carol):
    """Carol's project already holds two prompts from an earlier import."""
    services.prompts_import(project=project, binary=io.BytesIO(jsonl_bytes(
        [prompt_record(100), prompt_record(101)])), filename="earlier.jsonl", imported_by=carol)
    return project


@pytest.fixture(autouse=True)
def var_dir(settings, tmp_path):
    """Uploads wait under VAR_DIR for the worker: a folder of the test's."""
    settings.VAR_DIR = tmp_path / "var"
    settings.VAR_DIR.mkdir()
    return settings.VAR_DIR


def stored_rows() -> tuple[int, int, int, int]:
    """What an import writes; a failed import's own row (its status and errors) aside."""
    return (Prompt.objects.count(), Completion.objects.count(),
            PromptImport.objects.exclude(status="failed").count(), Ranking.objects.count())


def upload_and_run(client, project, name: str, data: bytes, **fields) -> dict:
    """Upload through the API (202: stored, not read), run the worker, return the import."""
    response = client.post(f"/api/projects/{project.id}/imports/",
                           {"file": SimpleUploadedFile(name, data), **fields},
                           format="multipart")
    assert response.status_code == 202, response.content[:500]
    tasks.prompt_import_run_task(response.json()["id"])
    return client.get(response.json()["url"]).json()


def by_service(project, carol, name: str, data: bytes, tmp_path) -> Refusal:
    with pytest.raises(services.ImportRejected) as caught:
        services.prompts_import(project=project, binary=io.BytesIO(data), filename=name,
                                imported_by=carol)
    return Refusal([e.as_dict() for e in caught.value.errors], str(caught.value))


def by_api(project, carol, name: str, data: bytes, tmp_path) -> Refusal:
    client = APIClient()
    client.force_authenticate(carol)
    body = upload_and_run(client, project, name, data)
    assert body["status"] == "failed" and body["prompt_count"] == 0
    assert body["error"].startswith(f"{name}: nothing imported. {name}, line ")
    said = "\n".join(f"{name}, line {e['line']}, field '{e['field']}': {e['message']}"
                     for e in body["errors"])
    return Refusal(body["errors"], said)


def by_command(project, carol, name: str, data: bytes, tmp_path) -> Refusal:
    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises(CommandError) as caught:
        call_command("import_prompts", project.slug, str(path))
    return Refusal([], str(caught.value).replace(str(path), name))


ENTRY_POINTS = {"service": by_service, "api": by_api, "command": by_command}


@pytest.mark.parametrize("entry", ENTRY_POINTS)
@pytest.mark.parametrize("case", BAD_FILES)
def test_a_bad_file_is_refused_naming_file_line_and_field_and_nothing_is_written(
        case, entry, existing, carol, tmp_path):
    name, data, (line, field, message) = BAD_FILES[case]
    before = stored_rows()
    refusal = ENTRY_POINTS[entry](existing, carol, name, data, tmp_path)
    assert f"{name}, line {line}, field '{field}': " in refusal.said
    assert message in refusal.said
    if refusal.errors:
        assert len(refusal.errors) == 1, refusal.errors
        [error] = refusal.errors
        assert (error["line"], error["field"]) == (line, field)
        assert message in error["message"]
    assert stored_rows() == before


def test_skip_invalid_keeps_the_good_lines_and_stores_every_reason_even_hostile_ones(
        existing, carol):
    # The reasons are stored on the import (JSON): a NUL or a lone surrogate quoted from the
    # file must not make that write fail.
    data = (GOOD_LINE + b'{"x\\u0000\\ud800": 1, "x\\u0000\\ud800": 2}\n'
            + record_line(prompt_record(3)) + b'{"a": NaN}\n')
    record = services.prompts_import(project=existing, binary=io.BytesIO(data),
                                     filename="p.jsonl", skip_invalid=True)
    record.refresh_from_db()
    assert record.prompt_count == 2
    assert [(s["line"], s["field"]) for s in record.skipped] == [(2, "x\\x00\\ud800"),
                                                                 (4, "line")]
    assert record.skipped[0]["message"] == "duplicate key 'x\\x00\\ud800' in an object"


# --- what Excel writes: imported as meant -----------------------------------------------
# A UTF-8 byte order mark and CRLF line ends are what Excel ("CSV UTF-8") and Notepad write.
# They carry no data, so refusing them would only make people fight their tools: the BOM is
# skipped (first line only; anywhere else it is data and JSON refuses it) and CRLF ends a
# line like LF. Line breaks inside a quoted CSV cell are the cell's own text and are kept.

EXCEL_FILES = {
    "p.csv": b"\xef\xbb\xbf" + CSV_HEADER.replace(b"\n", b"\r\n")
    + b'a,Q one,w,x,y,z\r\nb,"Q\r\ntwo",w,x,y,z\r\n',
    "p.jsonl": b"\xef\xbb\xbf" + jsonl_bytes([prompt_record(7), prompt_record(8)]).replace(
        b"\n", b"\r\n"),
}


@pytest.mark.parametrize("entry", ["service", "api", "command"])
@pytest.mark.parametrize("name", EXCEL_FILES)
def test_a_bom_and_crlf_line_ends_import_as_the_text_they_hold(name, entry, project, carol,
                                                              tmp_path, capsys):
    data = EXCEL_FILES[name]
    if entry == "service":
        services.prompts_import(project=project, binary=io.BytesIO(data), filename=name)
    elif entry == "api":
        client = APIClient()
        client.force_authenticate(carol)
        assert upload_and_run(client, project, name, data)["status"] == "succeeded"
    else:
        path = tmp_path / name
        path.write_bytes(data)
        call_command("import_prompts", project.slug, str(path))
        assert "Imported 2 prompts, 8 completions" in capsys.readouterr().out
    prompts = list(Prompt.objects.order_by("id"))
    assert len(prompts) == 2
    ids = [p.external_id for p in prompts]
    assert ids == (["a", "b"] if name == "p.csv" else ["p7", "p8"])
    texts = [p.text for p in prompts] + list(Completion.objects.values_list("text", flat=True))
    assert not any("\ufeff" in text for text in texts)
    if name == "p.csv":
        assert [p.text for p in prompts] == ["Q one", "Q\r\ntwo"]
        assert list(prompts[0].completions.values_list("text", flat=True)) == ["w", "x", "y", "z"]
    else:
        assert [p.text for p in prompts] == ["Question number 7?", "Question number 8?"]
        assert not any(text.endswith("\r") for text in texts)


# --- a long line is never held whole ------------------------------------------------------


class ReadRecorder(io.RawIOBase):
    """A file whose reads are recorded: the parser must ask for bounded pieces."""

    def __init__(self, data: bytes):
        self._data = io.BytesIO(data)
        self.largest_read = 0

    def readable(self) -> bool:
        return True

    def readline(self, size: int = -1) -> bytes:
        chunk = self._data.readline(size)
        self.largest_read = max(self.largest_read, len(chunk))
        return chunk

    def readinto(self, buffer) -> int:
        chunk = self._data.read(len(buffer))
        self.largest_read = max(self.largest_read, len(chunk))
        buffer[: len(chunk)] = chunk
        return len(chunk)


def test_a_line_over_the_limit_is_skipped_a_piece_at_a_time_and_the_next_lines_read():
    data = GOOD_LINE + b'{"prompt": "' + b"y" * (20 * MiB) + b'"}\n' + record_line(
        prompt_record(3))
    source = ReadRecorder(data)
    items = list(parse_prompts(source, file_format="jsonl", completions_per_prompt=4,
                               max_bytes=10**9, max_line_bytes=MiB))
    assert [getattr(item, "external_id", None) for item in items] == ["p1", None, "p3"]
    assert (items[1].line, items[1].field) == (2, "line")
    assert "longer than the limit of 1,048,576 bytes" in items[1].message
    assert source.largest_read <= MiB + 1  # never the 20 MiB line at once


def test_the_line_limit_is_a_setting(existing, carol, settings):
    settings.IMPORT_MAX_LINE_BYTES = 100
    data = GOOD_LINE  # about 110 bytes
    with pytest.raises(services.ImportRejected, match="line 1, field 'line': is longer than "
                                                      "the limit of 100 bytes"):
        services.prompts_import(project=existing, binary=io.BytesIO(data), filename="p.jsonl")


# --- over-size uploads: refused before they are read ------------------------------------


class CountingBody(io.RawIOBase):
    """A multipart request body made as the server reads it, counting the bytes it reads."""

    def __init__(self, file_size: int, filename: str = "huge.jsonl", boundary: str = "b0und"):
        self.boundary = boundary
        self._head = (f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
                      f'filename="{filename}"\r\nContent-Type: application/octet-stream\r\n'
                      f"\r\n").encode()
        self._tail = f"\r\n--{boundary}--\r\n".encode()
        self._file_size = file_size
        self.length = len(self._head) + file_size + len(self._tail)
        self.bytes_read = 0

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        start = self.bytes_read
        end = self.length if size is None or size < 0 else min(self.length, start + size)
        self.bytes_read = end
        return self._slice(start, end)

    def readinto(self, buffer) -> int:
        chunk = self.read(len(buffer))
        buffer[: len(chunk)] = chunk
        return len(chunk)

    def _slice(self, start: int, end: int) -> bytes:
        head, body_end = len(self._head), len(self._head) + self._file_size
        out = self._head[start:min(end, head)] if start < head else b""
        if end > head and start < body_end:
            out += b"x" * (min(end, body_end) - max(start, head))
        if end > body_end:
            out += self._tail[max(start, body_end) - body_end:end - body_end]
        return out



def post_body(client, url: str, body: CountingBody):
    """POST `body` as it is, its Content-Length its true size, to `url`."""
    content_type = f"multipart/form-data; boundary={body.boundary}"
    return client.generic("POST", url, b"", content_type=content_type,
                          **{"wsgi.input": body, "CONTENT_LENGTH": str(body.length),
                             "CONTENT_TYPE": content_type})


def test_the_counting_body_is_a_real_upload(existing, carol):
    # The check of the check: the same body under the limit is read whole and parsed (the
    # file is one line of x's, so it is refused as JSON, with its name).
    body = CountingBody(file_size=5000)
    client = APIClient()
    client.force_authenticate(carol)
    response = post_body(client, f"/api/projects/{existing.id}/imports/", body)
    assert response.status_code == 202
    assert body.bytes_read == body.length
    tasks.prompt_import_run_task(response.json()["id"])
    refused = client.get(response.json()["url"]).json()
    assert refused["errors"][0]["message"].startswith("invalid JSON")
    assert refused["error"].startswith("huge.jsonl: nothing imported.")


def test_an_upload_declared_over_the_limit_is_refused_before_a_byte_is_read(
        existing, carol, settings):
    settings.IMPORT_MAX_BYTES = 1_000_000
    body = CountingBody(file_size=3 * 1024**3)  # 3 GiB, never made
    before = stored_rows()
    client = APIClient()
    client.force_authenticate(carol)
    response = post_body(client, f"/api/projects/{existing.id}/imports/", body)
    assert response.status_code == 400
    [error] = response.json()["errors"]
    assert error["field"] == "file" and error["line"] == 0
    assert error["message"] == (f"the upload is {body.length:,} bytes; the limit is 1,000,000 "
                                f"bytes")
    assert body.bytes_read == 0
    assert stored_rows() == before


def test_an_upload_that_grows_past_the_limit_stops_being_read(existing, carol, settings,
                                                              monkeypatch):
    # A client may send no honest length (or a proxy may re-chunk): then the file's bytes are
    # counted as they arrive and reading stops at the limit.
    monkeypatch.setattr(UploadLimitHandler, "overhead", 10**12)  # the length tells nothing
    settings.IMPORT_MAX_BYTES = 200_000
    body = CountingBody(file_size=50 * MiB)
    client = APIClient()
    client.force_authenticate(carol)
    before = stored_rows()
    response = post_body(client, f"/api/projects/{existing.id}/imports/", body)
    assert response.status_code == 400
    [error] = response.json()["errors"]
    assert error["message"] == "is too large; the limit is 200,000 bytes"
    assert response.json()["detail"] == "huge.jsonl: nothing imported."
    assert body.bytes_read < 200_000 + 4 * 64 * 1024  # a chunk or two past it, not 50 MiB
    assert stored_rows() == before


@pytest.mark.parametrize("path", ["/projects/helpful/import/", "/api/projects/{id}/imports/"])
def test_a_browser_upload_over_the_limit_is_a_400_before_a_byte_is_read(
        path, existing, carol, settings):
    # With a session, the CSRF check parses the body before any view: the limit holds there.
    settings.IMPORT_MAX_BYTES = 1_000_000
    client = Client(enforce_csrf_checks=True)
    client.force_login(carol)
    assert client.get("/projects/helpful/").status_code == 200  # the page sets the CSRF cookie
    body = CountingBody(file_size=3 * 1024**3)
    before = stored_rows()
    response = post_body(client, path.format(id=existing.id), body)
    assert response.status_code == 400
    assert body.bytes_read == 0
    assert stored_rows() == before


def test_an_upload_under_the_limit_goes_on_to_be_imported(project, carol, settings):
    data = jsonl_bytes([prompt_record(i) for i in range(50)])
    settings.IMPORT_MAX_BYTES = len(data)  # exactly at the limit is allowed
    client = APIClient()
    client.force_authenticate(carol)
    imported = upload_and_run(client, project, "p.jsonl", data)
    assert imported["status"] == "succeeded" and imported["prompt_count"] == 50


def test_a_gzip_bomb_is_refused_before_a_line_is_parsed(existing, settings, monkeypatch):
    """A small gzip that expands past IMPORT_MAX_BYTES: its bytes are counted first, and it
    is refused without one line parsed (issue 15, item 3)."""
    settings.IMPORT_MAX_BYTES = 64 * MiB
    line = json.dumps(prompt_record(0, k=existing.completions_per_prompt)).encode() + b"\n"
    bomb = gzip.compress(line * (65 * MiB // len(line) + 1), compresslevel=9)
    assert len(bomb) < 2 * MiB
    parsed = []
    real_parse = importers.parse_prompts

    def counting_parse(*args, **kwargs):
        for row in real_parse(*args, **kwargs):
            parsed.append(row)
            yield row

    monkeypatch.setattr(importers, "parse_prompts", counting_parse)
    before = stored_rows()
    with pytest.raises(services.ImportRejected) as rejected:
        services.prompts_import(project=existing, binary=io.BytesIO(bomb),
                                filename="bomb.jsonl.gz")
    [error] = rejected.value.errors
    assert error.field == "file" and error.fatal
    assert error.message == ("expands past the limit of 67,108,864 bytes when decompressed "
                             "(a gzip file is measured by what it holds)")
    assert parsed == [] and stored_rows() == before
    # Under the limit, the same kind of file imports from its first line.
    settings.IMPORT_MAX_BYTES = 70 * MiB
    small = gzip.compress(b"".join(
        json.dumps(prompt_record(i, k=existing.completions_per_prompt)).encode() + b"\n"
        for i in range(3)))
    record = services.prompts_import(project=existing, binary=io.BytesIO(small),
                                     filename="ok.jsonl.gz")
    assert record.prompt_count == 3
