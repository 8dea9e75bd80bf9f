"""PostgreSQL's prepared statements, with plans no older than DATABASE_PLAN_MAX_AGE_SECONDS.

With DATABASE_PREPARED (settings) psycopg prepares a statement on its third run on a
connection, so PostgreSQL no longer plans it per request: planning was half the database's
CPU of a ranking (bench/README.md). PostgreSQL replans a prepared statement only when the
statistics of a table it reads change, at an ANALYZE. A table that grows between two ANALYZEs
(autovacuum off, or not round yet, as with the assignments of a campaign's first minutes)
keeps the plan made while it was small: next-prompt's busy-prompts query scanned the whole
assignments table per candidate, 27 ms a call. So at the start of a request a connection whose
statements are older than the limit drops them all (DEALLOCATE ALL, which psycopg sees and
forgets its own), and prepares them again on plans made for the tables as they are now.
Planning estimates a table's rows from its current size even without fresh statistics.
"""

import time
import weakref

from django.conf import settings
from django.db import DatabaseError, connections

# Each open psycopg connection: when its prepared statements were last dropped (or first seen).
_plans_since: "weakref.WeakKeyDictionary[object, float]" = weakref.WeakKeyDictionary()


def plans_renew_if_old(**_signal) -> None:
    """Drop the prepared statements of this thread's connections that are older than the
    limit (connected to request_started, after Django's own close_old_connections)."""
    now = time.monotonic()
    for wrapper in connections.all(initialized_only=True):
        raw = wrapper.connection
        if raw is None or wrapper.vendor != "postgresql" or raw.prepare_threshold is None:
            continue
        since = _plans_since.setdefault(raw, now)
        # A request starts outside any transaction (ATOMIC_REQUESTS is off); the test suite's
        # requests run inside its per-test one, whose statement counts stay as they are.
        if now - since >= settings.DATABASE_PLAN_MAX_AGE_SECONDS and not wrapper.in_atomic_block:
            try:
                with wrapper.cursor() as cursor:
                    cursor.execute("DEALLOCATE ALL")
            except DatabaseError:  # the server is gone: the request's own queries will say so
                continue
            _plans_since[raw] = now
