"""Rate and demonstrate projects as their labelers and admins see them (issue 17): "My
ratings" with each completion's scores, "My demonstrations" with their sources, the finished
queue in the mode's words and the export form with only the mode's settings. In chromium
against the live server, with screenshots at 1280x720 and 1920x1080 under SCREENSHOT_DIR."""

import pytest

from annotate import services
from annotate.models import Assignment, Membership, Prompt
from annotate.ranking import display_order
from tests.browser.conftest import screenshots

expect = pytest.importorskip("playwright.sync_api").expect

pytestmark = pytest.mark.usefixtures("transactional_db")

PASSWORD = "nora-password-8841"
ANSWERS = ["Boil it for **seven** minutes, then cool it in cold water.",
           "Put it in the microwave.",
           "Simmer gently for 9 to 12 minutes; " + "more words " * 20]


def make_project(slug: str, mode: str, admin, **settings):
    project = services.project_create(
        created_by=None, slug=slug, name=slug.replace("-", " ").title(),
        criterion="helpfulness", completions_per_prompt=3, labelers_per_prompt=1,
        annotation_mode=mode, **settings)
    for index in range(2):
        prompt = Prompt.objects.create(project=project, text=f"How do I boil an egg, take {index}?")
        for position, text in enumerate(ANSWERS):
            prompt.completions.create(position=position, text=text)
    services.membership_set(project=project, user=admin, role=Membership.Role.ADMIN)
    return project


@pytest.fixture
def nora(django_user_model):
    return django_user_model.objects.create_user("nora", password=PASSWORD)


def log_in(page, live_server, user, next_path: str) -> None:
    page.goto(f"{live_server.url}/accounts/login/?next={next_path}")
    page.fill("#id_username", user.username)
    page.fill("#id_password", PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(f"{live_server.url}{next_path}")


def shown(prompt_id: int, user) -> list[int]:
    seed = Assignment.objects.get(prompt_id=prompt_id, labeler=user).seed
    ids = Prompt.objects.get(id=prompt_id).completions.values_list("id", flat=True)
    return display_order(list(ids), seed)


def test_my_ratings_and_the_rate_projects_pages(page, live_server, nora):
    project = make_project("egg-ratings", "rate", nora, rating_scale_min=1, rating_scale_max=5,
                           rating_aspects=["helpfulness", "honesty"])
    lease = services.assignment_next(project=project, labeler=nora)
    order = shown(lease.prompt_id, nora)
    scores = {str(cid): {"helpfulness": h, "honesty": o}
              for cid, (h, o) in zip(order, [(5, 4), (1, 2), (4, 4)], strict=True)}
    services.ranking_submit(project=project, labeler=nora, prompt_id=lease.prompt_id,
                            scores=scores, displayed_order=order, idempotency_key="r1")
    log_in(page, live_server, nora, f"/projects/{project.slug}/my-rankings/")
    expect(page.locator("h1")).to_have_text("Your ratings in Egg Ratings")
    rows = page.locator(f'li[data-prompt-id="{lease.prompt_id}"] tr.rated-completion')
    expect(rows).to_have_count(3)
    expect(rows.nth(0).locator("td.mean")).to_have_text("4.50")
    expect(rows.nth(1).locator('td[data-aspect="honesty"]')).to_have_text("2")
    screenshots(page, "my-ratings")
    page.goto(f"{live_server.url}/projects/{project.slug}/")
    expect(page.locator("#my-rankings")).to_have_text("My ratings")
    expect(page.locator("#your-work")).to_contain_text("You have rated 1 prompt here")
    form = page.locator("form[action$='/exports/']")
    expect(form.locator("[name=max_spread]")).to_have_value("2.0")
    expect(form.locator("[name=min_agreement]")).to_have_count(0)
    expect(page.locator("dl.facts")).to_contain_text("1 (worst) to 5 (best), for each of "
                                                     "helpfulness, honesty")
    screenshots(page, "rate-project")
    form.scroll_into_view_if_needed()
    screenshots(page, "rate-export-form")


def test_my_demonstrations_the_finished_queue_and_the_demonstrate_projects_pages(
        page, live_server, nora):
    project = make_project("egg-writing", "demonstrate", nora)
    first = services.assignment_next(project=project, labeler=nora)
    services.demonstration_submit(
        project=project, labeler=nora, prompt_id=first.prompt_id, idempotency_key="w1",
        text="Boil it for seven minutes, then cool it in cold water.",
        source_completion_id=shown(first.prompt_id, nora)[1])
    second = services.assignment_next(project=project, labeler=nora)
    services.demonstration_submit(project=project, labeler=nora, prompt_id=second.prompt_id,
                                  text="Start from cold water. " * 12, idempotency_key="w2")
    log_in(page, live_server, nora, f"/projects/{project.slug}/rank/")
    expect(page.locator("h1")).to_have_text("Nothing left to write in Egg Writing")
    screenshots(page, "demonstrate-done")
    page.get_by_role("link", name="Review or revise your demonstrations").click()
    edited = page.locator(f'li[data-prompt-id="{first.prompt_id}"]')
    expect(edited.locator(".demonstration-source")).to_have_text("Edited from completion 2")
    scratch = page.locator(f'li[data-prompt-id="{second.prompt_id}"]')
    expect(scratch.locator(".demonstration-source")).to_have_text("Written from scratch")
    screenshots(page, "my-demonstrations")
    scratch.get_by_role("link", name="Revise").click()
    expect(page.locator("#editor")).to_have_value(("Start from cold water. " * 12).strip())
    page.goto(f"{live_server.url}/projects/{project.slug}/")
    form = page.locator("form[action$='/exports/']")
    for absent in ("min_votes", "min_agreement", "tie_policy", "max_spread"):
        expect(form.locator(f"[name={absent}]")).to_have_count(0)
    expect(form.locator("[name=test_fraction]")).to_be_visible()
    expect(page.locator("dl.facts")).not_to_contain_text("Ties")
    screenshots(page, "demonstrate-project")
    form.scroll_into_view_if_needed()
    screenshots(page, "demonstrate-export-form")
