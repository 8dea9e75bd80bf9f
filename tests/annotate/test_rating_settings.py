"""A project's annotation mode, rating scale and aspects: chosen on the create form, the
settings page and the API; checked (a scale of 2 to 10 points within 0..10, at most 6 distinct
aspect names of at most 40 characters); fixed once the project has rankings.

Carol administers the project; root (staff) creates projects.
"""

import re

import pytest
from django.forms.models import model_to_dict

from annotate import services
from annotate.forms import ProjectForm
from annotate.models import PROJECT_SETTINGS, Project, Prompt
from config.errors import Conflict, Invalid

pytestmark = pytest.mark.django_db

BAD_SETTINGS = [
    ({"rating_scale_min": 5, "rating_scale_max": 5}, "rating_scale_max",
     "must be above the lowest score (5)"),
    ({"rating_scale_min": 0, "rating_scale_max": 10}, "rating_scale_max",
     "a scale has at most 10 points"),
    ({"rating_scale_min": -1}, "rating_scale_min", "must be a whole number from 0 to 10"),
    ({"rating_scale_max": 11}, "rating_scale_max", "must be a whole number from 0 to 10"),
    ({"rating_aspects": ["a", "b", "c", "d", "e", "f", "g"]}, "rating_aspects",
     "at most 6 aspects; this names 7"),
    ({"rating_aspects": ["honesty", "Honesty"]}, "rating_aspects",
     "aspect 'Honesty' is named twice"),
    ({"rating_aspects": ["x" * 41]}, "rating_aspects", "aspect 1 is longer than 40 characters"),
    ({"rating_aspects": ["helpfulness", ""]}, "rating_aspects", "aspect 2 has no name"),
    ({"rating_aspects": "helpfulness"}, "rating_aspects", "must be a list of names"),
]


def settings_of(project: Project, **changes) -> dict:
    """The settings form's fields as the page posts them, with `changes`."""
    values = model_to_dict(project, fields=PROJECT_SETTINGS) | changes
    if isinstance(values["rating_aspects"], list):
        values["rating_aspects"] = ", ".join(values["rating_aspects"])
    return {name: value for name, value in values.items() if value is not False}


def rank_one(project: Project, labeler) -> None:
    prompt = Prompt.objects.create(project=project, text="Q")
    ids = [prompt.completions.create(position=i, text=f"A{i}").id for i in range(2)]
    services.assignment_next(project=project, labeler=labeler)
    if project.annotation_mode == Project.Mode.RATE:
        scores = {str(i): project.rating_scale_max for i in ids}
        services.ranking_submit(project=project, labeler=labeler, prompt_id=prompt.id,
                                scores=scores, idempotency_key="k")
    else:
        services.ranking_submit(project=project, labeler=labeler, prompt_id=prompt.id,
                                tiers=[[ids[0]], [ids[1]]], idempotency_key="k")


@pytest.fixture
def two_completions(db):
    return services.project_create(created_by=None, slug="pairs", name="Pairs",
                                   criterion="helpfulness", completions_per_prompt=2)


# --- the service --------------------------------------------------------------------------

@pytest.mark.parametrize("changes, field, message", BAD_SETTINGS)
def test_a_project_with_a_bad_scale_or_aspects_is_refused_naming_the_setting(
        changes, field, message):
    with pytest.raises(Invalid) as refused:
        services.project_create(created_by=None, slug="bad", name="Bad", criterion="c",
                                annotation_mode="rate", **changes)
    assert str(refused.value).startswith(f"{field}: ") and message in str(refused.value)
    assert refused.value.extra["field"] == field
    assert not Project.objects.filter(slug="bad").exists()


@pytest.mark.parametrize("changes, field, message", BAD_SETTINGS)
def test_a_bad_change_is_refused_and_nothing_changes(project, changes, field, message):
    with pytest.raises(Invalid, match=re.escape(message)):
        services.project_update(project=project, **changes)
    project.refresh_from_db()
    assert (project.rating_scale_min, project.rating_scale_max) == (1, 5)
    assert project.rating_aspects == []


def test_mode_scale_and_aspects_change_freely_until_the_first_ranking(two_completions,
                                                                       make_user):
    project = services.project_update(
        project=two_completions, annotation_mode="rate", rating_scale_min=1,
        rating_scale_max=10, rating_aspects=["helpfulness", "honesty"])
    assert project.annotation_mode == "rate" and project.rating_scale_max == 10
    project = services.project_update(project=project, rating_aspects=[])
    assert project.rating_aspects == []
    alice = make_user("alice")
    services.membership_set(project=project, user=alice, role="labeler")
    rank_one(project, alice)

    for name, value in [("annotation_mode", "rank"), ("rating_scale_min", 0),
                        ("rating_scale_max", 9), ("rating_aspects", ["honesty"])]:
        with pytest.raises(Conflict) as refused:
            services.project_update(project=project, **{name: value})
        assert refused.value.extra == {"field": name}
        assert "cannot change once the project has rankings" in str(refused.value)
    # The same values again are no change; other settings still change.
    project = services.project_update(project=project, annotation_mode="rate",
                                      rating_scale_max=10, criterion="honesty")
    assert project.criterion == "honesty"
    assert set(services.fixed_settings(project)) == {
        "completions_per_prompt", "annotation_mode", "rating_scale_min", "rating_scale_max",
        "rating_aspects"}


def test_a_rank_project_with_rankings_cannot_become_a_rate_project(two_completions,
                                                                     make_user):
    alice = make_user("alice")
    services.membership_set(project=two_completions, user=alice, role="labeler")
    rank_one(two_completions, alice)
    with pytest.raises(Conflict, match="The annotation mode cannot change"):
        services.project_update(project=two_completions, annotation_mode="rate")


# --- the pages ----------------------------------------------------------------------------

def test_the_create_form_takes_the_aspects_as_a_comma_separated_list(root, client):
    client.force_login(root)
    form = settings_of(Project(), name="Rated", slug="rated", criterion="helpfulness",
                       annotation_mode="rate", rating_scale_min=0, rating_scale_max=9,
                       rating_aspects=" helpfulness , honesty")
    response = client.post("/projects/new/", form)
    assert response.status_code == 302
    project = Project.objects.get(slug="rated")
    assert project.annotation_mode == "rate"
    assert (project.rating_scale_min, project.rating_scale_max) == (0, 9)
    assert project.rating_aspects == ["helpfulness", "honesty"]


def test_the_create_form_shows_what_is_wrong_beside_the_setting(root, client):
    client.force_login(root)
    form = settings_of(Project(), name="Rated", slug="rated", criterion="helpfulness",
                       annotation_mode="rate", rating_aspects="honesty, honesty")
    response = client.post("/projects/new/", form)
    assert response.status_code == 200
    assert response.context["form"].errors["rating_aspects"] == [
        "Aspect 'honesty' is named twice."]
    assert not Project.objects.filter(slug="rated").exists()
    assert ProjectForm().fields["rating_aspects"].required is False


def test_the_settings_page_changes_the_mode_then_shows_it_fixed(project, carol, client,
                                                                make_user):
    client.force_login(carol)
    url = f"/projects/{project.slug}/settings/"
    response = client.post(url, settings_of(project, annotation_mode="rate",
                                            rating_aspects="clarity"))
    assert response.status_code == 302
    project.refresh_from_db()
    assert project.annotation_mode == "rate" and project.rating_aspects == ["clarity"]
    page = client.get(url)
    assert page.context["form"].initial["rating_aspects"] == ["clarity"]
    assert 'value="clarity"' in page.content.decode()

    project = services.project_update(project=project, completions_per_prompt=2,
                                      rating_aspects=[])
    alice = make_user("alice")
    services.membership_set(project=project, user=alice, role="labeler")
    rank_one(project, alice)
    page = client.get(url)
    form = page.context["form"]
    for name in ("annotation_mode", "rating_scale_min", "rating_scale_max", "rating_aspects"):
        assert form.fields[name].disabled, name
    assert "cannot change once the project has rankings" in page.content.decode()
    # A post that tries anyway changes nothing: disabled fields keep the stored value.
    client.post(url, settings_of(project, annotation_mode="rank", rating_aspects="x"))
    project.refresh_from_db()
    assert project.annotation_mode == "rate" and project.rating_aspects == []


# --- the API ------------------------------------------------------------------------------

def test_the_api_creates_a_rate_project_and_refuses_a_bad_scale(root, api):
    client = api(root)
    created = client.post("/api/projects/", {
        "name": "Rated", "slug": "rated", "criterion": "helpfulness",
        "annotation_mode": "rate", "rating_scale_min": 1, "rating_scale_max": 7,
        "rating_aspects": ["helpfulness", "honesty"]}, format="json")
    assert created.status_code == 201
    body = created.json()
    assert (body["annotation_mode"], body["rating_scale_min"], body["rating_scale_max"]) == (
        "rate", 1, 7)
    assert body["rating_aspects"] == ["helpfulness", "honesty"]
    refused = client.post("/api/projects/", {
        "name": "Wide", "slug": "wide", "criterion": "c", "annotation_mode": "rate",
        "rating_scale_min": 0, "rating_scale_max": 10}, format="json")
    assert refused.status_code == 400
    assert refused.json()["field"] == "rating_scale_max"
    assert not Project.objects.filter(slug="wide").exists()


def test_the_api_patch_refuses_a_mode_change_after_rankings(two_completions, make_user, api):
    carol = make_user("carol")
    services.membership_set(project=two_completions, user=carol, role="admin")
    url = f"/api/projects/{two_completions.id}/"
    bad = api(carol).patch(url, {"rating_aspects": ["a", "A"]}, format="json")
    assert bad.status_code == 400 and bad.json()["field"] == "rating_aspects"
    changed = api(carol).patch(url, {"annotation_mode": "rate"}, format="json")
    assert changed.status_code == 200 and changed.json()["annotation_mode"] == "rate"
    alice = make_user("alice")
    services.membership_set(project=two_completions, user=alice, role="labeler")
    two_completions.refresh_from_db()
    rank_one(two_completions, alice)
    refused = api(carol).patch(url, {"annotation_mode": "rank"}, format="json")
    assert refused.status_code == 409 and refused.json()["field"] == "annotation_mode"
    assert "cannot change once the project has rankings" in refused.json()["detail"]
