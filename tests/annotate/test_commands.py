"""The management commands an admin runs from a shell."""

import json

import pytest
from django.core.management import CommandError, call_command

from annotate.demo import DEMO_RANKINGS, DEMO_SLUG
from annotate.models import Membership, Project, Prompt, Ranking

pytestmark = pytest.mark.django_db


def test_create_project_then_add_labelers(capsys, django_user_model):
    call_command(
        "create_project",
        "qa",
        "--name",
        "QA",
        "--criterion",
        "helpfulness",
        "--completions-per-prompt",
        "3",
        "--labelers-per-prompt",
        "5",
        "--allow-ties",
    )
    project = Project.objects.get(slug="qa")
    assert (project.completions_per_prompt, project.labelers_per_prompt, project.allow_ties) == (
        3,
        5,
        True,
    )
    call_command("add_labeler", "qa", "erin", "--password", "erin-secret-1")
    call_command("add_labeler", "qa", "erin")
    out = capsys.readouterr().out
    assert "qa: erin created and added as a labeler." in out
    assert "qa: erin is already a labeler." in out
    erin = django_user_model.objects.get(username="erin")
    assert erin.check_password("erin-secret-1")
    assert Membership.objects.get(project=project, user=erin).role == "labeler"


def test_create_project_refuses_a_bad_k_and_a_taken_slug():
    with pytest.raises(CommandError, match="completions_per_prompt"):
        call_command(
            "create_project",
            "qa",
            "--name",
            "QA",
            "--criterion",
            "c",
            "--completions-per-prompt",
            "10",
        )
    call_command("create_project", "qa", "--name", "QA", "--criterion", "c")
    with pytest.raises(CommandError, match="slug"):
        call_command("create_project", "qa", "--name", "QA", "--criterion", "c")


def test_add_labeler_keeps_an_admin_an_admin(project, carol):
    call_command("add_labeler", project.slug, "carol")
    assert Membership.objects.get(user=carol).role == "admin"


def test_add_labeler_without_a_password_prints_an_invitation(project, capsys, django_user_model):
    call_command("add_labeler", project.slug, "ghost")
    out = capsys.readouterr().out
    assert "ghost has no password yet: send them /accounts/invitation/" in out
    assert not django_user_model.objects.get(username="ghost").has_usable_password()


def test_add_labeler_to_a_missing_project_fails():
    with pytest.raises(CommandError, match="No project with slug 'nope'"):
        call_command("add_labeler", "nope", "erin")


def test_load_demo_creates_accounts_and_a_project_once(capsys, django_user_model):
    call_command("load_demo")
    call_command("load_demo")
    out = capsys.readouterr().out
    assert "alice  password: alice-demo" in out
    project = Project.objects.get(slug=DEMO_SLUG)
    assert Prompt.objects.filter(project=project).count() == 16
    assert {m.user.username: m.role for m in project.memberships.select_related("user")} == {
        "admin": "admin",
        "alice": "labeler",
        "bob": "labeler",
    }
    assert django_user_model.objects.get(username="admin").check_password("admin-demo")
    # Half the prompts come ranked by alice and bob, as we judged them (the same order for
    # both), so a round can start at once; loading again adds none.
    judged = json.loads(DEMO_RANKINGS.read_text())["orders"]
    rankings = Ranking.objects.filter(prompt__project=project).select_related("prompt")
    assert rankings.count() == 2 * len(judged) == 16
    for ranking in rankings:
        positions = dict(ranking.prompt.completions.values_list("id", "position"))
        assert [positions[tier[0]] for tier in ranking.tiers] == judged[
            ranking.prompt.external_id]


def test_load_demo_has_a_project_per_annotation_mode_on_the_same_prompts(django_user_model):
    from annotate.services import demonstration_submit

    call_command("load_demo")
    call_command("load_demo")
    modes = dict(Project.objects.values_list("slug", "annotation_mode"))
    assert modes == {DEMO_SLUG: "rank", "demo-ratings": "rate",
                     "demo-demonstrations": "demonstrate"}
    rate = Project.objects.get(slug="demo-ratings")
    assert rate.rating_aspects == ["helpfulness", "honesty"]
    for project in Project.objects.exclude(slug=DEMO_SLUG):
        assert project.prompts.count() == 16
        assert not Ranking.objects.filter(prompt__project=project).exists()
    # alice can work in each at once: the rate page's scores and a demonstration are taken.
    alice = django_user_model.objects.get(username="alice")
    from annotate.services import assignment_next, ranking_submit

    lease = assignment_next(project=rate, labeler=alice)
    ids = list(lease.prompt.completions.values_list("id", flat=True))
    ranking_submit(project=rate, labeler=alice, prompt_id=lease.prompt_id, idempotency_key="r",
                   scores={str(i): {"helpfulness": 3, "honesty": 4} for i in ids})
    write = Project.objects.get(slug="demo-demonstrations")
    lease = assignment_next(project=write, labeler=alice)
    demonstration_submit(project=write, labeler=alice, prompt_id=lease.prompt_id,
                         text="A better answer.", idempotency_key="d")
    assert write.prompts.get(id=lease.prompt_id).demonstrations.count() == 1


def test_load_demo_is_refused_in_production(settings):
    settings.PRODUCTION = True
    with pytest.raises(Exception, match="refused in production"):
        call_command("load_demo")
    assert not Project.objects.exists()
