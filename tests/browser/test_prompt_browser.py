"""ada, who administers "helpful", finds a flagged prompt in the prompt browser, reads every
ranking of it, makes it gold and retires a junk prompt, in a real browser. lena and max label.
"""

import io
import json

import pytest

from annotate import services
from annotate.models import Membership, Project, Prompt
from tests.browser.conftest import screenshots

expect = pytest.importorskip("playwright.sync_api").expect

pytestmark = pytest.mark.usefixtures("transactional_db")

ADA_PASSWORD = "ada-password-5521"
PROMPTS = [
    ("rev", "How do I reverse a list in Python?",
     ["Use `items[::-1]`, or `items.reverse()` to reverse it in place.",
      "Call reversed(items); wrap it in list() if you need a list.",
      "Lists cannot be reversed in Python."]),
    ("tea", "What is the best temperature for green tea?",
     ["About 70-80 °C; boiling water makes it bitter.", "100 °C, always.",
      "Any temperature works."]),
    ("junk", "asdf asdf asdf", ["?", "asdf", "I am not sure what you mean."]),
    ("sum", "Summarise the plot of Hamlet in one sentence.",
     ["A Danish prince avenges his father's murder and most of the court dies.",
      "Hamlet is a play.", "A prince is sad."]),
    ("sql", "Write SQL to count users per country.",
     ["SELECT country, COUNT(*) FROM users GROUP BY country;", "SELECT * FROM users;",
      "COUNT users BY country"]),
    ("py2", "Is Python 2 still supported?",
     ["No: Python 2 reached end of life on 1 January 2020.", "Yes.", "Maybe."]),
]


def make_world(django_user_model) -> Project:
    project = services.project_create(created_by=None, slug="helpful", name="Helpfulness",
                                      criterion="helpfulness", completions_per_prompt=3,
                                      labelers_per_prompt=2)
    project.gold_rate = 0
    project.save()
    rows = [{"id": key, "prompt": text, "completions": answers, "model": "m"}
            for key, text, answers in PROMPTS]
    services.prompts_import(project=project, filename="p.jsonl",
                            binary=io.BytesIO("\n".join(map(json.dumps, rows)).encode()))
    ada = django_user_model.objects.create_user("ada", password=ADA_PASSWORD)
    services.membership_set(project=project, user=ada, role=Membership.Role.ADMIN)
    for name in ("lena", "max"):
        labeler = django_user_model.objects.create_user(name, password=f"{name}-pw-1")
        services.membership_set(project=project, user=labeler, role=Membership.Role.LABELER)
        for n in range(2):  # each ranks "rev" and "tea"; lena flags an answer of "rev"
            lease = services.assignment_next(project=project, labeler=labeler)
            ids = list(lease.prompt.completions.values_list("id", flat=True))
            order = ids if name == "lena" else [ids[1], ids[0], ids[2]]
            flags = ({str(ids[2]): ["factually_wrong"]}
                     if name == "lena" and lease.prompt.external_id == "rev" else None)
            services.ranking_submit(project=project, labeler=labeler,
                                    prompt_id=lease.prompt_id, tiers=[[i] for i in order],
                                    flags=flags, idempotency_key=f"{name}-{n}",
                                    comment="C is wrong." if flags else "")
    return project


def test_an_admin_searches_filters_reads_a_prompt_marks_gold_and_retires(
        page, live_server, django_user_model):
    project = make_world(django_user_model)
    page.goto(f"{live_server.url}/accounts/login/")
    page.fill("#id_username", "ada")
    page.fill("#id_password", ADA_PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.goto(f"{live_server.url}/projects/helpful/")
    page.get_by_role("link", name="Prompts", exact=True).click()
    rows = page.locator("table.prompts tbody tr")
    expect(rows).to_have_count(6)
    screenshots(page, "prompt-browser")

    # Search the completions too, ignoring case; then the flagged ones.
    page.fill("#prompt-query", "PYTHON")
    page.get_by_role("button", name="Search").click()
    expect(rows).to_have_count(2)
    expect(page.locator("#prompt-count")).to_contain_text("2 prompts containing “PYTHON”")
    page.fill("#prompt-query", "")
    page.select_option("#prompt-state", "flagged")
    page.get_by_role("button", name="Search").click()
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("How do I reverse a list in Python?")
    expect(rows.first.locator(".tag.warn")).to_have_text("flagged 1")
    page.select_option("#prompt-state", "in_progress")
    page.get_by_role("button", name="Search").click()
    expect(rows).to_have_count(0)  # both ranked by two: complete
    page.select_option("#prompt-state", "complete")
    page.get_by_role("button", name="Search").click()
    expect(rows).to_have_count(2)
    screenshots(page, "prompt-browser-filtered")

    # One prompt: each ranking by username, the consensus and the pairs.
    page.get_by_role("link", name="How do I reverse a list in Python?").click()
    ranking_rows = page.locator("table.rankings-of-prompt tbody tr")
    expect(ranking_rows).to_have_count(2)
    expect(page.locator('tr[data-labeler="lena"] .order')).to_have_text("A > B > C")
    expect(page.locator('tr[data-labeler="max"] .order')).to_have_text("B > A > C")
    expect(page.locator('tr[data-labeler="lena"]')).to_contain_text("C: factually_wrong")
    expect(page.locator('tr[data-pair="AB"]')).to_contain_text("split")
    expect(page.locator('tr[data-pair="AC"]')).to_contain_text("1.00")
    screenshots(page, "prompt-page")

    # Gold, with the consensus as the reference; then unmark it and mark it again.
    page.select_option("#gold-reference", "consensus")
    page.get_by_role("button", name="Mark as gold").click()
    expect(page.get_by_text("This prompt is gold now.")).to_be_visible()
    expect(page.locator("#gold-tag")).to_contain_text("gold")
    rev = Prompt.objects.get(project=project, external_id="rev")
    assert rev.is_gold and rev.gold_mode == "ranking"
    page.get_by_role("button", name="Unmark gold").click()
    expect(page.get_by_text("This prompt is no longer gold.")).to_be_visible()
    rev.refresh_from_db()
    assert not rev.is_gold
    page.select_option("#gold-reference", label="A is the best (best only)")
    page.get_by_role("button", name="Mark as gold").click()
    expect(page.locator("#gold-tag")).to_contain_text("best only")
    expect(page.locator("#gold-reference-shown")).to_have_text("Reference: A > B = C")
    screenshots(page, "prompt-page-gold")

    # Back to the flagged list it came from; then the junk prompt, retired.
    page.get_by_role("link", name="Back to the prompts").click()
    expect(page.locator("#prompt-state")).to_have_value("complete")
    page.select_option("#prompt-state", "untouched")
    page.fill("#prompt-query", "asdf")
    page.get_by_role("button", name="Search").click()
    page.get_by_role("link", name="asdf asdf asdf").click()
    page.get_by_role("button", name="Retire").click()
    expect(page.get_by_text("Prompt retired")).to_be_visible()
    expect(page.locator("#retired-tag")).to_be_visible()
    screenshots(page, "prompt-page-retired")
    junk = Prompt.objects.get(project=project, external_id="junk")
    assert junk.is_retired
    page.get_by_role("link", name="Back to the prompts").click()
    expect(rows).to_have_count(0)  # not untouched any more: retired
    page.select_option("#prompt-state", "retired")
    page.fill("#prompt-query", "")
    page.get_by_role("button", name="Search").click()
    expect(rows).to_have_count(1)
    expect(rows.first.locator(".tag").first).to_have_text("retired")
