"""Well-formed requests that must still be refused: ranking what is not yours, raising your
own role, and filtering or ordering by fields nobody listed.

alice and bob label "helpful", carol administers it, dave labels "harmless" only, root is
the superuser.
"""

import pytest
from django.forms.models import model_to_dict

from annotate import services
from annotate.models import Assignment, Membership, Project, Prompt, Ranking
from training.models import ModelArtifact, TrainingJob

pytestmark = pytest.mark.django_db


def add_prompts(project, count: int) -> list[Prompt]:
    prompts = []
    for index in range(count):
        prompt = Prompt.objects.create(project=project, text=f"{project.slug} Q{index}")
        for position in range(project.completions_per_prompt):
            prompt.completions.create(position=position, text=f"answer {position}")
        prompts.append(prompt)
    return prompts


def ranking_of(prompt: Prompt, key: str) -> dict:
    ids = list(prompt.completions.values_list("id", flat=True))
    return {"prompt": prompt.id, "tiers": [[i] for i in ids], "idempotency_key": key}


@pytest.fixture
def bob(make_user, project):
    user = make_user("bob")
    services.membership_set(project=project, user=user, role=Membership.Role.LABELER)
    return user


@pytest.fixture
def leases(project, other_project, alice, bob, dave):
    """bob holds a lease on helpful's first prompt, the second is leased to no one, and dave
    holds one on harmless's prompt."""
    helpful = add_prompts(project, 2)
    (harmless,) = add_prompts(other_project, 1)
    project.labelers_per_prompt = 1  # so bob's lease takes the first prompt's only slot
    project.save()
    assert services.assignment_next(project=project, labeler=bob).prompt_id == helpful[0].id
    assert services.assignment_next(project=other_project, labeler=dave).prompt_id == harmless.id
    return {"bobs": helpful[0], "free": helpful[1], "daves": harmless}


def labeling_state() -> list[dict]:
    rows = [*Assignment.objects.order_by("id"), *Ranking.objects.order_by("id"),
            *Prompt.objects.order_by("id")]
    return [model_to_dict(row) for row in rows]


# --- submitting only what is leased to you ------------------------------------------------


@pytest.mark.parametrize("whose", ["bobs", "free", "daves"])
def test_alice_cannot_rank_skip_renew_or_open_a_prompt_not_leased_to_her(
        project, alice, api, client, leases, whose):
    prompt = leases[whose]
    before = labeling_state()
    as_alice = api(alice)
    base = f"/api/projects/{project.id}/"
    submitted = as_alice.post(base + "rankings/", ranking_of(prompt, "k1"), format="json")
    skipped = as_alice.post(base + "skips/", {"prompt": prompt.id, "reason": "no"})
    renewed = as_alice.post(base + f"prompts/{prompt.id}/lease/")
    for response in (submitted, skipped, renewed):
        assert response.status_code == 404
        expected = ("No such prompt in this project." if whose == "daves"
                    else "This prompt is not leased to you.")
        assert response.json() == {"detail": expected}
    client.force_login(alice)
    assert client.get(f"/projects/{project.slug}/rank/{prompt.id}/").status_code == 404
    assert labeling_state() == before


def test_alice_cannot_rank_in_a_project_she_is_not_in(other_project, alice, api, leases):
    before = labeling_state()
    url = f"/api/projects/{other_project.id}/rankings/"
    response = api(alice).post(url, ranking_of(leases["daves"], "k1"), format="json")
    assert response.status_code == 404 and response.json() == {"detail": "No such project."}
    assert labeling_state() == before


def test_a_ranking_is_the_senders_whatever_the_body_says(project, alice, carol, api, leases):
    lease = services.assignment_next(project=project, labeler=alice)
    body = ranking_of(lease.prompt, "k1") | {
        "labeler": carol.id, "labeler_id": carol.id, "source": "imported", "revision": 7,
        "role": "admin"}
    response = api(alice).post(f"/api/projects/{project.id}/rankings/", body, format="json")
    assert response.status_code == 201
    ranking = Ranking.objects.get()
    assert (ranking.labeler, ranking.source, ranking.revision) == (alice, "labeler", 1)
    assert Membership.objects.get(user=alice).role == "labeler"


# --- no raising your own role -------------------------------------------------------------


def test_a_labeler_cannot_make_herself_admin_by_any_field(project, alice, api, client):
    project_before = model_to_dict(Project.objects.get(id=project.id))
    as_alice = api(alice)
    members = f"/api/projects/{project.id}/members/"
    assert as_alice.post(members, {"username": "alice", "role": "admin"}).status_code == 403
    for method, refused in (("put", 405), ("patch", 403)):
        response = getattr(as_alice, method)(
            f"/api/projects/{project.id}/",
            {"role": "admin", "labelers_per_prompt": 1, "is_frozen": True}, format="json")
        assert response.status_code == refused
    body = {"name": "Mine", "slug": "mine", "criterion": "c", "role": "admin"}
    assert as_alice.post("/api/projects/", body).status_code == 403
    client.force_login(alice)
    response = client.post(f"/projects/{project.slug}/members/",
                           {"username": "alice", "role": "admin"})
    assert response.status_code == 403
    assert Membership.objects.get(user=alice).role == "labeler"
    assert model_to_dict(Project.objects.get(id=project.id)) == project_before
    alice.refresh_from_db()
    assert not alice.is_staff and not alice.is_superuser
    assert not Project.objects.filter(slug="mine").exists()


def test_an_admin_cannot_reach_into_another_project_or_raise_herself_site_wide(
        project, other_project, carol, root, dave, api, django_user_model):
    as_carol = api(carol)
    url = f"/api/projects/{other_project.id}/members/"
    assert as_carol.post(url, {"username": "carol", "role": "admin"}).status_code == 404
    assert not other_project.memberships.filter(user=carol).exists()
    members = f"/api/projects/{project.id}/members/"
    body = {"username": "carol", "role": "admin", "is_staff": True, "is_superuser": True}
    assert as_carol.post(members, body).status_code == 200  # a member already: unchanged
    carol.refresh_from_db()
    assert not carol.is_staff and not carol.is_superuser


def test_adding_an_existing_user_with_a_password_does_not_take_over_their_account(
        project, carol, root, dave, api, client):
    """carol administers helpful: adding root or dave with a password of her choosing used
    to set it, so any project's admin could log in as the superuser."""
    for victim in (root, dave):
        body = {"username": victim.username, "password": "carols-password-1"}
        response = api(carol).post(f"/api/projects/{project.id}/members/", body)
        assert response.status_code == 201 and response.json()["created"] is False
        assert response.json()["invitation"] is None
        victim.refresh_from_db()
        assert victim.check_password(f"{victim.username}-pw")
        assert not victim.check_password("carols-password-1")
    assert not client.login(username="root", password="carols-password-1")
    client.force_login(carol)
    client.post(f"/projects/{project.slug}/members/",
                {"username": "dave", "role": "labeler", "password": "carols-password-2"})
    dave.refresh_from_db()
    assert dave.check_password("dave-pw")


# --- filters and ordering take only listed fields -----------------------------------------

UNLISTED = [
    "project__created_by__password__startswith=md5",
    "project__created_by__password__startswith=pbkdf2",
    "ordering=-user__password",
    "ordering=project__memberships__user__password",
    "created_by__username=root",
    "project__memberships__user__username=dave",
    "memberships__user__password__regex=.",
    "search=harmless",
    "id__in=1,2,3",
]


@pytest.fixture
def registry(project, other_project, carol, root):
    """A job and a model in each project, created by root (whose password hash is md5)."""
    for each in (project, other_project):
        job = TrainingJob.objects.create(project=each, kind="reward", params={},
                                         base_model="tiny", dedupe_key="k", created_by=root)
        ModelArtifact.objects.create(project=each, name="rm", version=1, kind="reward",
                                     base_model="tiny", path="m", job=job)
        services.export_create(project=each, params=services.ExportParams(),
                               created_by=root)
    return project


@pytest.mark.parametrize("path", ["/api/projects/", "/api/training-jobs/", "/api/models/",
                                  "/api/projects/{id}/exports/"])
def test_unlisted_filter_and_ordering_parameters_are_not_applied(registry, carol, root, api,
                                                                 path):
    """The same answer with any of them as without: no filtering on a password's prefix,
    no ordering by one, no other project's rows."""
    path = path.format(id=registry.id)
    for user in (carol, root):
        client = api(user)
        plain = client.get(path)
        assert plain.status_code == 200
        for query in UNLISTED:
            response = client.get(f"{path}?{query}")
            assert response.status_code == 200, query
            assert response.json() == plain.json(), query


@pytest.mark.parametrize("path", ["/api/training-jobs/", "/api/models/"])
def test_the_project_filter_takes_an_id_of_a_project_you_administer(
        registry, other_project, carol, api, path):
    client = api(carol)
    mine = client.get(f"{path}?project={registry.id}").json()
    assert {row["project"] for row in mine} == {registry.id}
    for value in ("abc", "1.5", "1 OR 1=1", f"{registry.id}__gt", "1e3"):
        response = client.get(f"{path}?project={value}")
        assert response.status_code == 400, value
        assert "project" in response.json()
    assert client.get(f"{path}?project=").status_code == 400  # blank is not "every project"
    assert client.get(f"{path}?project={other_project.id}").status_code == 404


def test_pagination_numbers_are_bounded_or_refused_never_a_500(project, other_project, root,
                                                                api):
    client = api(root)
    everything = client.get("/api/projects/").json()
    assert everything["count"] == 2
    for query in ("limit=999999999999999999999", "limit=-1", "limit=abc", "offset=-5",
                  "offset=999999999999999999999", "offset=" + "9" * 5000, "limit=1e3"):
        response = client.get(f"/api/projects/?{query}")
        assert response.status_code in (200, 400), query
        if response.status_code == 400:
            assert query.split("=")[0] in response.json(), query
    huge = client.get("/api/projects/?limit=999999999999999999999")
    assert huge.status_code == 400 or huge.json()["results"] == everything["results"]
    assert client.get("/api/projects/?limit=1&offset=1").json()["results"] == (
        everything["results"][1:])


def test_no_view_builds_a_query_from_request_parameters():
    """Request parameters reach the ORM only through serializers or named keys: no
    `filter(**request...)` or `order_by(request...)` anywhere in the views."""
    import inspect
    import re

    from annotate import apis as annotate_apis
    from annotate import auth_views
    from annotate import views as annotate_views
    from training import apis as training_apis
    from training import views as training_views

    spread = re.compile(r"(filter|exclude|order_by|get|annotate|values)\(\s*\*{1,2}\s*"
                        r"(request|self\.request|data|params|query)")
    for module in (annotate_apis, annotate_views, training_apis, training_views, auth_views):
        source = inspect.getsource(module)
        assert not spread.search(source), module.__name__
        assert "order_by(request" not in source and "query_params.dict()" not in source
