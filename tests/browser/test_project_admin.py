"""A project's admin edits its settings and manages its members, in a real browser.

ada administers "helpful" (with prompts, so K is fixed); lena labels it and has ranked one
prompt and holds another; ghost is invited and sets a password through the link.
"""

import io
import json
import re

import pytest
from django.core import signing

from annotate import services
from annotate.models import Assignment, Membership, Project, Ranking
from tests.browser.conftest import screenshots

expect = pytest.importorskip("playwright.sync_api").expect

pytestmark = pytest.mark.usefixtures("transactional_db")

ADA_PASSWORD = "ada-password-5521"
GHOST_PASSWORD = "Ghost-Password-9431"


def make_world(django_user_model) -> tuple[Project, object, object]:
    project = services.project_create(created_by=None, slug="helpful", name="Helpfulness",
                                      criterion="helpfulness", completions_per_prompt=2,
                                      labelers_per_prompt=2)
    rows = [{"id": f"p{i}", "prompt": f"Question {i}?", "completions": [f"A{i}", f"B{i}"]}
            for i in range(3)]
    services.prompts_import(project=project, filename="p.jsonl",
                            binary=io.BytesIO("\n".join(map(json.dumps, rows)).encode()))
    ada = django_user_model.objects.create_user("ada", password=ADA_PASSWORD)
    lena = django_user_model.objects.create_user("lena", password="lena-password-1")
    services.membership_set(project=project, user=ada, role=Membership.Role.ADMIN)
    services.membership_set(project=project, user=lena, role=Membership.Role.LABELER)
    lease = services.assignment_next(project=project, labeler=lena)
    ids = list(lease.prompt.completions.values_list("id", flat=True))
    services.ranking_submit(project=project, labeler=lena, prompt_id=lease.prompt_id,
                            tiers=[[i] for i in ids], idempotency_key="lena-1")
    services.assignment_next(project=project, labeler=lena)  # held when she is removed
    return project, ada, lena


def log_in(page, live_server, username: str, password: str) -> None:
    page.goto(f"{live_server.url}/accounts/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", password)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(f"{live_server.url}/")


def member_row(page, username: str):
    return page.locator(f'tr[data-username="{username}"]')


def test_an_admin_edits_settings_and_manages_members(page, context, browser, live_server,
                                                     django_user_model):
    project, ada, lena = make_world(django_user_model)
    log_in(page, live_server, "ada", ADA_PASSWORD)
    page.goto(f"{live_server.url}/projects/helpful/")
    page.get_by_role("link", name="Settings").click()

    # Settings: K is shown, fixed, with the reason; the rest saves.
    k_field = page.locator("#id_completions_per_prompt")
    expect(k_field).to_be_disabled()
    expect(page.get_by_text("cannot change once the project has prompts")).to_be_visible()
    page.fill("#id_instructions", "Prefer answers that **show their work**.")
    page.fill("#id_labelers_per_prompt", "3")
    page.check("#id_allow_ties")
    screenshots(page, "project-settings")
    page.get_by_role("button", name="Save settings").click()
    expect(page.get_by_text("Settings saved.")).to_be_visible()
    project.refresh_from_db()
    assert (project.labelers_per_prompt, project.allow_ties, project.completions_per_prompt) == (
        3, True, 2)
    expect(page.locator(".markdown strong")).to_have_text("show their work")

    # Members: make lena an admin and a labeler again.
    page.get_by_role("link", name="Manage members").click()
    row = member_row(page, "lena")
    row.locator("select[name=role]").select_option("admin")
    row.get_by_role("button", name="Change role").click()
    expect(page.get_by_text("lena is now an admin.")).to_be_visible()
    assert Membership.objects.get(user=lena).role == "admin"
    member_row(page, "lena").locator("select[name=role]").select_option("labeler")
    member_row(page, "lena").get_by_role("button", name="Change role").click()
    expect(page.get_by_text("lena is now a labeler.")).to_be_visible()
    # The last admin stays.
    member_row(page, "ada").get_by_role("button", name="Remove").click()
    expect(page.get_by_text("ada is this project's last admin")).to_be_visible()

    # Invite ghost: the link is shown once.
    page.fill("#id_username", "ghost")
    page.get_by_role("button", name="Add").click()
    expect(page.get_by_text("ghost created and added as a labeler.")).to_be_visible()
    link = page.locator("#invitation-url").input_value()
    assert re.match(rf"{live_server.url}/accounts/invitation/[^/]+/$", link)
    expect(member_row(page, "ghost").get_by_text("invited, no password yet")).to_be_visible()
    screenshots(page, "project-members-invitation")

    # Remove lena: her ranking stays, the prompt she held is released.
    member_row(page, "lena").get_by_role("button", name="Remove").click()
    expect(page.get_by_text("lena removed; their rankings stay; the 1 prompt they held went "
                            "back to the others.")).to_be_visible()
    expect(member_row(page, "lena")).to_have_count(0)
    assert Ranking.objects.filter(labeler=lena).count() == 1
    assert not Assignment.objects.filter(labeler=lena, status="leased").exists()
    screenshots(page, "project-members")

    # ghost sets a password through the link and logs in with it.
    invitee = browser.new_context(viewport={"width": 1280, "height": 720})
    ghost_page = invitee.new_page()
    ghost_page.goto(link)
    expect(ghost_page.get_by_text("Welcome, ghost.")).to_be_visible()
    ghost_page.fill("#id_new_password1", GHOST_PASSWORD)
    ghost_page.fill("#id_new_password2", GHOST_PASSWORD)
    screenshots(ghost_page, "invitation")
    ghost_page.get_by_role("button", name="Set password").click()
    expect(ghost_page.get_by_text("Your password is set, ghost")).to_be_visible()
    log_in(ghost_page, live_server, "ghost", GHOST_PASSWORD)
    expect(ghost_page.get_by_role("link", name="Helpfulness")).to_be_visible()

    # The link works once; an expired one is refused too.
    ghost_page.goto(link)
    expect(ghost_page.get_by_text("used already")).to_be_visible()
    assert ghost_page.locator("#id_new_password1").count() == 0
    user = django_user_model.objects.get(username="ghost")
    payload = {"u": user.pk, "f": "x"}
    old = signing.TimestampSigner(salt="annotate.invitation")
    old.timestamp = lambda: signing.b62_encode(int(signing.time.time()) - 10 * 24 * 3600)
    ghost_page.goto(f"{live_server.url}/accounts/invitation/{old.sign_object(payload)}/")
    expect(ghost_page.get_by_text("This invitation link has expired")).to_be_visible()
    screenshots(ghost_page, "invitation-expired")
    invitee.close()
