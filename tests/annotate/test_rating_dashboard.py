"""The dashboard of a rate project: alpha (interval) overall and per aspect, and each
labeler's correlation with the others, checked against independent implementations."""

import io
import re

import numpy
import pytest
from krippendorff import alpha as reference_alpha

from annotate import services
from annotate.models import Project, Ranking
from annotate.rating_quality import project_rating_agreement
from annotate.ratings import tiers_from_scores
from tests.factories import jsonl_bytes, prompt_record

pytestmark = pytest.mark.django_db

ASPECTS = ("helpful", "honest")
# labeler -> prompt index -> (helpful, honest) per completion, in order; cat rates p0 only.
RATINGS = {
    "ann": {0: [(5, 4), (3, 3), (1, 2), (4, 4)], 1: [(2, 2), (5, 4), (3, 3), (1, 1)]},
    "ben": {0: [(4, 4), (3, 2), (2, 2), (5, 5)], 1: [(3, 2), (4, 4), (3, 4), (2, 1)]},
    "cat": {0: [(5, 5), (1, 2), (2, 1), (3, 3)]},
}


@pytest.fixture
def rated(project, make_user):
    Project.objects.filter(id=project.id).update(annotation_mode="rate",
                                                 rating_aspects=list(ASPECTS))
    project.refresh_from_db()
    services.prompts_import(project=project, filename="p.jsonl",
                            binary=io.BytesIO(jsonl_bytes([prompt_record(i) for i in range(2)])))
    prompts = list(project.prompts.order_by("id"))
    for username, by_prompt in RATINGS.items():
        labeler = make_user(username)
        for index, values in by_prompt.items():
            ids = prompts[index].completions.order_by("position").values_list("id", flat=True)
            scores = {str(cid): dict(zip(ASPECTS, pair, strict=True))
                      for cid, pair in zip(ids, values, strict=True)}
            Ranking.objects.create(prompt=prompts[index], labeler=labeler, scores=scores,
                                   tiers=tiers_from_scores(scores))
    return project


def reliability_matrix(score) -> numpy.ndarray:
    """Labelers x completions (p0's four, then p1's), NaN where a labeler did not rate."""
    rows = []
    for by_prompt in RATINGS.values():
        row = []
        for index in (0, 1):
            values = by_prompt.get(index)
            row += [score(pair) for pair in values] if values else [numpy.nan] * 4
        rows.append(row)
    return numpy.array(rows, dtype=float)


def expected_alpha(score) -> float:
    return reference_alpha(reliability_matrix(score), level_of_measurement="interval")


def expected_correlation(labeler_index: int) -> float:
    matrix = reliability_matrix(lambda pair: sum(pair) / 2)
    mine = matrix[labeler_index]
    others = numpy.delete(matrix, labeler_index, axis=0)
    shared = ~numpy.isnan(mine) & (numpy.sum(~numpy.isnan(others), axis=0) > 0)
    return numpy.corrcoef(mine[shared], numpy.nanmean(others[:, shared], axis=0))[0, 1]


def test_the_agreement_matches_independent_computations(rated):
    agreement = project_rating_agreement(rated)
    assert agreement.ratings == 5
    assert agreement.alpha == pytest.approx(expected_alpha(lambda pair: sum(pair) / 2))
    assert agreement.aspect_alphas == [
        ("helpful", pytest.approx(expected_alpha(lambda pair: pair[0]))),
        ("honest", pytest.approx(expected_alpha(lambda pair: pair[1]))),
    ]
    assert [(row.username, row.ratings, row.correlation.completions)
            for row in agreement.labelers] == [("ann", 2, 8), ("ben", 2, 8), ("cat", 1, 4)]
    for index, row in enumerate(agreement.labelers):
        assert row.correlation.pearson == pytest.approx(expected_correlation(index))


def test_the_dashboard_shows_the_numbers(rated, client, carol):
    client.force_login(carol)
    html = client.get(f"/projects/{rated.slug}/dashboard/").content.decode()
    section = html.split('<section class="card rating-agreement">')[1].split("</section>")[0]
    numbers = re.findall(r'<span class="number">([^<]+)</span>', section)
    assert numbers == [f"{expected_alpha(lambda pair: sum(pair) / 2):.3f}",
                       f"{expected_alpha(lambda pair: pair[0]):.3f}",
                       f"{expected_alpha(lambda pair: pair[1]):.3f}", "5"]
    assert "alpha (interval), honest" in section
    cells = [re.findall(r"<td>([^<]*)</td>", row) for row in section.split("<tr>")[2:]]
    assert cells == [[str(ratings), f"{expected_correlation(index):.3f}", str(shared)]
                     for index, (ratings, shared) in enumerate([(2, 8), (2, 8), (1, 4)])]


def test_a_rank_projects_dashboard_has_no_rating_section(project, client, carol):
    client.force_login(carol)
    html = client.get(f"/projects/{project.slug}/dashboard/").content.decode()
    assert "rating-agreement" not in html
    assert project_rating_agreement(project) is None


def test_a_rate_project_without_ratings_says_so(project, client, carol):
    Project.objects.filter(id=project.id).update(annotation_mode="rate")
    client.force_login(carol)
    html = client.get(f"/projects/{project.slug}/dashboard/").content.decode()
    assert "No ratings yet." in html
