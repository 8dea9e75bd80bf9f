"""Who sees what: a labeler sees only their projects; everything else answers 404."""

import pytest

from annotate.models import Membership, Project

pytestmark = pytest.mark.django_db


def test_a_labeler_lists_only_their_projects(project, other_project, alice, dave, api):
    names = [p["slug"] for p in api(alice).get("/api/projects/").json()["results"]]
    assert names == ["helpful"]
    names = [p["slug"] for p in api(dave).get("/api/projects/").json()["results"]]
    assert names == ["harmless"]


def test_a_superuser_sees_every_project_as_admin(project, other_project, root, api):
    results = api(root).get("/api/projects/").json()["results"]
    assert [(p["slug"], p["role"]) for p in results] == [
        ("harmless", "admin"),
        ("helpful", "admin"),
    ]


def test_another_projects_detail_is_404_in_the_api_and_the_pages(
    project, other_project, alice, api, client
):
    assert api(alice).get(f"/api/projects/{project.id}/").json()["role"] == "labeler"
    assert api(alice).get(f"/api/projects/{other_project.id}/").status_code == 404
    assert api(alice).get("/api/projects/999999/").status_code == 404
    client.force_login(alice)
    assert client.get(f"/projects/{project.slug}/").status_code == 200
    assert client.get(f"/projects/{other_project.slug}/").status_code == 404
    assert (
        client.post(f"/projects/{other_project.slug}/members/", {"username": "x"}).status_code
        == 404
    )


def test_labelers_cannot_manage_their_own_project(project, alice, api, client):
    response = api(alice).post(f"/api/projects/{project.id}/members/", {"username": "mallory"})
    assert response.status_code == 403
    client.force_login(alice)
    assert (
        client.post(f"/projects/{project.slug}/members/", {"username": "mallory"}).status_code
        == 403
    )
    page = client.get(f"/projects/{project.slug}/")
    assert b"Import prompts" not in page.content and b"Add a member" not in page.content


def test_a_labeler_cannot_raise_their_own_role(project, alice, api):
    response = api(alice).post(
        f"/api/projects/{project.id}/members/", {"username": "alice", "role": "admin"}
    )
    assert response.status_code == 403
    assert Membership.objects.get(user=alice).role == "labeler"


def test_only_staff_create_projects(alice, root, api):
    body = {"name": "New", "slug": "new", "criterion": "honesty", "completions_per_prompt": 3}
    assert api(alice).post("/api/projects/", body).status_code == 403
    response = api(root).post("/api/projects/", body)
    assert response.status_code == 201 and response.json()["role"] == "admin"
    assert Project.objects.get(slug="new").memberships.get().user == root
    assert api(root).post("/api/projects/", body).status_code == 400  # slug taken


def test_project_create_validates_k(root, api):
    body = {"name": "New", "slug": "new", "criterion": "c", "completions_per_prompt": 12}
    response = api(root).post("/api/projects/", body)
    assert response.status_code == 400 and "completions_per_prompt" in response.json()


def test_an_admin_adds_labelers_creating_users_once(project, carol, api, django_user_model):
    url = f"/api/projects/{project.id}/members/"
    response = api(carol).post(url, {"username": "erin", "password": "a-long-password"})
    assert response.status_code == 201
    body = response.json()
    assert (body["username"], body["role"], body["created"], body["invitation"]) == (
        "erin", "labeler", True, None)
    assert django_user_model.objects.get(username="erin").check_password("a-long-password")
    again = api(carol).post(url, {"username": "erin"})
    assert again.status_code == 200
    assert (again.json()["created"], again.json()["message"]) == (
        False, "erin is already a labeler.")


def test_anonymous_users_get_401_from_the_api_and_the_login_page_from_pages(project, client):
    assert client.get("/api/projects/").status_code == 401
    response = client.get(f"/projects/{project.slug}/")
    assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")


def test_a_token_from_the_api_authenticates_until_the_user_is_deactivated(project, alice, client):
    response = client.post("/api/auth/token/", {"username": "alice", "password": "alice-pw"},
                           content_type="application/json")
    token = response.json()["token"]
    auth = {"HTTP_AUTHORIZATION": f"Token {token}"}
    assert client.get("/api/projects/", **auth).status_code == 200
    alice.is_active = False
    alice.save()
    assert client.get("/api/projects/", **auth).status_code == 401


def test_a_wrong_password_gets_no_token(alice, client):
    response = client.post("/api/auth/token/", {"username": "alice", "password": "nope"},
                           content_type="application/json")
    assert response.status_code == 400 and "token" not in response.json()


def test_the_openapi_schema_describes_the_endpoints(client):
    response = client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert response.status_code == 200
    paths = response.json()["paths"]
    for path in ("/api/auth/token/", "/api/projects/", "/api/projects/{project_id}/imports/"):
        assert path in paths


def test_login_page_logs_in_and_home_lists_the_projects(project, alice, client):
    assert b'name="password"' in client.get("/accounts/login/").content
    response = client.post(
        "/accounts/login/", {"username": "alice", "password": "alice-pw"}, follow=True
    )
    assert b"Helpfulness" in response.content


def test_healthz_answers_with_the_database_vendor(client):
    response = client.get("/healthz/")
    assert response.status_code == 200 and response.json()["status"] == "ok"
