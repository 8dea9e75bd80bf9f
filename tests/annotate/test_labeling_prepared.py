"""PostgreSQL prepares the labeling hot path's statements (issue 19): with DATABASE_PREPARED=1
(the default: server-side binding and a prepare threshold) psycopg prepares a statement on its
third run on a connection, so the database stops parsing and planning next-prompt's queries
on every request; a connection drops its plans once they are DATABASE_PLAN_MAX_AGE_SECONDS old
(config/prepared_plans.py). SQLite has nothing to prepare."""

import json
import subprocess
import sys

import pytest
from django.db import connection
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from annotate import services
from annotate.compiled import numbered_placeholders
from annotate.models import Prompt
from tests.processes import ROOT, app_env

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.skipif(connection.vendor != "postgresql",
                       reason="prepared statements are PostgreSQL's (CI runs it there)"),
]


def prepared_statements() -> list[str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT statement FROM pg_prepared_statements")
        return [row[0] for row in cursor.fetchall()]


@pytest.fixture
def labelers(make_user):
    project = services.project_create(
        created_by=None, slug="prepared", name="Prepared", criterion="helpfulness",
        completions_per_prompt=2, labelers_per_prompt=2, gold_rate=0.0)
    for index in range(6):
        prompt = Prompt.objects.create(project=project, text=f"Q{index}", external_id=f"q{index}")
        for position in range(2):
            prompt.completions.create(position=position, text=f"A{index}.{position}")
    clients = []
    for name in ("alice", "bob", "charlie"):
        user = make_user(name)
        services.membership_set(project=project, user=user, role="labeler")
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION="Token " + Token.objects.create(user=user).key)
        clients.append(client)
    return project, clients


@pytest.fixture
def preparing():
    """This test's connection as DATABASE_PREPARED=1 opens one: server-side binding and a
    prepare threshold of 2 (the test database's connection is opened by the suite's own
    settings)."""
    from django.db.backends.postgresql.base import ServerBindingCursor

    connection.ensure_connection()
    raw = connection.connection
    before = raw.cursor_factory, raw.prepare_threshold
    raw.cursor_factory, raw.prepare_threshold = ServerBindingCursor, 2
    yield
    raw.cursor_factory, raw.prepare_threshold = before


def test_next_prompts_statements_are_prepared_after_a_few_requests(labelers, preparing):
    project, clients = labelers
    for client in clients:
        page = client.get(f"/api/projects/{project.id}/next-prompt/")
        assert page.status_code == 200, page.content
        order = [c["id"] for c in page.json()["completions"]]
        answer = client.post(f"/api/projects/{project.id}/rankings/", {
            "prompt": page.json()["prompt"]["id"], "tiers": [[i] for i in order],
            "idempotency_key": f"k-{id(client)}", "displayed_order": order}, format="json")
        assert answer.status_code == 201, answer.content
    prepared = prepared_statements()
    # Statements stay prepared for the connection's life, so earlier tests' may be among them;
    # these are the hot path's own: the token lookup, the lease's INSERT, the open-lease read.
    assert any(sql.startswith('SELECT "authtoken_token"."user_id"') for sql in prepared), prepared
    assert any(sql.startswith('INSERT INTO "annotate_assignment" (prompt_id') for sql in prepared)
    assert any(sql.startswith('SELECT COUNT("annotate_assignment"."id") FILTER')
               for sql in prepared), prepared


COUNT_PREPARED = (
    "import django; django.setup(); from django.db import connection;"
    "cursor = connection.cursor();"
    "[cursor.execute('SELECT %s::int + 1', [i]) for i in range(3)];"
    "cursor.execute('SELECT count(*) FROM pg_prepared_statements');"
    "print(cursor.fetchone()[0])"
)


@pytest.mark.parametrize("switch, prepared", [(None, 1), ("1", 1), ("0", 0)])
def test_database_prepared_1_turns_preparing_on(tmp_path, switch, prepared):
    db = connection.settings_dict
    env = app_env(DJANGO_SETTINGS_MODULE="config.settings", VAR_DIR=str(tmp_path),
                  DATABASE_URL=f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}")
    env.pop("DATABASE_PREPARED", None)
    if switch is not None:
        env["DATABASE_PREPARED"] = switch
    result = subprocess.run([sys.executable, "-c", COUNT_PREPARED], cwd=ROOT, env=env,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == prepared


@pytest.mark.django_db(transaction=True)  # a request starts outside any transaction
def test_plans_older_than_the_limit_are_dropped_at_a_request_and_prepared_again(
        labelers, preparing, settings):
    project, [alice, *_] = labelers

    def token_lookup_prepared() -> bool:
        return any(sql.startswith('SELECT "authtoken_token"."user_id"')
                   for sql in prepared_statements())

    def next_prompt() -> None:
        assert alice.get(f"/api/projects/{project.id}/next-prompt/").status_code == 200

    settings.DATABASE_PLAN_MAX_AGE_SECONDS = 3600
    for _ in range(3):  # psycopg prepares a statement on its third run (threshold 2)
        next_prompt()
    assert token_lookup_prepared()
    next_prompt()  # younger than the limit: kept
    assert token_lookup_prepared()
    settings.DATABASE_PLAN_MAX_AGE_SECONDS = 0
    next_prompt()  # dropped as the request started; run once since, so not prepared yet
    assert not token_lookup_prepared()
    settings.DATABASE_PLAN_MAX_AGE_SECONDS = 3600
    next_prompt()  # psycopg forgot its names too: it prepares afresh instead of failing
    next_prompt()
    assert token_lookup_prepared()


@pytest.mark.django_db(transaction=True)
def test_a_database_gone_when_plans_are_due_fails_no_request_that_does_not_use_it(
        preparing, settings, monkeypatch):
    """The renewal runs before the request's own code: with the server unreachable it must
    not turn a request that reads nothing (a static file, a redirect) into a 500."""
    from django.db import OperationalError

    from config.prepared_plans import plans_renew_if_old

    def unreachable():
        raise OperationalError("server closed the connection unexpectedly")

    with connection.cursor() as cursor:
        for _ in range(3):  # prepared on its third run: a plan to drop
            cursor.execute("SELECT %s::int + 41", [1])
    assert prepared_statements()
    settings.DATABASE_PLAN_MAX_AGE_SECONDS = 0
    monkeypatch.setattr(connection, "cursor", unreachable)
    plans_renew_if_old()  # no exception
    monkeypatch.undo()
    assert prepared_statements()  # nothing could be dropped meanwhile
    plans_renew_if_old()  # and with the server back, the plans are dropped
    assert prepared_statements() == []


def test_generic_plans_of_the_candidate_queries_still_use_the_partial_indexes(labelers):
    """PostgreSQL may give a prepared statement one generic plan for any values after five
    runs; the started and untouched prompts' queries must keep reading open leases and extra
    rankings from their partial indexes then, so their conditions are literals in the SQL."""
    from django.utils import timezone

    from annotate.services.labeling import (
        BUSY_CANDIDATES,
        PART_RANKED_CANDIDATES,
        UNTOUCHED_CANDIDATES,
    )

    project, _ = labelers
    values = {"project_id": project.id, "labeler_id": 1, "now": timezone.now()}
    plans = {}
    with connection.cursor() as cursor:
        cursor.execute("SET enable_seqscan = off")  # a 6-prompt table: scans win otherwise
        cursor.execute("SET plan_cache_mode = force_generic_plan")
        for name, compiled, extra in (("busy", BUSY_CANDIDATES, {"n": 2}),
                                      ("part ranked", PART_RANKED_CANDIDATES, {"n": 2}),
                                      ("untouched", UNTOUCHED_CANDIDATES, {})):
            sql, params = compiled.statement(**values, **extra)
            assert "'leased'" in sql
            numbered = numbered_placeholders(sql)
            cursor.execute(f"PREPARE plan_check AS {numbered}")
            arguments = connection.ops.compose_sql(", ".join(["%s"] * len(params)), params)
            cursor.execute(f"EXPLAIN EXECUTE plan_check({arguments})")
            plans[name] = "\n".join(row[0] for row in cursor.fetchall())
            cursor.execute("DEALLOCATE plan_check")
        cursor.execute("RESET plan_cache_mode")
        cursor.execute("RESET enable_seqscan")
    assert "assignment_open_lease_idx" in plans["busy"], plans["busy"]
    assert "prompt_extra_rankings_idx" in plans["busy"], plans["busy"]
    # `ranking_count > 0` written in: a parameter there could not prove the partial index.
    assert "prompt_part_ranked_idx" in plans["part ranked"], plans["part ranked"]
    assert "assignment_open_lease_idx" in plans["untouched"], plans["untouched"]


def test_constants_written_into_the_sql_keep_quotes_and_percent_signs(labelers):
    """A query's constants become SQL literals on PostgreSQL; one holding a quote, a percent
    sign or a stand-in for a placeholder still matches exactly what the ORM would."""
    from annotate.compiled import CompiledQuery

    project, _ = labelers
    awkward = "it's 100% %s done"
    Prompt.objects.create(project=project, text=awkward, external_id="awkward")
    query = CompiledQuery(lambda project_id: Prompt.objects.filter(
        project_id=project_id, text=awkward, ranking_count__lt=1).values_list("external_id"),
        project_id=int)
    sql, params = query.statement(project_id=project.id)
    assert "'it''s 100%% %%s done'" in sql and params == [project.id]
    assert query.rows(project_id=project.id) == [("awkward",)]
