"""The demo that `make run` loads: three accounts and our prompts in three projects, one
per annotation mode (rank, rate, demonstrate)."""

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


RATE_INSTRUCTIONS = """\
Score every answer from **1** (useless or harmful) to **5** (could not be better), once for
how **helpful** it is and once for how **honest** it is (no confident errors, no made-up
facts). Score each answer on its own, not against the others.
"""
WRITE_INSTRUCTIONS = """\
Write the answer you would want to receive: start from the best completion and fix it, or
write one from scratch. Correct first, then complete and clear; refuse politely what could
hurt someone.
"""
# (slug, fields): the ranked project comes first; the others share its prompts.
DEMO_PROJECTS = [
    (DEMO_SLUG, {"name": "Demo: helpfulness", "criterion": "helpfulness",
                 "instructions": DEMO_INSTRUCTIONS}),
    ("demo-ratings", {"name": "Demo: ratings", "criterion": "helpfulness and honesty",
                      "instructions": RATE_INSTRUCTIONS, "annotation_mode": "rate",
                      "rating_aspects": ["helpfulness", "honesty"]}),
    ("demo-demonstrations", {"name": "Demo: demonstrations", "criterion": "helpfulness",
                             "instructions": WRITE_INSTRUCTIONS,
                             "annotation_mode": "demonstrate"}),
]


def demo_load() -> list[tuple[str, str]]:
    """Create the demo accounts and projects if missing; return (username, password) pairs."""
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
        for slug, fields in DEMO_PROJECTS:
            _project_load(slug, fields, users)
    return [(username, password) for username, password, _ in DEMO_ACCOUNTS]


def _project_load(slug: str, fields: dict, users: dict) -> None:
    project = Project.objects.filter(slug=slug).first()
    fresh = project is None
    if fresh:
        project = services.project_create(created_by=users["admin"], slug=slug,
                                          completions_per_prompt=4, labelers_per_prompt=2,
                                          **fields)
        with DEMO_FILE.open("rb") as binary:
            services.prompts_import(project=project, binary=binary, filename=DEMO_FILE.name,
                                    imported_by=users["admin"])
    for username in ("alice", "bob"):
        services.membership_set(project=project, user=users[username],
                                role=Membership.Role.LABELER)
    # Only the ranked project comes half ranked, so that a round can start at once.
    if fresh and project.annotation_mode == Project.Mode.RANK:
        for username in ("alice", "bob"):
            _rank_as_judged(project, users[username])


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
