"""The project page's export form shows the settings the project's mode's export reads, and
only those: a demonstrate project's export has no votes, agreement or ties to set (issue 17).

Carol administers one project of each mode.
"""

import re

import pytest

from annotate import services
from annotate.models import Export

pytestmark = pytest.mark.django_db

RANKING_ONLY = ("min_agreement", "tie_policy", "include_imported", "weight_by_reliability")


@pytest.fixture
def projects(make_user):
    carol = make_user("carol")
    made = {}
    for mode in ("rank", "rate", "demonstrate"):
        made[mode] = services.project_create(
            created_by=carol, slug=f"{mode}-project", name=mode.title(), criterion="helpfulness",
            completions_per_prompt=2, labelers_per_prompt=2, annotation_mode=mode)
    return carol, made


def export_fields(client, project) -> set[str]:
    page = client.get(f"/projects/{project.slug}/").content.decode()
    form = re.search(r'action="/projects/[^"]+/exports/">(.*?)</form>', page, re.S).group(1)
    return set(re.findall(r'name="(\w+)"', form)) - {"csrfmiddlewaretoken"}


def test_each_mode_shows_the_settings_its_export_reads(projects, client):
    carol, made = projects
    client.force_login(carol)
    assert export_fields(client, made["rank"]) == {
        "min_votes", "test_fraction", "seed", "exclude_flagged", "formats", *RANKING_ONLY}
    assert export_fields(client, made["rate"]) == {
        "min_votes", "max_spread", "test_fraction", "seed", "exclude_flagged", "formats"}
    assert export_fields(client, made["demonstrate"]) == {"test_fraction", "seed", "formats"}


def test_the_rate_form_starts_from_the_projects_max_spread(projects, client):
    carol, made = projects
    services.project_update(project=made["rate"], consensus_max_spread=1.5)
    client.force_login(carol)
    page = client.get(f"/projects/{made['rate'].slug}/").content.decode()
    assert re.search(r'name="max_spread" value="1.5"', page)


def post_export(client, project, **fields):
    data = {"test_fraction": "0.2", "seed": "7", "formats": ["trl-jsonl"], **fields}
    return client.post(f"/projects/{project.slug}/exports/", data)


def test_a_rate_export_takes_the_max_spread_from_the_form(projects, client):
    carol, made = projects
    client.force_login(carol)
    post_export(client, made["rate"], min_votes="1", max_spread="0.5")
    params = Export.objects.get(project=made["rate"]).params
    assert params["max_spread"] == 0.5 and params["min_votes"] == 1
    assert params["test_fraction"] == 0.2 and params["seed"] == 7


def test_a_negative_max_spread_is_refused_on_its_field(projects, client):
    carol, made = projects
    client.force_login(carol)
    page = post_export(client, made["rate"], min_votes="1", max_spread="-1").content.decode()
    errors = re.search(r'id="id_max_spread_error"[^>]*>(.*?)</ul>', page, re.S)
    assert errors and "greater than or equal to 0" in errors.group(1)
    assert not Export.objects.exists()


def test_a_demonstrate_export_ignores_ranking_settings_posted_anyway(projects, client):
    carol, made = projects
    client.force_login(carol)
    post_export(client, made["demonstrate"], min_votes="abc", tie_policy="nonsense")
    export = Export.objects.get(project=made["demonstrate"])
    assert export.params["test_fraction"] == 0.2 and export.params["seed"] == 7
