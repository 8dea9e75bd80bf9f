"""The labeler's pages in rate and demonstrate projects (issue 17, item 1 leftovers).

Alice rates in a project with two aspects and writes in a demonstrate project; "My rankings"
shows her scores and her demonstrations, and the pages say rate or write, not rank.
"""

import re

import pytest

from annotate import services
from annotate.models import Assignment, Prompt
from annotate.ranking import display_order

pytestmark = pytest.mark.django_db


def make_project(slug: str, mode: str, **settings):
    project = services.project_create(
        created_by=None, slug=slug, name=slug.title(), criterion="helpfulness",
        completions_per_prompt=3, labelers_per_prompt=1, annotation_mode=mode, **settings)
    for index in range(2):
        prompt = Prompt.objects.create(project=project, text=f"Question {slug} {index}?")
        for position in range(3):
            prompt.completions.create(position=position, text=f"Answer {index}.{position}")
    return project


@pytest.fixture
def rating_project(db):
    return make_project("rated", "rate", rating_scale_min=0, rating_scale_max=9,
                        rating_aspects=["helpfulness", "honesty"])


@pytest.fixture
def writing_project(db):
    return make_project("writing", "demonstrate")


@pytest.fixture
def alice(make_user, rating_project, writing_project):
    user = make_user("alice")
    for project in (rating_project, writing_project):
        services.membership_set(project=project, user=user, role="labeler")
    return user


def leased_prompt(project, labeler) -> Prompt:
    return services.assignment_next(project=project, labeler=labeler).prompt


def shown_order(prompt, labeler) -> list[int]:
    seed = Assignment.objects.get(prompt=prompt, labeler=labeler).seed
    return display_order(list(prompt.completions.values_list("id", flat=True)), seed)


def rate_shown(project, labeler, scores_by_card: list[tuple[int, int]]) -> Prompt:
    """Rate the leased prompt: (helpfulness, honesty) for the cards in the order shown."""
    prompt = leased_prompt(project, labeler)
    order = shown_order(prompt, labeler)
    scores = {str(cid): {"helpfulness": h, "honesty": o}
              for cid, (h, o) in zip(order, scores_by_card, strict=True)}
    services.ranking_submit(project=project, labeler=labeler, prompt_id=prompt.id,
                            scores=scores, displayed_order=order, idempotency_key=f"r{prompt.id}")
    return prompt


def rows_of(html: str, prompt_id: int) -> list[list[str]]:
    """The cells of each completion row in the listing of one prompt, tags stripped."""
    item = re.search(rf'data-prompt-id="{prompt_id}">(.*?)</li>', html, re.S).group(1)
    rows = re.findall(r'<tr class="rated-completion">(.*?)</tr>', item, re.S)
    return [[re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", cell)).strip()
             for cell in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)] for row in rows]


def test_my_ratings_show_each_completions_scores_per_aspect(rating_project, alice, client):
    prompt = rate_shown(rating_project, alice, [(7, 9), (2, 4), (7, 8)])
    client.force_login(alice)
    html = client.get(f"/projects/{rating_project.slug}/my-rankings/").content.decode()
    assert "Your ratings in Rated" in html
    assert "<th class=\"num\">helpfulness</th><th class=\"num\">honesty</th>" in html
    texts = dict(prompt.completions.values_list("id", "text"))
    order = shown_order(prompt, alice)
    # In the order she saw them, with the card number, both aspects and the mean.
    assert rows_of(html, prompt.id) == [
        [f"1 {texts[order[0]]}", "7", "9", "8.00"],
        [f"2 {texts[order[1]]}", "2", "4", "3.00"],
        [f"3 {texts[order[2]]}", "7", "8", "7.50"],
    ]
    assert f'href="/projects/{rating_project.slug}/rank/{prompt.id}/">Revise</a>' in html
    assert "tiers" not in html and 'class="place"' not in html


def test_my_ratings_keep_the_skipped_prompts_with_their_reasons(rating_project, alice, client):
    prompt = leased_prompt(rating_project, alice)
    services.prompt_skip(project=rating_project, labeler=alice, prompt_id=prompt.id,
                             reason="not in English")
    client.force_login(alice)
    html = client.get(f"/projects/{rating_project.slug}/my-rankings/").content.decode()
    assert "No ratings here yet." in html
    assert "not in English" in html and prompt.text in html


def write(project, labeler, text, source_card: int | None = None, key="w1") -> Prompt:
    prompt = leased_prompt(project, labeler)
    source_id = shown_order(prompt, labeler)[source_card - 1] if source_card else None
    services.demonstration_submit(project=project, labeler=labeler, prompt_id=prompt.id,
                                  text=text, source_completion_id=source_id,
                                  idempotency_key=key)
    return prompt


def item_of(html: str, prompt_id: int) -> str:
    return re.search(rf'data-prompt-id="{prompt_id}">(.*?)</li>', html, re.S).group(1)


def test_my_demonstrations_say_where_each_came_from_and_link_to_revise(
        writing_project, alice, client):
    edited = write(writing_project, alice, "Boil it for **seven** minutes.", source_card=2)
    scratch = write(writing_project, alice, "Start from cold water.", key="w2")
    services.demonstration_submit(project=writing_project, labeler=alice, prompt_id=scratch.id,
                                  text="Start from cold water, then simmer.",
                                  idempotency_key="w3")
    client.force_login(alice)
    html = client.get(f"/projects/{writing_project.slug}/my-rankings/").content.decode()
    assert "Your demonstrations in Writing" in html and "Demonstrations <span" in html
    first = item_of(html, edited.id)
    assert re.search(r"Edited from completion <span[^>]*>2</span>", first)
    assert "Boil it for seven minutes." in first and "revision 1" in first
    second = item_of(html, scratch.id)
    assert "Written from scratch" in second and "revision 2" in second
    assert "Start from cold water, then simmer." in second
    revise = f'/projects/{writing_project.slug}/rank/{scratch.id}/'
    assert f'href="{revise}">Revise</a>' in second
    # The link opens the writing page holding the stored version.
    page = client.get(revise).content.decode()
    assert "Start from cold water, then simmer." in page


def test_a_finished_queue_says_the_modes_verb(rating_project, writing_project, alice, client):
    for key in ("a", "b"):
        write(writing_project, alice, f"Answer {key}.", key=key)
    client.force_login(alice)
    page = client.get(f"/projects/{writing_project.slug}/rank/").content.decode()
    assert "Nothing left to write in Writing" in page
    assert "You have written a response for 2 prompts" in page
    assert "Review or revise your demonstrations" in page
    body = re.sub(r'href="[^"]*"', "", page.split("<main>")[1]).lower()
    assert "rank" not in body


@pytest.mark.parametrize("mode_project, words", [
    ("rating_project", ["Start rating", "My ratings", "Rate by", "0 / 2 ratings"]),
    ("writing_project", ["Start writing", "My demonstrations", "Write for",
                         "0 / 2 demonstrations"]),
])
def test_the_project_and_home_pages_say_the_modes_words(mode_project, words, alice, client,
                                                        request):
    project = request.getfixturevalue(mode_project)
    client.force_login(alice)
    project_page = client.get(f"/projects/{project.slug}/").content.decode()
    for word in words[:3]:
        assert word in project_page
    assert "You have not" in project_page and "My rankings" not in project_page
    assert "<dt>Ties</dt>" not in project_page  # ranking-only facts stay on rank projects
    home = client.get("/").content.decode()
    assert words[0] in home and words[3] in home


def test_the_labeling_pages_progress_counts_the_modes_results(rating_project, alice, client):
    prompt = leased_prompt(rating_project, alice)
    client.force_login(alice)
    page = client.get(f"/projects/{rating_project.slug}/rank/{prompt.id}/").content.decode()
    assert "0 / 2 ratings" in page and "rankings</span>" not in page
