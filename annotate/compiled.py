"""Queries the ORM writes once and the labeling hot path runs many times.

Profiling next-prompt and submit showed most of their Python time in building SQL (filters,
joins, compiling), not in the database: a handful of queries per request cost more to write
than to run. A CompiledQuery asks the ORM for a query's SQL once per database connection,
with stand-in values, and then runs that SQL with the real values, converting the columns as
the ORM would. The SQL is the ORM's own, so the query means what the queryset says.

Values become parameters, never SQL text, so stand-ins can be swapped for real values; a
queryset whose SQL depends on a value (None, an empty list) must not take it as a stand-in.
"""

import itertools
import re
import weakref
from collections.abc import Callable
from datetime import UTC, datetime

from django.db import DEFAULT_DB_ALIAS, connection, connections
from django.db.models import QuerySet

_DATETIME_BASE = datetime(1901, 2, 3, 4, 5, 6, tzinfo=UTC)


def _stand_in(index: int, kind: type) -> object:
    if kind is datetime:
        return _DATETIME_BASE.replace(microsecond=100_000 + index)
    if kind is str:
        return f"\x00stand-in-{index}\x00"
    # Positive and within 32 bits: Django drops a comparison it knows to overflow a field.
    return 987_654_000 + index


class CompiledQuery:
    """`build(**values)` returns a queryset (usually values_list); `kinds` names each value's
    type (int, str or datetime). rows(**values) runs it: a list of tuples."""

    def __init__(self, build: Callable[..., QuerySet], **kinds: type):
        self.build, self.kinds = build, kinds
        self._by_connection = weakref.WeakKeyDictionary()

    def _compiled(self) -> tuple[str, list, list]:
        wrapper = connections[DEFAULT_DB_ALIAS]  # this thread's (`connection` is a proxy)
        compiled = self._by_connection.get(wrapper)
        if compiled is None:
            compiled = self._by_connection[wrapper] = self._compile()
        return compiled

    def _compile(self) -> tuple[str, list, list]:
        stand_ins = {name: _stand_in(i, kind) for i, (name, kind) in enumerate(self.kinds.items())}
        known = {}
        for name, value in stand_ins.items():
            known[_key(value)] = (name, False)
            if isinstance(value, datetime):
                known[_key(connection.ops.adapt_datetimefield_value(value))] = (name, True)
        compiler = self.build(**stand_ins).query.get_compiler(connection=connection)
        sql, params = compiler.as_sql()
        # Each parameter: a constant of the query, or ("value", name, adapt, type) to fill in
        # (PostgreSQL's typed integers, Int4 or Int2, keep their type).
        slots = [("value", *known[_key(p)], type(p)) if _key(p) in known else ("constant", p)
                 for p in params]
        found = {slot[1] for slot in slots if slot[0] == "value"}
        if found != set(self.kinds):
            raise AssertionError(f"values not found as parameters: {set(self.kinds) - found}")
        converters = list(compiler.get_converters([s[0] for s in compiler.select]).items())
        if connection.vendor == "postgresql":
            sql, slots = _constants_written_in(sql, slots)
        return sql, slots, converters

    def statement(self, **values) -> tuple[str, list]:
        """The SQL this query runs on this connection, and its parameters for `values`."""
        sql, slots, _ = self._compiled()
        params = []
        for slot in slots:
            if slot[0] == "constant":
                params.append(slot[1])
            else:
                _, name, adapt, kind = slot
                value = values[name]
                if adapt:
                    value = connection.ops.adapt_datetimefield_value(value)
                elif kind is not type(value):
                    value = kind(value)
                params.append(value)
        return sql, params

    def rows(self, **values) -> list[tuple]:
        sql, params = self.statement(**values)
        converters = self._compiled()[2]
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            rows = cursor.fetchall()
        if not converters:
            return rows
        return [_converted(row, converters) for row in rows]

    def first(self, **values) -> tuple | None:
        rows = self.rows(**values)
        return rows[0] if rows else None


_PLACEHOLDER = re.compile(r"%%|%s")


def _constants_written_in(sql: str, slots: list) -> tuple[str, list]:
    """PostgreSQL: the query's own constants (a status, a zero) written into its SQL as
    literals; only the values stay parameters. Prepared statements may run a generic plan,
    made once for any parameters (plan_cache_mode auto, after five runs), and a generic plan
    can use a partial index only if the index's condition (status = 'leased',
    extra_rankings > 0) stands in the SQL, not in a parameter (started prompts 0.74 -> 2.84
    ms with it a parameter, bench/README.md)."""
    kept = []
    remaining = iter(slots)

    def write(match: re.Match) -> str:
        if match[0] == "%%":
            return "%%"
        slot = next(remaining)
        literal = _literal(slot[1]) if slot[0] == "constant" else None
        if literal is None:
            kept.append(slot)
            return "%s"
        return literal.replace("%", "%%")

    return _PLACEHOLDER.sub(write, sql), kept


def numbered_placeholders(sql: str) -> str:
    """psycopg's %s placeholders as PREPARE's $1, $2, ... (to EXPLAIN a statement's generic
    plan: bench/started_prompts_plan.py, the prepared-statement tests)."""
    numbers = itertools.count(1)
    return _PLACEHOLDER.sub(lambda m: "%" if m[0] == "%%" else f"${next(numbers)}", sql)


def _literal(value: object) -> str | None:
    """A constant as SQL text: booleans, integers and plain strings; None for anything else
    (it stays a parameter)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(int(value))
    if isinstance(value, str) and "\x00" not in value and "\\" not in value:
        return "'" + value.replace("'", "''") + "'"
    return None


def _key(value: object) -> tuple:
    if isinstance(value, int) and not isinstance(value, bool):
        return ("int", int(value))  # PostgreSQL wraps some as Int4, Int2 ...
    return (type(value).__name__, str(value))


def _converted(row: tuple, converters: list) -> tuple:
    row = list(row)
    for position, (functions, expression) in converters:
        value = row[position]
        for function in functions:
            value = function(value, expression, connection)
        row[position] = value
    return tuple(row)


def execute(sql: str, params: list) -> list[tuple]:
    """Run a hand-written statement (the few plain INSERTs and UPDATEs); rows it returns."""
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall() if cursor.description else []


def db_value(model, field_name: str, value: object) -> object:
    """`value` as the database takes it for `model.field_name` (JSON, datetimes)."""
    return model._meta.get_field(field_name).get_db_prep_save(value, connection)
