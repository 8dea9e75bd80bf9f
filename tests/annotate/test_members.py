"""Project settings and members after creation (issue 18, item 3), as stories.

carol administers "helpful", alice and bob label it, dave labels "harmless" only, root is
the superuser. erin is an admin of both projects; ghost is invited.
"""

import io
from datetime import timedelta

import pytest
from django.core import signing
from django.test import Client
from rest_framework.authtoken.models import Token

from annotate import services
from annotate.models import Assignment, Membership, Project, Ranking
from config.errors import Conflict, Forbidden, Invalid, NotFound
from tests.factories import jsonl_bytes, prompt_record

pytestmark = pytest.mark.django_db


@pytest.fixture
def bob(make_user, project):
    user = make_user("bob")
    services.membership_set(project=project, user=user, role=Membership.Role.LABELER)
    return user


def with_prompts(project: Project, count: int = 2) -> Project:
    records = [prompt_record(i, k=project.completions_per_prompt) for i in range(count)]
    services.prompts_import(project=project, filename="p.jsonl",
                            binary=io.BytesIO(jsonl_bytes(records)))
    return project


def rank_one(project, labeler) -> Ranking:
    lease = services.assignment_next(project=project, labeler=labeler)
    ids = list(lease.prompt.completions.values_list("id", flat=True))
    version, _ = services.ranking_submit(project=project, labeler=labeler,
                                         prompt_id=lease.prompt_id, tiers=[[i] for i in ids],
                                         idempotency_key=f"{labeler}-{lease.prompt_id}")
    return version.ranking


def invitation_path(token: str) -> str:
    return f"/accounts/invitation/{token}/"


# --- settings -----------------------------------------------------------------------------


def test_an_admin_changes_any_setting_and_k_until_prompts_exist(project):
    services.project_update(project=project, completions_per_prompt=3, allow_ties=True,
                            labelers_per_prompt=2, instructions="Rank by *care*.",
                            criterion="care", name="Care")
    project.refresh_from_db()
    assert (project.completions_per_prompt, project.allow_ties, project.labelers_per_prompt,
            project.criterion, project.name) == (3, True, 2, "care", "Care")


def test_k_cannot_change_once_prompts_exist_and_the_error_says_why(project):
    with_prompts(project)
    with pytest.raises(Conflict, match=r"cannot change once the project has prompts.*exactly K"):
        services.project_update(project=project, completions_per_prompt=3)
    services.project_update(project=project, completions_per_prompt=4, allow_ties=True)  # same K
    project.refresh_from_db()
    assert (project.completions_per_prompt, project.allow_ties) == (4, True)


def test_settings_are_validated_and_unknown_ones_refused(project, other_project):
    with pytest.raises(Invalid):
        services.project_update(project=project, consensus_min_agreement=0.2)
    with pytest.raises(Invalid, match="Slug already exists"):
        services.project_update(project=project, slug=other_project.slug)
    with pytest.raises(Invalid, match="Not a project setting: is_frozen"):
        services.project_update(project=project, is_frozen=True)


# --- adding -------------------------------------------------------------------------------


def test_a_new_account_gets_the_admins_password_or_an_invitation_never_neither(
        project, django_user_model):
    with_password = services.member_add(project=project, username="erin",
                                        password="erins-password-1")
    assert (with_password.outcome, with_password.invitation) == ("created", None)
    assert with_password.user.check_password("erins-password-1")
    ghost = services.member_add(project=project, username="ghost")
    assert ghost.outcome == "created" and ghost.invitation is not None
    assert ghost.message() == "ghost created and added as a labeler."
    assert services.invitation_user(ghost.invitation.token) == ghost.user


def test_adding_says_what_happened(project, alice, carol, dave):
    assert services.member_add(project=project, username="alice").message() == (
        "alice is already a labeler.")
    assert services.member_add(project=project, username="carol").message() == (
        "carol is already an admin.")  # never demoted by "add"
    assert services.member_add(project=project, username="alice", role="admin").message() == (
        "alice is now an admin.")
    dave_added = services.member_add(project=project, username="dave")
    assert (dave_added.outcome, dave_added.message()) == ("added", "dave added.")
    assert dave_added.invitation is None and dave.check_password("dave-pw")


def test_adding_an_existing_account_with_a_password_leaves_its_password(project, root):
    added = services.member_add(project=project, username="root", password="mallory-pw-1")
    root.refresh_from_db()
    assert root.check_password("root-pw") and added.invitation is None


# --- roles and removal --------------------------------------------------------------------


def test_roles_change_but_the_last_admin_stays(project, alice, carol):
    services.member_role_set(project=project, user_id=alice.id, role="admin")
    services.member_role_set(project=project, user_id=carol.id, role="labeler")
    with pytest.raises(Conflict, match="alice is this project's last admin"):
        services.member_role_set(project=project, user_id=alice.id, role="labeler")
    with pytest.raises(Conflict, match="last admin"):
        services.member_remove(project=project, user_id=alice.id)
    assert Membership.objects.get(project=project, user=alice).role == "admin"
    with pytest.raises(NotFound):
        services.member_role_set(project=project, user_id=999_999, role="admin")


def test_removing_a_member_keeps_their_rankings_and_releases_their_leases(
        project, alice, bob, carol):
    project = services.project_update(project=project, labelers_per_prompt=1)
    with_prompts(project, count=2)
    ranking = rank_one(project, alice)
    held = services.assignment_next(project=project, labeler=alice)
    assert services.assignment_next(project=project, labeler=bob) is None  # all taken
    user, released = services.member_remove(project=project, user_id=alice.id)
    assert (user, released) == (alice, 1)
    assert not Membership.objects.filter(project=project, user=alice).exists()
    assert Ranking.objects.get(id=ranking.id).labeler == alice  # nothing submitted is lost
    assert Assignment.objects.filter(labeler=alice, status="ranked").count() == 1
    assert not Assignment.objects.filter(labeler=alice, status="leased").exists()
    # The prompt alice held is free for the others at once.
    assert services.assignment_next(project=project, labeler=bob).prompt_id == held.prompt_id


def test_a_removed_member_sees_the_project_no_more(project, alice, carol, api):
    services.member_remove(project=project, user_id=alice.id)
    assert api(alice).get(f"/api/projects/{project.id}/").status_code == 404


# --- passwords ----------------------------------------------------------------------------


@pytest.fixture
def erin(make_user, project, other_project):
    """An admin of both projects."""
    user = make_user("erin")
    for each in (project, other_project):
        services.membership_set(project=each, user=user, role=Membership.Role.ADMIN)
    return user


def test_an_admin_sets_the_password_only_of_accounts_wholly_in_their_projects(
        project, other_project, alice, carol, dave, erin, root):
    services.member_password_set(project=project, actor=carol, user_id=alice.id,
                                 password="alices-new-pw-1")
    alice.refresh_from_db()
    assert alice.check_password("alices-new-pw-1")
    services.membership_set(project=project, user=dave, role="labeler")  # dave is in P2 too
    with pytest.raises(Forbidden, match="also belongs to projects you do not administer"):
        services.member_password_set(project=project, actor=carol, user_id=dave.id,
                                     password="carols-choice-1")
    # erin administers both of dave's projects: his password is hers to reset.
    services.member_password_set(project=project, actor=erin, user_id=dave.id,
                                 password="erins-choice-1")
    # Never a staff account's, a superuser's, one's own, or a non-member's.
    services.membership_set(project=project, user=root, role="labeler")
    for victim, message in ((root, "staff account"), (carol, "your own")):
        with pytest.raises(Forbidden, match=message):
            services.member_password_set(project=project, actor=carol, user_id=victim.id,
                                         password="carols-choice-2")
        with pytest.raises(Forbidden):
            services.member_invitation_create(project=project, actor=carol, user_id=victim.id)
    with pytest.raises(NotFound):
        services.member_password_set(project=other_project, actor=erin, user_id=alice.id,
                                     password="x" * 10)
    root.refresh_from_db()
    carol.refresh_from_db()
    assert root.check_password("root-pw") and carol.check_password("carol-pw")


def test_a_staff_member_is_refused_even_to_a_superuser(project, root, alice):
    alice.is_staff = True
    alice.save()
    with pytest.raises(Forbidden, match="staff account"):
        services.member_password_set(project=project, actor=root, user_id=alice.id,
                                     password="roots-choice-1")


# --- invitations --------------------------------------------------------------------------


def test_an_invitation_sets_a_password_once(project):
    ghost = services.member_add(project=project, username="ghost")
    assert not ghost.user.has_usable_password()
    services.invitation_accept(token=ghost.invitation.token, password="ghosts-own-pw-1")
    ghost.user.refresh_from_db()
    assert ghost.user.check_password("ghosts-own-pw-1")
    with pytest.raises(services.InvitationRefused, match="used already"):
        services.invitation_accept(token=ghost.invitation.token, password="someone-else-1")


def test_a_new_invitation_replaces_the_old_one_and_links_expire(project, carol, settings):
    ghost = services.member_add(project=project, username="ghost")
    newer = services.member_invitation_create(project=project, actor=carol,
                                              user_id=ghost.user.id)
    with pytest.raises(services.InvitationRefused, match="replaced by a newer one"):
        services.invitation_user(ghost.invitation.token)
    settings.INVITATION_MAX_AGE_SECONDS = 60
    signer = signing.TimestampSigner(salt="annotate.invitation")
    payload = signer.unsign_object(newer.token)
    old = signing.TimestampSigner(salt="annotate.invitation")
    old.timestamp = lambda: signing.b62_encode(int((signing.time.time()) - 3600))
    expired = old.sign_object(payload)
    with pytest.raises(services.InvitationRefused, match="expired"):
        services.invitation_user(expired)
    with pytest.raises(services.InvitationRefused, match="not valid"):
        services.invitation_user(newer.token[:-2] + "xx")
    assert services.invitation_user(newer.token) == ghost.user
    assert newer.expires_at - ghost.invitation.expires_at < timedelta(minutes=1)


def test_a_password_reset_link_leaves_the_old_password_until_it_is_used(project, carol, alice):
    link = services.member_invitation_create(project=project, actor=carol, user_id=alice.id)
    alice.refresh_from_db()
    assert alice.check_password("alice-pw")
    services.invitation_accept(token=link.token, password="alices-new-pw-2")
    alice.refresh_from_db()
    assert alice.check_password("alices-new-pw-2")


# --- the API ------------------------------------------------------------------------------


def test_the_api_patches_settings_and_refuses_k_with_the_reason(project, carol, alice, api):
    url = f"/api/projects/{project.id}/"
    response = api(carol).patch(url, {"allow_ties": True, "labelers_per_prompt": 2},
                                format="json")
    assert response.status_code == 200
    assert (response.json()["allow_ties"], response.json()["labelers_per_prompt"]) == (True, 2)
    with_prompts(project)
    response = api(carol).patch(url, {"completions_per_prompt": 3}, format="json")
    assert response.status_code == 409
    assert "cannot change once the project has prompts" in response.json()["detail"]
    assert api(alice).patch(url, {"allow_ties": False}, format="json").status_code == 403
    response = api(carol).patch(url, {"consensus_min_agreement": 1.5}, format="json")
    assert response.status_code == 400 and "consensus_min_agreement" in response.json()


def test_the_api_manages_members(project, alice, carol, api, django_user_model):
    as_carol = api(carol)
    members = f"/api/projects/{project.id}/members/"
    added = as_carol.post(members, {"username": "ghost"}, format="json")
    assert added.status_code == 201
    body = added.json()
    assert body["outcome"] == "created" and body["message"] == (
        "ghost created and added as a labeler.")
    assert body["invitation"]["url"].startswith("http://testserver/accounts/invitation/")
    again = as_carol.post(members, {"username": "alice", "role": "admin"}, format="json")
    assert (again.status_code, again.json()["message"]) == (200, "alice is now an admin.")
    listed = as_carol.get(members).json()
    assert [(m["username"], m["role"]) for m in listed] == [
        ("alice", "admin"), ("carol", "admin"), ("ghost", "labeler")]
    member = f"{members}{alice.id}/"
    assert as_carol.patch(member, {"role": "labeler"}, format="json").json()["role"] == "labeler"
    assert as_carol.patch(f"{members}{carol.id}/", {"role": "labeler"},
                          format="json").status_code == 409
    assert as_carol.post(f"{member}password/", {"password": "short"},
                         format="json").status_code == 400
    alices_token = Token.objects.create(user=alice)
    assert as_carol.post(f"{member}password/", {"password": "alices-new-pw-3"},
                         format="json").status_code == 204
    assert not Token.objects.filter(key=alices_token.key).exists()  # the reset ends it
    link = as_carol.post(f"{member}invitation/", format="json")
    assert link.status_code == 201 and "/accounts/invitation/" in link.json()["url"]
    assert as_carol.delete(member).status_code == 204
    assert as_carol.delete(member).status_code == 404
    assert as_carol.delete(f"{members}{carol.id}/").status_code == 409
    alice.refresh_from_db()
    assert alice.check_password("alices-new-pw-3")


def test_the_api_refuses_a_password_an_admin_may_not_set(project, carol, dave, root, api):
    services.membership_set(project=project, user=dave, role="labeler")
    services.membership_set(project=project, user=root, role="labeler")
    for victim in (dave, root):
        url = f"/api/projects/{project.id}/members/{victim.id}/password/"
        response = api(carol).post(url, {"password": "carols-choice-3"}, format="json")
        assert response.status_code == 403, victim
        assert api(carol).post(url.replace("password", "invitation")).status_code == 403
        victim.refresh_from_db()
        assert victim.check_password(f"{victim.username}-pw")


# --- the pages ----------------------------------------------------------------------------


def test_the_members_page_shows_an_invitation_link_once_and_it_works_once(
        project, carol, client, django_user_model):
    client.force_login(carol)
    response = client.post(f"/projects/{project.slug}/members/",
                           {"username": "ghost", "role": "labeler"})
    assert response.status_code == 200
    page = response.content.decode()
    assert "ghost created and added as a labeler." in page
    start = page.index("http://testserver/accounts/invitation/")
    url = page[start:page.index('"', start)]
    assert "accounts/invitation/" not in client.get(f"/projects/{project.slug}/members/")\
        .content.decode()  # shown once
    invitee = Client()
    assert invitee.get(url).status_code == 200
    response = invitee.post(url, {"new_password1": "Ghost-Password-9",
                                  "new_password2": "Ghost-Password-9"})
    assert response.status_code == 302 and response["Location"] == "/accounts/login/"
    assert invitee.login(username="ghost", password="Ghost-Password-9")
    assert Client().get(url).status_code == 410  # used


def test_the_settings_page_edits_and_keeps_k_once_prompts_exist(project, carol, alice, client):
    with_prompts(project)
    client.force_login(carol)
    url = f"/projects/{project.slug}/settings/"
    page = client.get(url).content.decode()
    assert "cannot change once the project has prompts" in page
    form = {"name": "Helpfulness 2", "slug": "helpful-2", "criterion": "helpfulness",
            "instructions": "Be kind.", "completions_per_prompt": 3, "labelers_per_prompt": 2,
            "allow_ties": "on", "consensus_min_votes": 2, "consensus_min_agreement": "2/3",
            "consensus_tie_policy": "half", "lease_minutes": 20}
    response = client.post(url, form)
    assert response.status_code == 302 and response["Location"] == "/projects/helpful-2/"
    project.refresh_from_db()
    assert (project.name, project.completions_per_prompt, project.allow_ties,
            project.lease_minutes) == ("Helpfulness 2", 4, True, 20)  # K: the field is fixed
    client.force_login(alice)
    assert client.get("/projects/helpful-2/settings/").status_code == 403


def test_members_page_actions(project, alice, carol, client):
    client.force_login(carol)
    member = f"/projects/{project.slug}/members/{alice.id}/"
    response = client.post(member, {"action": "role", "role": "admin"}, follow=True)
    assert "alice is now an admin." in response.content.decode()
    response = client.post(f"/projects/{project.slug}/members/{carol.id}/",
                           {"action": "remove"}, follow=True)
    assert "carol removed" in response.content.decode()
    client.force_login(alice)
    response = client.post(f"/projects/{project.slug}/members/{alice.id}/",
                           {"action": "remove"}, follow=True)
    assert "last admin" in response.content.decode()


def test_the_members_page_says_each_password_refusal_in_a_fixed_number_of_queries(
        project, other_project, alice, carol, dave, make_user, client,
        django_assert_max_num_queries):
    services.membership_set(project=project, user=dave, role="labeler")  # dave is in P2 too
    client.force_login(carol)
    path = f"/projects/{project.slug}/members/"
    with django_assert_max_num_queries(30) as few:
        page = client.get(path).content.decode()
    assert "also belongs to projects you do not administer" in page  # dave's row
    assert "You cannot set your own password here." in page  # carol's row
    for number in range(12):
        services.membership_set(project=project, user=make_user(f"member{number}"),
                                role="labeler")
    with django_assert_max_num_queries(len(few.captured_queries)):
        client.get(path)
