"""Query budgets of the labeling hot path (issue 19): upper bounds on the SQL statements that
next-prompt and submit run, so a change that adds a query per request fails here instead of
showing up as lost throughput. Transaction control (BEGIN, COMMIT, the test's savepoints) is
left out of the counts, so the bounds hold on SQLite and PostgreSQL alike."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from annotate import apis, services
from annotate.compiled import CompiledQuery
from annotate.models import Prompt, Ranking

pytestmark = pytest.mark.django_db

CONTROL = ("SAVEPOINT", "RELEASE SAVEPOINT", "ROLLBACK TO SAVEPOINT", "BEGIN", "COMMIT")


@pytest.fixture
def four_prompts(db):
    project = services.project_create(
        created_by=None, slug="budget", name="Budget", criterion="helpfulness",
        completions_per_prompt=3, labelers_per_prompt=2,
        # No gold draw: at the default rate (0.1, drawn at random) one hand-out in ten also
        # looks for a gold prompt, one statement more, and the budgets would fail at random.
        gold_rate=0.0)
    for index in range(4):
        prompt = Prompt.objects.create(project=project, text=f"Q{index}", external_id=f"q{index}")
        for position in range(3):
            prompt.completions.create(position=position, text=f"A{index}.{position}")
    return project


@pytest.fixture
def token_client(four_prompts, make_user):
    """A labeler's API client that authenticates with its token, as a real client does."""
    def client_for(name: str) -> APIClient:
        user = make_user(name)
        services.membership_set(project=four_prompts, user=user, role="labeler")
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION="Token " + Token.objects.create(user=user).key)
        return client

    return client_for


def statements(queries: CaptureQueriesContext) -> list[str]:
    return [q["sql"] for q in queries.captured_queries
            if not q["sql"].upper().startswith(CONTROL)]


def next_prompt(client, project) -> tuple[dict, list[str]]:
    with CaptureQueriesContext(connection) as queries:
        answer = client.get(f"/api/projects/{project.id}/next-prompt/")
    assert answer.status_code == 200
    return answer.json(), statements(queries)


def submit(client, project, page: dict, key: str) -> tuple[dict, list[str]]:
    order = [c["id"] for c in page["completions"]]
    body = {"prompt": page["prompt"]["id"], "tiers": [[i] for i in order],
            "idempotency_key": key, "displayed_order": order}
    with CaptureQueriesContext(connection) as queries:
        answer = client.post(f"/api/projects/{project.id}/rankings/", body, format="json")
    assert answer.status_code == 201, answer.content
    return answer.json(), statements(queries)


def test_next_prompt_leases_in_at_most_9_statements_and_resumes_in_4(four_prompts,
                                                                      token_client):
    alice, bob = token_client("alice"), token_client("bob")
    # Token and user, project and membership, open lease?, busy prompts, part-ranked ones,
    # untouched ones, slots and own lease on the locked one, the lease's INSERT, the
    # completions. (Busy and part ranked were one query that sorted every started prompt.)
    _, fresh = next_prompt(alice, four_prompts)
    assert len(fresh) <= 9, fresh
    # Bob gets the prompt Alice holds (a busy one): the untouched ones are not read at all.
    _, started = next_prompt(bob, four_prompts)
    assert len(started) <= 8, started
    # Resuming reads the open lease with its prompt: token, project, lease, completions.
    _, resumed = next_prompt(alice, four_prompts)
    assert len(resumed) <= 4, resumed


def test_a_first_ranking_is_stored_in_at_most_7_statements(four_prompts, token_client):
    alice = token_client("alice")
    page, _ = next_prompt(alice, four_prompts)
    # Token and user, project, the locked prompt with its completions, key or earlier
    # ranking?, the live lease closed (UPDATE ... RETURNING), INSERT ranking, UPDATE
    # prompt's count.
    body, queries = submit(alice, four_prompts, page, "k1")
    assert len(queries) <= 7, queries
    assert Ranking.objects.get(id=body["id"]).tiers == body["tiers"]


def test_a_ranking_with_next_costs_the_two_requests_less_their_token_and_project(
        four_prompts, token_client):
    alice = token_client("alice")
    page, _ = next_prompt(alice, four_prompts)
    order = [c["id"] for c in page["completions"]]
    body = {"prompt": page["prompt"]["id"], "tiers": [[i] for i in order],
            "idempotency_key": "k1", "displayed_order": order}
    with CaptureQueriesContext(connection) as queries:
        answer = alice.post(f"/api/projects/{four_prompts.id}/rankings/?next=true", body,
                            format="json")
    assert answer.status_code == 201 and answer.json()["next"]["prompt"]["id"]
    # The first ranking's 7 and a fresh lease's 9, less the token and the project read once.
    assert len(statements(queries)) <= 14, statements(queries)


def test_the_answers_are_what_their_documented_serializers_give(four_prompts, token_client):
    alice = token_client("alice")
    page, _ = next_prompt(alice, four_prompts)
    prompt = Prompt.objects.get(id=page["prompt"]["id"])
    by_id = {c.id: c for c in prompt.completions.all()}
    documented = apis.NextPromptOutput({
        "annotation": apis.annotation_of(four_prompts), "prompt": prompt,
        "completions": [by_id[c["id"]] for c in page["completions"]],
        "expires_at": prompt.assignments.get().expires_at}).data
    assert page == documented
    body, _ = submit(alice, four_prompts, page, "k1")
    ranking = Ranking.objects.get(id=body["id"])
    version = services.RankingVersion.of(ranking)
    documented = dict(apis.RankingOutput(version).data)
    assert documented.pop("next") is None  # sent only with ?next=true
    assert body == documented


def test_a_compiled_query_runs_with_the_values_it_is_given(four_prompts):
    prompts = CompiledQuery(
        lambda project_id, text: Prompt.objects.filter(project_id=project_id, text=text)
        .values_list("external_id"), project_id=int, text=str)
    assert prompts.rows(project_id=four_prompts.id, text="Q2") == [("q2",)]
    assert prompts.rows(project_id=four_prompts.id, text="Q9") == []
    assert prompts.first(project_id=four_prompts.id + 1, text="Q2") is None


def test_a_compiled_query_refuses_a_value_that_is_not_a_parameter(four_prompts):
    # filter(text=None) compiles to IS NULL: there is no parameter to put a value in.
    nowhere = CompiledQuery(lambda text: Prompt.objects.filter(text=None).values_list("id"),
                            text=str)
    with pytest.raises(AssertionError, match="text"):
        nowhere.rows(text="Q1")


@pytest.mark.parametrize("body", [
    {"prompt": 3, "tiers": [[1], [2]], "idempotency_key": "k"},
    {"prompt": 3, "tiers": [[1, 2]], "idempotency_key": "k", "comment": "fine",
     "time_spent_ms": 5, "displayed_order": [2, 1], "flags": {"1": ["unsafe"]},
     "base_revision": 0, "unknown": 1},
    {"prompt": 3, "scores": {"1": {"overall": 2}}, "idempotency_key": "k",
     "time_spent_ms": None, "base_revision": None},
    # The serializer's to say: trimmed, coerced, refused.
    {"prompt": "3", "tiers": [[1]], "idempotency_key": "k"},
    {"prompt": 3, "tiers": [[1]], "idempotency_key": " k "},
    {"prompt": 3, "tiers": [[1]], "idempotency_key": ""},
    {"prompt": 3, "tiers": [[1]], "idempotency_key": "k" * 101},
    {"prompt": 3, "tiers": [[1]], "idempotency_key": "k", "comment": "two\nlines "},
    {"prompt": 3, "tiers": None, "idempotency_key": "k"},
    {"prompt": 3, "tiers": [[1]], "idempotency_key": "k", "time_spent_ms": True},
    {"prompt": 3, "tiers": [[1]], "idempotency_key": "k", "base_revision": -1},
    {"prompt": 3, "tiers": [[1]]},
    [{"prompt": 3}],
])
def test_plain_ranking_bodies_skip_the_serializer_with_the_same_result(body):
    plain = apis.plain_ranking_input(body)
    serializer = apis.RankingInput(data=body)
    if plain is not None:
        assert serializer.is_valid() and plain == dict(serializer.validated_data)
    else:  # left to the serializer: only bodies it changes or refuses
        assert not serializer.is_valid() or dict(serializer.validated_data) != body


@pytest.mark.skipif(connection.vendor != "sqlite", reason="SQLite's EXPLAIN QUERY PLAN; "
                    "PostgreSQL's plans: bench/started_prompts_plan.py")
def test_started_prompts_are_read_by_id_or_walked_in_index_order(four_prompts, make_user):
    # Busy prompts: an OR of their conditions made the database read every prompt of the
    # project; the UNION of their ids reads each prompt it returns by its id. Part-ranked
    # ones: straight from (project, -ranking_count, id), no sort, so a hand-out stops after a
    # few however many prompts are started (sorting them all cost ms per thousand).
    from django.db import transaction
    from django.utils import timezone

    from annotate.services.labeling import BUSY_CANDIDATES, PART_RANKED_CANDIDATES

    values = {"project_id": four_prompts.id, "labeler_id": make_user("ann").id,
              "now": timezone.now(), "n": 2}
    plans = {}
    for name, compiled in (("busy", BUSY_CANDIDATES), ("part ranked", PART_RANKED_CANDIDATES)):
        with transaction.atomic():
            query = compiled.build(**values).query
            sql, params = query.get_compiler(connection=connection).as_sql()
        with connection.cursor() as cursor:
            cursor.execute("EXPLAIN QUERY PLAN " + sql, params)
            plans[name] = cursor.fetchall()
    busy = plans["busy"]
    outer = [detail for _, parent, _, detail in busy if parent == 0 and "annotate_prompt" in detail]
    assert len(outer) == 1 and "rowid=?" in outer[0], busy
    assert any("assignment_open_lease_idx" in detail for *_, detail in busy), busy
    walked = [detail for *_, detail in plans["part ranked"]]
    assert any("prompt_part_ranked_idx" in detail for detail in walked), walked
    assert not any("TEMP B-TREE" in detail for detail in walked), walked
    assert any("(prompt_id=? AND labeler_id=?)" in detail for detail in walked), walked


@pytest.mark.skipif(connection.vendor != "sqlite", reason="SQLite's EXPLAIN QUERY PLAN; "
                    "PostgreSQL's plans: bench/started_prompts_plan.py")
def test_untouched_prompts_come_in_index_order_and_the_done_check_is_a_probe(four_prompts,
                                                                             make_user):
    # The untouched prompts in id order straight from (project, ranking_count, id), no sort;
    # the labeler's ranked and skipped prompts looked up per candidate on the (prompt,
    # labeler) unique index, not read as a list of all of them on every hand-out.
    from django.db import transaction
    from django.utils import timezone

    from annotate.services.labeling import UNTOUCHED_CANDIDATES

    values = {"project_id": four_prompts.id, "labeler_id": make_user("ann").id,
              "now": timezone.now()}
    with transaction.atomic():
        query = UNTOUCHED_CANDIDATES.build(**values).query
        sql, params = query.get_compiler(connection=connection).as_sql()
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN QUERY PLAN " + sql, params)
        plan = [detail for *_, detail in cursor.fetchall()]
    assert any("annotate_pr_project_01dcfc_idx" in detail for detail in plan), plan
    assert not any("TEMP B-TREE" in detail for detail in plan), plan
    assert any("(prompt_id=? AND labeler_id=?)" in detail for detail in plan), plan
