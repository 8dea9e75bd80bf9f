"""Bulk writers for imports: many rows per statement, ids known up front, no model instances.

Django's bulk_create builds a model instance per row and prepares every value field by field;
on a 10,000-prompt import that was most of the time (bench/README.md, "Prompt import"). An
import writes three tables whose columns it knows, so these writers take plain tuples:

- ids_reserve(model, n): n new primary keys, in increasing order, before the rows are
  written (a completion's prompt, a ranking's completion ids are then known without a
  round trip). PostgreSQL draws them from the table's sequence, which is safe beside any
  other writer; SQLite counts on from the table's largest id, which is safe only because
  the transaction holds SQLite's one write lock from its start (settings:
  transaction_mode IMMEDIATE), so both refuse to run outside a transaction.
- rows_insert(model, columns, rows): COPY ... FROM STDIN on PostgreSQL (row triggers still
  fire), executemany of one INSERT on SQLite (its triggers fire per row too). The columns
  not named get the model field's default once per call (auto_now fields: now), so a
  column added to the model later still gets a value. JSON columns take Python values;
  None is SQL NULL, as with a JSONField.
- rows_where_in(model, select, column, values, **equal): the rows whose `column` is one of
  thousands of `values`, passed as one parameter (an array on PostgreSQL, a JSON list on
  SQLite): a query with thousands of placeholders costs more to build and parse than to run.
"""

import json
from collections.abc import Collection, Iterable, Sequence
from contextlib import ExitStack

from django.db import connection
from django.db.models import Field, JSONField, Model
from django.utils import timezone

from ..read_ahead import database_wait


def ids_reserve(model: type[Model], count: int) -> list[int]:
    """`count` unused primary keys of `model`'s table, increasing. Inside a transaction only."""
    if count == 0:
        return []
    _require_transaction()
    table = model._meta.db_table
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            # The sequence is named first: looked up per row, it took most of the time.
            cursor.execute("SELECT pg_get_serial_sequence(%s, 'id')", [table])
            sequence = cursor.fetchone()[0]
            cursor.execute("SELECT nextval(%s::regclass) FROM generate_series(1, %s)",
                           [sequence, count])
            return sorted(row[0] for row in cursor.fetchall())
        # AUTOINCREMENT never reuses an id: count on from the larger of the largest id and
        # the sequence SQLite keeps (which remembers deleted rows' ids).
        cursor.execute(
            f"SELECT MAX(COALESCE((SELECT MAX(id) FROM {_quoted(table)}), 0), "
            "COALESCE((SELECT seq FROM sqlite_sequence WHERE name = %s), 0))", [table])
        last = cursor.fetchone()[0]
    return list(range(last + 1, last + 1 + count))


def rows_insert(model: type[Model], columns: Sequence[str], rows: Iterable[Sequence]) -> None:
    """Write `rows` (values in `columns` order) to `model`'s table in one statement."""
    _require_transaction()
    fields = {field.column: field for field in model._meta.concrete_fields}
    unknown = [column for column in columns if column not in fields]
    if unknown:
        raise ValueError(f"{model.__name__} has no column {unknown[0]!r}")
    defaulted = [field for field in model._meta.concrete_fields
                 if field.column not in columns and not field.primary_key]
    defaults = tuple(_default_of(field) for field in defaulted)
    json_positions = [i for i, column in enumerate(columns)
                      if isinstance(fields[column], JSONField)]
    all_columns = ", ".join(_quoted(column) for column in [*columns,
                                                           *(f.column for f in defaulted)])
    table = _quoted(model._meta.db_table)
    prepared = (_with_json(row, json_positions) + defaults for row in rows)
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            # Django's cursor wraps execute's errors, not copy's: an IntegrityError (a
            # concurrent import's id, the tiers trigger) must stay one for the caller.
            with connection.wrap_database_errors, ExitStack() as after_copy, cursor.copy(
                    f"COPY {table} ({all_columns}) FROM STDIN") as copy:
                for row in prepared:
                    copy.write_row(row)
                # The copy's end waits for the database to store the rest and check it;
                # entered here, the wait is left after that end (an import reads ahead).
                after_copy.enter_context(database_wait())
        else:
            marks = ", ".join(["%s"] * (len(columns) + len(defaulted)))
            cursor.executemany(f"INSERT INTO {table} ({all_columns}) VALUES ({marks})",
                               prepared)


def rows_where_in(model: type[Model], select: Sequence[str], column: str,
                  values: Collection[str], **equal: int | str | None) -> list[tuple]:
    """SELECT `select` FROM the table WHERE each of `equal` holds AND `column` is in `values`."""
    if not values:
        return []
    conditions = [f"{_quoted(name)} = %s" for name in equal]
    if connection.vendor == "postgresql":
        conditions.append(f"{_quoted(column)} = ANY(%s)")
        listed = list(values)
    else:
        conditions.append(f"{_quoted(column)} IN (SELECT value FROM json_each(%s))")
        listed = json.dumps(list(values))
    sql = (f"SELECT {', '.join(_quoted(name) for name in select)} "
           f"FROM {_quoted(model._meta.db_table)} WHERE {' AND '.join(conditions)}")
    with connection.cursor() as cursor:
        cursor.execute(sql, [*equal.values(), listed])
        return cursor.fetchall()


def _with_json(row: Sequence, json_positions: list[int]) -> tuple:
    if not json_positions:
        return tuple(row)
    values = list(row)
    for position in json_positions:
        values[position] = _json(values[position])
    return tuple(values)


def _json(value) -> str | None:
    # As JSONField stores it: None is SQL NULL, anything else its JSON text. Most params and
    # metadata are empty: their text is known.
    if isinstance(value, dict) and not value:
        return "{}"
    return None if value is None else _dumps(value)


def _encoder_once():
    """json.dumps, its C encoder built once: json.dumps builds one per call, three quarters
    of its time on a small object such as an import's metadata (0.018 -> 0.006 s for 10,000).
    The same text; no check for circular references, which JSON read from a file or built
    by the import (lists of ids) cannot have."""
    make = json.encoder.c_make_encoder
    if make is None:  # no C accelerator: the plain function
        return json.dumps
    encode = make(None, json.JSONEncoder().default, json.encoder.encode_basestring_ascii,
                  None, ": ", ", ", False, False, True)
    return lambda value: "".join(encode(value, 0))


_dumps = _encoder_once()


def _default_of(field: Field):
    if getattr(field, "auto_now", False) or getattr(field, "auto_now_add", False):
        return field.get_db_prep_save(timezone.now(), connection)
    value = field.get_default()
    if isinstance(field, JSONField):
        return _json(value)
    return field.get_db_prep_save(value, connection)


def _quoted(name: str) -> str:
    return connection.ops.quote_name(name)


def _require_transaction() -> None:
    if not connection.in_atomic_block:
        raise RuntimeError("bulk writes run inside the import's transaction")
