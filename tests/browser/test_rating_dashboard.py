"""A rate project's dashboard in chromium: the rating agreement section reads at 1280 px."""

import pytest

from annotate import services
from annotate.models import Membership, Ranking
from annotate.ratings import tiers_from_scores
from tests.browser.conftest import screenshots
from tests.browser.test_dashboard import PASSWORD, log_in
from tests.browser.test_rank_page import make_project

expect = pytest.importorskip("playwright.sync_api").expect

pytestmark = pytest.mark.usefixtures("transactional_db")

# (helpful, honest) per completion of each of the two prompts.
RATINGS = {
    "ann": [[(5, 4), (3, 3), (1, 2), (4, 4)], [(2, 2), (5, 4), (3, 3), (1, 1)]],
    "ben": [[(4, 4), (3, 2), (2, 2), (5, 5)], [(3, 2), (4, 4), (3, 4), (2, 1)]],
    "cat": [[(5, 5), (1, 2), (2, 1), (3, 3)]],
}


def test_a_rate_projects_dashboard_shows_alpha_per_aspect_and_each_labeler(
        page, live_server, django_user_model):
    project = make_project("rated", annotation_mode="rate",
                           rating_aspects=["helpful", "honest"])
    tess = django_user_model.objects.create_user("tess", password=PASSWORD)
    services.membership_set(project=project, user=tess, role=Membership.Role.ADMIN)
    prompts = list(project.prompts.order_by("id"))
    for name, by_prompt in RATINGS.items():
        labeler = django_user_model.objects.create_user(name, password=PASSWORD)
        for prompt, values in zip(prompts, by_prompt, strict=False):
            ids = prompt.completions.order_by("position").values_list("id", flat=True)
            scores = {str(cid): {"helpful": a, "honest": b}
                      for cid, (a, b) in zip(ids, values, strict=True)}
            Ranking.objects.create(prompt=prompt, labeler=labeler, scores=scores,
                                   tiers=tiers_from_scores(scores))
    log_in(page, live_server, tess, f"/projects/{project.slug}/dashboard/")
    section = page.locator("section.rating-agreement")
    expect(section.locator(".stat .what")).to_have_text([
        "Krippendorff's alpha (interval), score", "alpha (interval), helpful",
        "alpha (interval), honest", "ratings"])
    expect(section.locator("tbody tr")).to_have_count(3)
    section.scroll_into_view_if_needed()
    screenshots(page, "rating-dashboard")
