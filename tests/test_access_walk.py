"""Walk every URL the app serves and try it as each persona, with every method.

The world: "helpful" (P1) and "harmless" (P2). alice labels P1 only, dave labels P2 only,
carol administers P1 only, root is the superuser. Each project has prompts, a lease, a
ranking, an export with its zip, a training job and a model. ROUTES classifies every URL
pattern of the URL conf; a pattern it does not know fails the walk, so a new page or
endpoint cannot go untested.
"""

import json
import re
from dataclasses import dataclass

import pytest
from django.apps import apps
from django.contrib.auth import get_user_model
from django.contrib.contenttypes.models import ContentType
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver
from rest_framework.authentication import SessionAuthentication, TokenAuthentication
from rest_framework.settings import api_settings
from rest_framework.views import APIView

from annotate import services
from annotate.authentication import ExpiringTokenAuthentication
from annotate.models import Export, Project, Prompt, PromptImport
from training.models import ModelArtifact, Round, TrainingJob
from training.services.rounds import DEFAULT_PLAN

pytestmark = pytest.mark.django_db

UNSAFE = ("POST", "PUT", "PATCH", "DELETE")
METHODS = ("GET", *UNSAFE)


@dataclass(frozen=True)
class Route:
    """Who may use a URL pattern and the methods its view takes.

    access: "public" (anyone), "user" (any logged-in user, no object), "staff", "labeler"
    (any member of the object's project) or "admin" (the project's admins).
    admin_methods: those of a "labeler" route that only its admins may use (PATCH a project).
    """

    access: str
    methods: tuple[str, ...]
    api: bool = False
    admin_methods: tuple[str, ...] = ()

    def for_admins(self, method: str) -> bool:
        return self.access == "admin" or method in self.admin_methods


def page(access: str, *methods: str) -> Route:
    return Route(access, methods)


def api(access: str, *methods: str, admin_methods: tuple[str, ...] = ()) -> Route:
    return Route(access, (*methods, *admin_methods), api=True, admin_methods=admin_methods)


P = "projects/<slug:slug>/"
A = "api/projects/<int:project_id>/"
ROUTES = {
    # public
    "healthz/": page("public", "GET"),
    "accounts/login/": page("public", "GET", "POST"),
    "accounts/logout/": page("public", "POST"),
    # an invitation link: the signed token is the credential (tests/annotate/test_members.py)
    "accounts/invitation/<str:token>/": page("public", "GET", "POST"),
    "admin/login/": page("public", *METHODS),  # a redirect to accounts/login/
    "api/auth/token/": api("public", "POST"),
    "api/schema/": api("public", "GET"),
    "api/docs/": api("public", "GET"),  # Swagger UI, as public as the schema it shows
    "api/redoc/": api("public", "GET"),
    # lists and creation: no object in the URL, scoped by the user
    "": page("user", "GET"),
    "projects/new/": page("staff", "GET", "POST"),
    "api/projects/": api("user", "GET", "POST"),
    "api/training-jobs/": api("user", "GET", "POST"),
    "api/models/": api("user", "GET"),
    "api/models/catalog/": api("user", "GET"),  # base models: for admins of any project
    # a project's labeling: its members
    P: page("labeler", "GET"),
    P + "rank/": page("labeler", "GET"),
    P + "rank/<int:prompt_id>/": page("labeler", "GET"),
    P + "my-rankings/": page("labeler", "GET"),
    A: api("labeler", "GET", admin_methods=("PATCH",)),  # PATCH: change its settings
    A + "next-prompt/": api("labeler", "GET"),
    A + "rankings/": api("labeler", "POST"),
    A + "demonstrations/": api("labeler", "POST"),
    A + "skips/": api("labeler", "POST"),
    A + "prompts/<int:prompt_id>/lease/": api("labeler", "POST"),
    A + "progress/": api("labeler", "GET"),
    # a project's management: its admins
    P + "import/": page("admin", "POST"),
    P + "settings/": page("admin", "GET", "POST"),
    P + "members/": page("admin", "GET", "POST"),
    P + "members/<int:user_id>/": page("admin", "POST"),
    P + "exports/": page("admin", "POST"),
    P + "dashboard/": page("admin", "GET"),
    P + "dashboard/labelers/<str:username>/": page("admin", "GET"),
    # the prompt browser; its POSTs come after the labeling URLs, which the retire ends
    P + "prompts/": page("admin", "GET"),
    P + "prompts/<int:prompt_id>/": page("admin", "GET"),
    P + "prompts/<int:prompt_id>/gold/": page("admin", "POST"),
    P + "prompts/<int:prompt_id>/retire/": page("admin", "POST"),
    P + "training/": page("admin", "GET", "POST"),
    P + "rounds/": page("admin", "GET", "POST"),
    P + "rounds/<int:number>/retry/": page("admin", "POST"),
    P + "rounds/<int:number>/cancel/": page("admin", "POST"),
    "training/jobs/<int:job_id>/": page("admin", "GET"),
    "training/jobs/<int:job_id>/cancel/": page("admin", "POST"),
    "training/models/<int:artifact_id>/": page("admin", "GET", "POST"),
    "training/models/<int:artifact_id>/score-project/": page("admin", "POST"),
    "training/models/<int:artifact_id>/request-more/": page("admin", "POST"),
    A + "members/": api("admin", "GET", "POST"),
    # Before the member's own URL: the walk's DELETE there removes the member.
    A + "members/<int:user_id>/password/": api("admin", "POST"),
    A + "members/<int:user_id>/invitation/": api("admin", "POST"),
    A + "members/<int:user_id>/": api("admin", "PATCH", "DELETE"),
    A + "imports/": api("admin", "POST"),
    A + "imports/<int:import_id>/": api("admin", "GET"),
    A + "prompts/<int:prompt_id>/gold/": api("admin", "PUT", "DELETE"),
    A + "exports/": api("admin", "GET", "POST"),
    A + "prompts/request-more/": api("admin", "POST"),
    "api/exports/<int:export_id>/": api("admin", "GET"),
    "api/exports/<int:export_id>/download/": api("admin", "GET"),
    "api/training-jobs/<int:job_id>/": api("admin", "GET"),
    "api/training-jobs/<int:job_id>/cancel/": api("admin", "POST"),
    "api/models/<int:artifact_id>/": api("admin", "GET"),
    "api/models/<int:artifact_id>/download/": api("admin", "GET"),
    "api/models/<int:artifact_id>/score/": api("admin", "POST"),
}
# The query a route needs to reach its object (without it, the answer is a 404 of its own).
QUERIES = {"api/models/<int:artifact_id>/download/": "?file=config.json"}
OBJECT_ROUTES = {route: spec for route, spec in ROUTES.items()
                 if spec.access in ("labeler", "admin")}


def url_patterns(resolver=None, prefix: str = "", namespace: str | None = None):
    """Yield (route, pattern, namespace) for every pattern of the URL conf, recursively."""
    for pattern in (resolver or get_resolver()).url_patterns:
        if isinstance(pattern, URLResolver):
            yield from url_patterns(pattern, prefix + str(pattern.pattern),
                                    pattern.namespace or namespace)
        else:
            assert isinstance(pattern, URLPattern)
            yield prefix + str(pattern.pattern), pattern, namespace


def app_patterns():
    return [(route, pattern) for route, pattern, ns in url_patterns() if ns != "admin"]


def admin_patterns():
    return [(route, pattern) for route, pattern, ns in url_patterns() if ns == "admin"]


def fill(route: str, values: dict) -> str:
    return ("/" + re.sub(r"<(?:\w+:)?(\w+)>", lambda m: str(values[m.group(1)]), route)
            + QUERIES.get(route, ""))


# --- the world ----------------------------------------------------------------------------


def furnish(project: Project, labeler, var_dir) -> dict:
    """Two prompts; the labeler ranked one and holds a lease on the other; an import, an
    export with its zip on disk, a training job and the model it made. Return the URL
    values."""
    for index in range(2):
        prompt = Prompt.objects.create(project=project, text=f"{project.slug} Q{index}")
        for position in range(project.completions_per_prompt):
            prompt.completions.create(position=position, text=f"answer {position}")
    ranked = services.assignment_next(project=project, labeler=labeler)
    ids = list(ranked.prompt.completions.values_list("id", flat=True))
    services.ranking_submit(project=project, labeler=labeler, prompt_id=ranked.prompt_id,
                            tiers=[[i] for i in ids], idempotency_key=f"{project.slug}-1")
    leased = services.assignment_next(project=project, labeler=labeler)
    export = Export.objects.create(project=project, version=1, status=Export.Status.SUCCEEDED,
                                   params={}, directory=f"exports/{project.slug}/v1")
    (var_dir / "exports" / project.slug).mkdir(parents=True)
    (var_dir / "exports" / project.slug / "v1.zip").write_bytes(b"PK\x05\x06" + b"\0" * 18)
    job = TrainingJob.objects.create(project=project, kind="reward", params={},
                                     base_model="tiny", dedupe_key=project.slug, export=export)
    artifact = ModelArtifact.objects.create(
        project=project, name="rm", version=1, kind="reward", base_model="tiny",
        path=f"models/{project.slug}/rm", job=job, export=export)
    (var_dir / artifact.path).mkdir(parents=True)
    (var_dir / artifact.path / "config.json").write_text("{}")  # a file to download
    imported = PromptImport.objects.create(project=project, filename=f"{project.slug}.jsonl",
                                           file_format="jsonl", status="succeeded")
    Round.objects.create(project=project, number=1, status=Round.Status.FAILED, export=export,
                         plan=DEFAULT_PLAN, error="reward model job failed")
    member = services.member_add(project=project, username=f"{project.slug}-member",
                                 password="member-password-1").user
    return {"slug": project.slug, "project_id": project.id, "prompt_id": leased.prompt_id,
            "job_id": job.id, "artifact_id": artifact.id, "export_id": export.id,
            "import_id": imported.id, "number": 1, "user_id": member.id, "token": "no-token",
            "username": labeler.username}


@pytest.fixture
def world(project, other_project, alice, carol, dave, root, settings, tmp_path):
    settings.VAR_DIR = tmp_path
    return {"P1": furnish(project, alice, tmp_path), "P2": furnish(other_project, dave, tmp_path)}


def client_of(user=None, **kwargs) -> Client:
    client = Client(**kwargs)
    if user is not None:
        client.force_login(user)
    return client


def attack_body(world) -> dict:
    """What a hostile request sends: every field any endpoint reads, aimed at P2 and at
    raising the sender's role."""
    p2 = world["P2"]
    prompt = Prompt.objects.get(id=p2["prompt_id"])
    return {
        "username": "alice", "role": "admin", "password": "hijacked-password-1",
        "prompt": p2["prompt_id"], "prompt_ids": [p2["prompt_id"]], "extra": 1,
        "tiers": [[c] for c in prompt.completions.values_list("id", flat=True)],
        "idempotency_key": "walk", "reason": "walk", "mode": "ranking",
        "project": p2["project_id"], "kind": "reward", "export": p2["export_id"],
        "base_model": "tiny", "items": [{"prompt": "p", "response": "r"}],
        "name": "x", "slug": "walked", "criterion": "x", "form": "reward",
        "response": "r", "alpha": 1, "is_frozen": True,
    }


def send(client: Client, method: str, url: str, spec: Route, body: dict | None = None):
    if spec.api:
        return client.generic(method, url, json.dumps(body or {}),
                              content_type="application/json")
    if method == "GET":
        return client.get(url)
    if method == "POST":
        return client.post(url, {k: v for k, v in (body or {}).items()
                                 if not isinstance(v, list | dict)})
    return client.generic(method, url)


def snapshot() -> dict:
    """Every row of the app's tables and of the users, all columns."""
    models = [*apps.get_app_config("annotate").get_models(),
              *apps.get_app_config("training").get_models(), get_user_model()]
    return {(model._meta.label, row.pk): {f.attname: getattr(row, f.attname)
                                          for f in model._meta.concrete_fields}
            for model in models for row in model.objects.all()}


# --- the table covers the URL conf --------------------------------------------------------


def test_every_url_pattern_is_classified():
    routes = [route for route, _ in app_patterns()]
    unknown = sorted(set(routes) - set(ROUTES))
    assert not unknown, f"classify these URL patterns in ROUTES: {unknown}"
    assert sorted(set(ROUTES) - set(routes)) == [], "ROUTES names patterns that are gone"
    assert len(routes) == len(set(routes))
    admin_routes = [route for route, _ in admin_patterns()]
    assert admin_routes and all(route.startswith("admin/") for route in admin_routes)


# --- foreign objects: 404, and nothing changes --------------------------------------------


@pytest.mark.parametrize("persona", ["alice", "carol"])
def test_nothing_of_another_project_is_reachable_and_nothing_changes(world, request, persona):
    """alice labels P1 and carol administers it; neither reaches anything of P2."""
    client = client_of(request.getfixturevalue(persona))
    body = attack_body(world)
    before = snapshot()
    for route, spec in OBJECT_ROUTES.items():
        url = fill(route, world["P2"])
        for method in METHODS:
            response = send(client, method, url, spec, body)
            expected = 404 if method in spec.methods else 405
            assert response.status_code == expected, (persona, method, url)
    assert snapshot() == before


@pytest.mark.parametrize("persona", ["alice", "carol"])
def test_a_prompt_of_another_project_is_404_in_your_own_projects_urls(world, request, persona):
    client, body = client_of(request.getfixturevalue(persona)), attack_body(world)
    mixed = {**world["P1"], "prompt_id": world["P2"]["prompt_id"]}
    before = snapshot()
    for route, spec in OBJECT_ROUTES.items():
        if "<int:prompt_id>" not in route:
            continue
        if spec.access == "admin" and persona == "alice":
            continue  # 403 before any prompt is looked up: see the labeler test below
        for method in spec.methods:
            response = send(client, method, fill(route, mixed), spec, body)
            assert response.status_code == 404, (persona, method, route)
    assert snapshot() == before


def test_the_walk_reaches_real_objects(world, dave, root):
    """The control: the same URLs answer P2's own people. dave, who labels P2, uses its
    labeling URLs (and gets 403 from its admin URLs); root, the superuser, the admin ones."""
    as_dave, as_root = client_of(dave), client_of(root)
    for route, spec in OBJECT_ROUTES.items():
        url = fill(route, world["P2"])
        for method in spec.methods:
            reacher = as_root if spec.for_admins(method) else as_dave
            status = send(reacher, method, url, spec).status_code
            if method == "GET":
                assert status in (200, 204, 302), (url, status)
            else:  # an empty body: refused as invalid, or done; never not found or denied
                assert status not in (401, 403, 404, 405) and status < 500, (method, url, status)
            if spec.for_admins(method):
                assert send(as_dave, method, url, spec).status_code == 403, (method, url)


# --- a labeler and an anonymous client on admin endpoints ---------------------------------


def test_a_labeler_gets_403_from_every_admin_endpoint_of_their_own_project(world, alice):
    client, body = client_of(alice), attack_body(world)
    before = snapshot()
    for route, spec in ROUTES.items():
        url = fill(route, world["P1"])
        for method in spec.methods:
            if spec.access != "staff" and not spec.for_admins(method):
                continue
            response = send(client, method, url, spec, body)
            assert response.status_code == 403, (method, url)
    assert snapshot() == before


def test_anonymous_clients_get_401_from_the_api_and_the_login_page_from_pages(world):
    client, body = Client(), attack_body(world)
    before = snapshot()
    for route, spec in ROUTES.items():
        if spec.access == "public":
            continue
        url = fill(route, world["P2"])
        for method in METHODS:
            response = send(client, method, url, spec, body)
            if spec.api:
                assert response.status_code == 401, (method, url)
                assert response["WWW-Authenticate"] == "Token"
            else:
                assert response.status_code == 302, (method, url)
                assert response["Location"].startswith("/accounts/login/?next=/")
    assert snapshot() == before


def admin_url(route: str, world) -> str:
    """An admin URL aimed at P2's object of the model the route is about."""
    parts = route.split("/")
    pk = world["P2"]["project_id"]
    try:
        model = apps.get_model(parts[1], parts[2])
    except (LookupError, ValueError, IndexError):
        model = None
    if model is not None:
        found = model.objects.order_by("-pk").first()
        pk = found.pk if found else pk
    route = route.replace("<path:content_type_id>",
                          str(ContentType.objects.get_for_model(Project).id))
    route = re.sub(r"<(?:\w+:)?\w+>", str(pk), route)
    route = re.sub(r"\^\(\?P<app_label>[^)]*\)/\$", "annotate/", route)
    return "/" + route.replace("(?P<url>.*)$", "annotate/nowhere/")


def test_a_labeler_and_an_anonymous_client_get_no_admin_page(world, alice, root):
    body = attack_body(world)
    as_alice, anonymous = client_of(alice), Client()
    before = snapshot()
    for client, methods in ((as_alice, ("GET", "POST")), (anonymous, ("GET",))):
        for route, _ in admin_patterns():
            url = admin_url(route, world)
            for method in methods:
                response = send(client, method, url, page("staff", method), body)
                assert response.status_code == 302, (method, url)
                location = response["Location"].split("?")[0]
                assert location in ("/admin/login/", "/accounts/login/", "/admin/"), url
    assert snapshot() == before
    assert client_of(root).get("/admin/").status_code == 200  # the control


# --- lists --------------------------------------------------------------------------------


def test_lists_show_no_rows_of_another_project(world, alice, carol):
    p1, p2 = world["P1"], world["P2"]
    for persona in (alice, carol):
        client = client_of(persona)
        projects = client.get("/api/projects/").json()["results"]
        assert [p["id"] for p in projects] == [p1["project_id"]]
        assert b"Harmlessness" not in client.get("/").content
        mine = client.get(f"/projects/{p1['slug']}/my-rankings/").content.decode()
        assert "harmless Q" not in mine
    as_carol = client_of(carol)
    assert [j["id"] for j in as_carol.get("/api/training-jobs/").json()] == [p1["job_id"]]
    assert [m["id"] for m in as_carol.get("/api/models/").json()] == [p1["artifact_id"]]
    exports = as_carol.get(f"/api/projects/{p1['project_id']}/exports/").json()
    assert [e["id"] for e in exports] == [p1["export_id"]]
    training = as_carol.get(f"/projects/{p1['slug']}/training/").content.decode()
    assert f"/training/jobs/{p1['job_id']}/" in training
    assert f"/training/jobs/{p2['job_id']}/" not in training
    assert f"/training/models/{p2['artifact_id']}/" not in training
    as_alice = client_of(alice)  # a labeler administers nothing: empty, not P2's
    assert as_alice.get("/api/training-jobs/").json() == []
    assert as_alice.get("/api/models/").json() == []
    for url in (f"/api/training-jobs/?project={p2['project_id']}",
                f"/api/models/?project={p2['project_id']}"):
        assert as_carol.get(url).status_code == 404


# --- one place for scoping ----------------------------------------------------------------


def test_views_find_objects_only_through_the_selectors():
    """No view or endpoint module looks a model up itself, except by a project it got from
    the selectors (training's job-create input: an export or model of that project)."""
    import inspect

    from annotate import apis as annotate_apis
    from annotate import project_admin_apis, project_admin_views
    from annotate import views as annotate_views
    from training import apis as training_apis
    from training import views as training_views

    lookup = re.compile(r"\b(\w+)\.objects\.(get|filter|exclude|all)\(|get_object_or_404\(")
    allowed = {annotate_apis: ["Project.objects.filter("]}  # is a new slug taken, by any project
    for module in (annotate_views, annotate_apis, training_views, project_admin_views,
                   project_admin_apis):
        found = [m.group(0) for m in lookup.finditer(inspect.getsource(module))]
        assert found == allowed.get(module, []), (module.__name__, found)
    source = inspect.getsource(training_apis)
    for call in re.findall(r"get_object_or_404\((.*?)\)", source, flags=re.S):
        assert "project=project" in call, call


# --- CSRF ---------------------------------------------------------------------------------


def test_every_write_without_a_csrf_token_is_refused_to_a_logged_in_admin(world, root):
    """root, logged in by session, sends every unsafe method to every URL without the token:
    403 everywhere, pages and API alike (DRF views are csrf_exempt and rely on
    SessionAuthentication's own check: this proves it runs)."""
    client = client_of(root, enforce_csrf_checks=True)
    body = attack_body(world)
    before = snapshot()
    urls = [(fill(route, world["P2"]), ROUTES[route], UNSAFE) for route, _ in app_patterns()]
    # The admin's views all go through the same middleware check: POST stands for the rest.
    urls += [(admin_url(route, world), page("staff"), ("POST",))
             for route, _ in admin_patterns()]
    for url, spec, methods in urls:
        for method in methods:
            response = send(client, method, url, spec, body)
            assert response.status_code == 403, (method, url, response.status_code)
    assert snapshot() == before


def test_with_the_token_the_same_writes_go_through(world, root):
    client = client_of(root, enforce_csrf_checks=True)
    client.get("/accounts/login/")
    token = client.cookies["csrftoken"].value
    body = {"name": "N", "slug": "with-token", "criterion": "c"}
    response = client.post("/api/projects/", body, content_type="application/json",
                           HTTP_X_CSRFTOKEN=token)
    assert response.status_code == 201
    response = client.post(f"/projects/{world['P1']['slug']}/members/",
                           {"username": "erin", "role": "labeler", "password": "erin-password-1",
                            "csrfmiddlewaretoken": token})
    assert response.status_code == 302


def test_logging_in_needs_the_csrf_token(alice):
    client = Client(enforce_csrf_checks=True)
    credentials = {"username": "alice", "password": "alice-pw"}
    assert client.post("/accounts/login/", credentials).status_code == 403
    client.get("/accounts/login/")
    credentials["csrfmiddlewaretoken"] = client.cookies["csrftoken"].value
    assert client.post("/accounts/login/", credentials).status_code == 302


def test_no_view_is_csrf_exempt_except_api_views_that_check_it_themselves():
    for route, pattern in [*app_patterns(), *admin_patterns()]:
        callback = pattern.callback
        if not getattr(callback, "csrf_exempt", False):
            continue
        view_class = getattr(callback, "cls", None)
        assert view_class is not None and issubclass(view_class, APIView), route
        for authentication in view_class.authentication_classes:
            assert issubclass(authentication, SessionAuthentication | TokenAuthentication)
            if issubclass(authentication, SessionAuthentication):
                assert authentication.enforce_csrf is SessionAuthentication.enforce_csrf, route


def test_settings_have_no_csrf_off_switch(settings):
    assert "django.middleware.csrf.CsrfViewMiddleware" in settings.MIDDLEWARE
    assert api_settings.DEFAULT_AUTHENTICATION_CLASSES == [ExpiringTokenAuthentication,
                                                           SessionAuthentication]
    assert issubclass(ExpiringTokenAuthentication, TokenAuthentication)
    assert not any(origin.rstrip("/").endswith("://*") for origin in
                   settings.CSRF_TRUSTED_ORIGINS)
    assert settings.CSRF_FAILURE_VIEW == "django.views.csrf.csrf_failure"
