"""Fuzz every API operation from the app's own OpenAPI schema, as each role.

Schemathesis reads `/api/schema/` from the app (in-process WSGI, no network) and generates
requests for every operation, valid and invalid, sent as an anonymous client, as Lena (labeler
of P1 only) and as Ada (admin of P1 only). Path parameters and the ids inside bodies point at
real rows of P1 and of P2, and at rows that do not exist. Every response must be:

- no server error (5xx), a status the schema documents for the operation, of its content
  type and schema;
- no bypass: anonymous gets 401 everywhere but the token endpoint; Lena never gets a 2xx on
  an admin operation or on anything of P2; Ada never gets a 2xx on anything of P2; no list
  shows a P2 row;
- no foreign write: after each request, every P2 row and every existing account is as it was
  (and for an anonymous client, every row at all; for Lena, P1's admin data too).

Bounded: a few examples per (role, operation), derandomized so CI sees the same requests.
Nothing heavy runs: imports, exports and training jobs the requests create are only queued, and
their dispatch (transaction.on_commit) never comes, since each test's transaction is rolled
back.
"""

import io
import json
import os
import sys
from collections.abc import Iterator

import pytest
import schemathesis
from django.contrib.auth import get_user_model
from django.core.signals import got_request_exception
from django.db import transaction
from django.test import override_settings
from django.test.client import ClientHandler
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rest_framework.authtoken.models import Token
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)

from annotate import services
from annotate.models import (
    Assignment,
    Completion,
    Export,
    Membership,
    Project,
    Prompt,
    PromptImport,
    Ranking,
    RankingRevision,
)
from tests.factories import jsonl_bytes, prompt_record
from training.models import CompletionScore, ModelArtifact, TrainingJob

pytestmark = pytest.mark.django_db

# Examples per (role, operation): anonymous requests all stop at authentication, an admin's
# reach the most code. API_FUZZ_SCALE=5 makes a longer run (locally, to look for more).
SCALE = float(os.environ.get("API_FUZZ_SCALE", "1"))
EXAMPLES = {role: max(1, round(n * SCALE)) for role, n in
            (("anonymous", 4), ("lena", 12), ("ada", 20))}
MISSING_ID = 987_654

_handler = ClientHandler(enforce_csrf_checks=True)
_exceptions: list[BaseException] = []
# Django sends this inside its `except` around a view that raised: keep what it caught.
got_request_exception.connect(lambda sender, **kwargs: _exceptions.append(sys.exc_info()[1]),
                              weak=False)


def wsgi_app(environ, start_response):
    """The project as a WSGI app, through Django's test handler.

    The test handler, unlike the production one, does not close the database connection at
    the end of each request, so each test's transaction (and its rollback) spans its requests.
    """
    response = _handler(environ)
    headers = [*response.items()]
    headers += [("Set-Cookie", morsel.output(header="").strip())
                for morsel in response.cookies.values()]
    start_response(f"{response.status_code} {response.reason_phrase}", headers)
    return response


SCHEMA = schemathesis.openapi.from_wsgi("/api/schema/?format=json", wsgi_app)
OPERATIONS = {op.ok().label: op.ok() for op in SCHEMA.get_all_operations()}

PUBLIC = {"POST /api/auth/token/"}
# What a labeler of a project may do there; everything else in the API is for its admins.
LABELER_OPERATIONS = {
    "GET /api/projects/",
    "GET /api/projects/{project_id}/",
    "GET /api/projects/{project_id}/next-prompt/",
    "POST /api/projects/{project_id}/rankings/",
    "POST /api/projects/{project_id}/skips/",
    "POST /api/projects/{project_id}/prompts/{prompt_id}/lease/",
    "GET /api/projects/{project_id}/progress/",
    "DELETE /api/auth/token/",  # any signed-in user revokes their own token
}
# Lists a non-admin may call: they answer 200 with nothing in them.
EMPTY_LISTS_FOR_LABELERS = {"GET /api/training-jobs/", "GET /api/models/"}
# Staff only: neither Lena nor Ada is staff.
STAFF_OPERATIONS = {"POST /api/projects/"}
ROLES = ("anonymous", "lena", "ada")
FORM_TYPES = ("multipart/form-data", "application/x-www-form-urlencoded")


def test_the_schema_has_every_api_operation_and_each_is_classified():
    """Every operation is fuzzed. One not listed above counts as admin-only: a new labeler
    endpoint fails the fuzzing below (a labeler's 2xx there) until it is listed."""
    assert len(OPERATIONS) >= 25
    for label in OPERATIONS:
        assert label.split(" ", 1)[1].startswith("/api/"), label
    assert LABELER_OPERATIONS | PUBLIC | EMPTY_LISTS_FOR_LABELERS <= set(OPERATIONS)


# --- what the fuzzing found, as plain stories ------------------------------------------------


def test_one_project_answers_its_prompt_count_as_the_list_does(project, alice, api):
    """The schema promised prompt_count on every project; only the list carried it."""
    services.prompts_import(project=project, filename="p.jsonl",
                            binary=io.BytesIO(jsonl_bytes([prompt_record(i) for i in range(3)])))
    client = api(alice)
    [listed] = client.get("/api/projects/").json()["results"]
    one = client.get(f"/api/projects/{project.id}/").json()
    assert listed["prompt_count"] == one["prompt_count"] == 3


@pytest.mark.parametrize("query", ["limit=abc", "limit=0", "offset=-1", "offset=1&offset=2",
                                   "limit=%C2%B2"])
def test_the_project_list_refuses_a_limit_or_offset_that_is_not_a_whole_number(
        query, alice, api):
    """DRF ignored them silently (and answered the default page); now a 400 names which."""
    response = api(alice).get(f"/api/projects/?{query}")
    assert response.status_code == 400
    assert set(response.json()) == {query.split("=")[0]}


def test_the_project_list_pages_as_documented(project, other_project, root, api):
    body = api(root).get("/api/projects/?limit=1&offset=1").json()
    assert body["count"] == 2 and [p["slug"] for p in body["results"]] == ["helpful"]
    assert "offset=" not in (body["next"] or "") and body["previous"]


def test_scoring_with_a_model_whose_files_are_gone_is_a_409(project, carol, api, settings,
                                                             tmp_path):
    """It loaded whatever the path held and answered 500 when nothing was there."""
    settings.VAR_DIR = tmp_path
    artifact = ModelArtifact.objects.create(project=project, name="rm", version=1, kind="reward",
                                            base_model="tiny", path="models/deleted")
    response = api(carol).post(f"/api/models/{artifact.id}/score/", {
        "items": [{"prompt": "Hi?", "response": "Hello."}]}, format="json")
    assert response.status_code == 409
    detail = response.json()["detail"]
    assert f"Model {artifact.id}'s files are missing" in detail
    assert "models/deleted" not in detail  # the server's paths are not shown


@pytest.mark.parametrize("path", ["/api/training-jobs/", "/api/models/"])
def test_a_blank_project_filter_is_refused_not_read_as_all_projects(path, carol, api):
    response = api(carol).get(f"{path}?project=")
    assert response.status_code == 400 and "project" in response.json()


# --- the world: two projects, their people and rows ----------------------------------------


@pytest.fixture(scope="module")
def world(django_db_setup, django_db_blocker, tmp_path_factory):
    """P1 (Lena labels, Ada administers) and P2 (Liam labels, Axel administers).

    Each project has an import, prompts with rankings and open leases, a gold prompt, an
    export on disk, a queued training job and a registered reward model (whose files are
    missing). Built once for the module inside a transaction that is rolled back at its end;
    each test's own transaction (a savepoint inside it) undoes what its requests wrote.
    """
    var_dir = tmp_path_factory.mktemp("var")
    fast = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    with (django_db_blocker.unblock(), override_settings(VAR_DIR=var_dir, PASSWORD_HASHERS=fast),
          transaction.atomic()):
        yield build_world()
        transaction.set_rollback(True)


def build_world() -> dict:
    people = {name: get_user_model().objects.create_user(name, password=f"{name}-password")
              for name in ("lena", "ada", "liam", "axel")}
    ids: dict[str, dict[str, list[int]]] = {}
    projects = {}
    for slug, labeler, admin in (("p1", "lena", "ada"), ("p2", "liam", "axel")):
        project = services.project_create(
            created_by=None, slug=slug, name=slug.upper(), criterion="helpfulness",
            completions_per_prompt=3, labelers_per_prompt=2, allow_ties=True)
        services.membership_set(project=project, user=people[labeler], role="labeler")
        services.membership_set(project=project, user=people[admin], role="admin")
        records = [prompt_record(i, k=3) for i in range(4)]
        imported = services.prompts_import(project=project, filename=f"{slug}.jsonl",
                                           binary=io.BytesIO(jsonl_bytes(records)))
        first, second, *_ = Prompt.objects.filter(project=project).order_by("id")
        for user in (people[labeler], people[admin]):
            lease = services.assignment_next(project=project, labeler=user)
            order = list(lease.prompt.completions.values_list("id", flat=True))
            services.ranking_submit(project=project, labeler=user, prompt_id=lease.prompt_id,
                                    tiers=[[i] for i in order], idempotency_key=f"{user}-1")
        services.assignment_next(project=project, labeler=people[labeler])  # an open lease
        gold = Prompt.objects.filter(project=project).order_by("-id").first()
        completion_ids = list(gold.completions.values_list("id", flat=True))
        services.prompt_gold_set(project=project, prompt_id=gold.id, mode="ranking",
                                 tiers=[[i] for i in completion_ids])
        export = services.export_create(
            project=project, created_by=None, run_now=True,
            params=services.ExportParams(min_votes=1, formats=("trl-jsonl",)))
        artifact = ModelArtifact.objects.create(
            project=project, name="rm", version=1, kind="reward", base_model="tiny",
            path=f"models/{slug}-missing")
        job = TrainingJob.objects.create(
            project=project, kind="reward", params={}, base_model="tiny", export=export,
            dedupe_key=f"{slug}-job")
        projects[slug] = project
        ids[slug] = {
            "project_id": [project.id], "prompt_id": [first.id, second.id, gold.id],
            "export_id": [export.id], "job_id": [job.id], "artifact_id": [artifact.id],
            "import_id": [imported.id],
            "user_id": [people[labeler].id, people[admin].id],
        }
    tokens = {name: Token.objects.create(user=people[name]).key for name in ("lena", "ada")}
    return {"projects": projects, "people": people, "ids": ids, "tokens": tokens}


def rows_of(project: Project, tables=None) -> dict[str, list]:
    """Every row that belongs to `project` (or those of `tables`), as plain values, in order."""
    querysets = {
        "project": Project.objects.filter(id=project.id),
        "memberships": Membership.objects.filter(project=project),
        "imports": PromptImport.objects.filter(project=project),
        "prompts": Prompt.objects.filter(project=project),
        "completions": Completion.objects.filter(prompt__project=project),
        "rankings": Ranking.objects.filter(prompt__project=project),
        "revisions": RankingRevision.objects.filter(ranking__prompt__project=project),
        "assignments": Assignment.objects.filter(prompt__project=project),
        "exports": Export.objects.filter(project=project),
        "jobs": TrainingJob.objects.filter(project=project),
        "models": ModelArtifact.objects.filter(project=project),
        "scores": CompletionScore.objects.filter(artifact__project=project),
    }
    return {name: list(qs.order_by("pk").values()) for name, qs in querysets.items()
            if tables is None or name in tables}


# What only a project's admins may change: settings, members, imports, exports, training.
ADMIN_TABLES = ("project", "memberships", "imports", "completions", "exports", "jobs",
                "models", "scores")


def admin_rows_of(project: Project) -> dict[str, list]:
    gold = Prompt.objects.filter(project=project).order_by("pk").values(
        "id", "gold_tiers", "gold_mode", "text", "messages", "extra_rankings")
    return rows_of(project, ADMIN_TABLES) | {"prompts": list(gold)}


def accounts(user_ids, passwords_may_change=()) -> list[dict]:
    """The accounts' fields; a password of `passwords_may_change` (accounts the role may set
    the password of: members of its own projects only, not staff) is left out."""
    fields = ("id", "username", "password", "is_active", "is_staff", "is_superuser", "email")
    rows = get_user_model().objects.filter(id__in=user_ids).order_by("id").values(*fields)
    return [{k: v for k, v in row.items() if k != "password" or row["id"] not in
             passwords_may_change} for row in rows]


# Whose password each role may set: Ada administers P1, where Lena labels and nothing else.
PASSWORDS_SET_BY = {"ada": ("lena",)}


def everything() -> dict:
    return {"projects": [rows_of(p) for p in Project.objects.order_by("id")],
            "users": accounts(get_user_model().objects.values("id"))}


# --- what each role may see and do -----------------------------------------------------------


def foreign_mentions(body, p2: Project) -> Iterator[object]:
    """Objects in a response body that belong to P2: a row with "project": P2, or P2 itself."""
    if isinstance(body, dict):
        if body.get("project") == p2.id or body.get("slug") == p2.slug:
            yield body
        for value in body.values():
            yield from foreign_mentions(value, p2)
    elif isinstance(body, list):
        for item in body:
            yield from foreign_mentions(item, p2)


def json_body(response):
    try:
        return json.loads(response.content or b"null")
    except ValueError:
        return None


def id_pool(world, name: str) -> list[int]:
    """Ids of P1's rows (twice: where most of the code is), P2's, and one of no row."""
    p1 = world["ids"]["p1"][name]
    return [*p1, *p1, *world["ids"]["p2"][name], MISSING_ID]


# Ids in request bodies that name another row: steered onto real rows of P1 and P2.
BODY_IDS = {"prompt": "prompt_id", "project": "project_id", "export": "export_id",
            "base_artifact": "artifact_id", "reward_artifact": "artifact_id"}


def steer_body(case, world, draw) -> set[int]:
    """Point the body's ids at real rows (or keep what was generated); return P2 ids used."""
    body = case.body
    used_p2: set[int] = set()
    if not isinstance(body, dict):
        return used_p2
    p2 = {i for values in world["ids"]["p2"].values() for i in values}
    for field, kind in BODY_IDS.items():
        if field in body and isinstance(body[field], int) and not isinstance(body[field], bool):
            body[field] = draw(st.sampled_from([*id_pool(world, kind), body[field]]))
            if body[field] in p2 and body[field] not in world["ids"]["p1"][kind]:
                used_p2.add(body[field])
    if "username" in body and isinstance(body["username"], str):  # someone else's account
        names = [user.username for user in world["people"].values()]
        body["username"] = draw(st.sampled_from([*names, body["username"]]))
    if "prompt_ids" in body and isinstance(body["prompt_ids"], list):
        body["prompt_ids"] = draw(st.lists(st.sampled_from(id_pool(world, "prompt_id")),
                                           min_size=1, max_size=4))
    if "items" in body and draw(st.booleans()):  # text a model can score, past the checks
        body["items"] = [{"prompt": "Hi?", "response": "Hello."}]
    prompt_id = body.get("prompt")
    if "tiers" in body and prompt_id in id_pool(world, "prompt_id") and draw(st.booleans()):
        completion_ids = list(Completion.objects.filter(prompt_id=prompt_id)
                              .values_list("id", flat=True))
        body["tiers"] = [[i] for i in draw(st.permutations(completion_ids))]
    return used_p2


def bypass_problems(role, label, response, world, names_p2: bool) -> list[str]:
    """What in this response an attacker in `role` should not have got."""
    code = response.status_code
    ok = 200 <= code < 300
    problems = []
    if role == "anonymous":
        if label not in PUBLIC and code != 401:
            problems.append(f"anonymous got {code}, not 401")
        return problems
    if ok and names_p2:
        problems.append(f"{role} got {code} on a P2 object")
    if ok and label in STAFF_OPERATIONS:
        problems.append(f"{role} (not staff) got {code}")
    if ok and role == "lena" and label not in LABELER_OPERATIONS | PUBLIC:
        if label in EMPTY_LISTS_FOR_LABELERS and json_body(response) == []:
            pass
        else:
            problems.append(f"a labeler got {code} on an admin operation")
    if ok:
        leaked = list(foreign_mentions(json_body(response), world["projects"]["p2"]))
        if leaked:
            problems.append(f"{role} was shown P2 rows: {leaked[:2]}")
    return problems


# --- the fuzz test -------------------------------------------------------------------------


@pytest.mark.parametrize("label", sorted(OPERATIONS))
@pytest.mark.parametrize("role", ROLES)
def test_no_server_error_and_no_bypass(role, label, world, db):
    operation = OPERATIONS[label]
    p1, p2 = world["projects"]["p1"], world["projects"]["p2"]
    headers = {} if role == "anonymous" else {"Authorization": f"Token {world['tokens'][role]}"}
    path_names = [p.name for p in operation.path_parameters]
    existing_users = list(get_user_model().objects.values_list("id", flat=True))
    modes = st.sampled_from([GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
    json_body = any(body.media_type == "application/json" for body in operation.body)

    # Any change to these is a failure, so one snapshot before the first request serves all.
    settable = [world["people"][name].id for name in PASSWORDS_SET_BY.get(role, ())]
    p2_rows, accounts_before = rows_of(p2), accounts(existing_users, settable)
    p1_admin_rows = admin_rows_of(p1) if role == "lena" else None
    everything_before = everything() if role == "anonymous" else None

    @settings(max_examples=EXAMPLES[role], deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(data=st.data())
    def request_once(data):
        path = {name: data.draw(st.sampled_from(id_pool(world, name)), label=name)
                for name in path_names}
        mode = data.draw(modes)
        # Half the bodies as JSON: a form cannot carry the nested ones to the deeper code.
        media_type = data.draw(st.sampled_from([None, "application/json"])) if json_body else None
        case = data.draw(operation.as_strategy(mode, path_parameters=path,
                                               media_type=media_type))
        names_p2 = any(value not in world["ids"]["p1"][name]
                       and value in world["ids"]["p2"][name] for name, value in path.items())
        if mode == GenerationMode.POSITIVE:  # a negative body stays as made: it must be refused
            names_p2 |= bool(steer_body(case, world, data.draw))
        _exceptions.clear()
        response = case.call(headers=headers)
        errors = [f"{type(exc).__name__}: {exc}" for exc in _exceptions if exc is not None]
        assert response.status_code < 500, f"{label} answered {response.status_code}: {errors}"
        assert bypass_problems(role, label, response, world, names_p2) == []
        if role != "anonymous":  # anonymous requests are all 401: checked once, at the end
            assert rows_of(p2) == p2_rows, f"{role} changed P2 rows"
            assert accounts(existing_users, settable) == accounts_before, (
                f"{role} changed an account")
        if role == "lena":
            assert admin_rows_of(p1) == p1_admin_rows, "a labeler changed P1's admin data"
        # Every status answered is documented (issue 18, item 6: the 4xx were not).
        checks = [not_a_server_error, status_code_conformance, content_type_conformance,
                  response_schema_conformance]
        if not (case.media_type or "").startswith(FORM_TYPES):
            # In a form, DRF reads a blank field as one not sent (browsers send them all),
            # so a form's blank `role` is the default role, not invalid data.
            checks.append(negative_data_rejection)
        case.validate_response(response, checks=checks, headers=headers)

    request_once()
    if role == "anonymous":
        assert everything() == everything_before, "anonymous requests changed rows"
