"""The demo that `make run` loads: three accounts and a project of prompts we wrote."""

import json
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import ImproperlyConfigured
from django.db import transaction

from . import services
from .models import Membership, Project

DEMO_FILE = Path(__file__).parent / "demo_data" / "prompts.jsonl"
DEMO_RANKINGS = Path(__file__).parent / "demo_data" / "rankings.json"
DEMO_SLUG = "demo-helpfulness"
# Printed by `make run`; refused in production (no default accounts there).
DEMO_ACCOUNTS = [
    ("admin", "admin-demo", True),
    ("alice", "alice-demo", False),
    ("bob", "bob-demo", False),
]
DEMO_INSTRUCTIONS = """\
Rank the answers from **most** to **least helpful** for the person asking.

- Correctness comes first: a confident wrong answer is worse than a short right one.
- Then completeness and clarity: does it answer what was asked, and is it easy to follow?
- A polite refusal is the *best* answer to a request that could hurt someone.
"""


def demo_load() -> list[tuple[str, str]]:
    """Create the demo accounts and project if missing; return (username, password) pairs."""
    if settings.PRODUCTION:
        raise ImproperlyConfigured("The demo's default accounts are refused in production.")
    User = get_user_model()
    with transaction.atomic():
        users = {}
        for username, password, is_admin in DEMO_ACCOUNTS:
            user, _ = User.objects.get_or_create(username=username)
            user.set_password(password)
            user.is_staff = user.is_superuser = is_admin
            user.save()
            users[username] = user
        project = Project.objects.filter(slug=DEMO_SLUG).first()
        if project is None:
            project = services.project_create(
                created_by=users["admin"],
                slug=DEMO_SLUG,
                name="Demo: helpfulness",
                criterion="helpfulness",
                instructions=DEMO_INSTRUCTIONS,
                completions_per_prompt=4,
                labelers_per_prompt=2,
            )
            with DEMO_FILE.open("rb") as binary:
                services.prompts_import(
                    project=project,
                    binary=binary,
                    filename=DEMO_FILE.name,
                    imported_by=users["admin"],
                )
            fresh = True
        else:
            fresh = False
        for username in ("alice", "bob"):
            services.membership_set(
                project=project, user=users[username], role=Membership.Role.LABELER
            )
        if fresh:
            for username in ("alice", "bob"):
                _rank_as_judged(project, users[username])
    return [(username, password) for username, password, _ in DEMO_ACCOUNTS]


def _rank_as_judged(project: Project, labeler) -> None:
    """Rank, as `labeler`, the demo prompts we judged (demo_data/rankings.json), through the
    labeling service like any labeler; stop at the first prompt we did not judge (it stays
    leased to them, their first prompt when they log in)."""
    orders = json.loads(DEMO_RANKINGS.read_text())["orders"]
    while lease := services.assignment_next(project=project, labeler=labeler):
        order = orders.get(lease.prompt.external_id)
        if order is None:
            return
        ids = dict(lease.prompt.completions.values_list("position", "id"))
        services.ranking_submit(project=project, labeler=labeler, prompt_id=lease.prompt_id,
                                tiers=[[ids[position]] for position in order],
                                idempotency_key=f"demo-{lease.prompt.external_id}")
