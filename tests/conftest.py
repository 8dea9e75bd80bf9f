"""Shared fixtures. Personas: alice and bob label, carol administers the project, dave
labels another project only, and root is the site's superuser."""

from pathlib import Path

import pytest
from rest_framework.test import APIClient

from annotate import services
from annotate.models import Membership
from tests.broker_space import broker_space_clean


@pytest.fixture(autouse=True)
def fast_password_hashing(settings):
    # The real hasher takes ~0.3 s a password by design; tests make many users.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def make_user(django_user_model):
    def make(username: str, **fields):
        return django_user_model.objects.create_user(username, password=f"{username}-pw", **fields)

    return make


@pytest.fixture
def project(db):
    return services.project_create(
        created_by=None,
        slug="helpful",
        name="Helpfulness",
        criterion="helpfulness",
        completions_per_prompt=4,
        labelers_per_prompt=3,
    )


@pytest.fixture
def other_project(db):
    return services.project_create(
        created_by=None,
        slug="harmless",
        name="Harmlessness",
        criterion="harmlessness",
        completions_per_prompt=2,
        labelers_per_prompt=3,
    )


@pytest.fixture
def alice(make_user, project):
    user = make_user("alice")
    services.membership_set(project=project, user=user, role=Membership.Role.LABELER)
    return user


@pytest.fixture
def carol(make_user, project):
    user = make_user("carol")
    services.membership_set(project=project, user=user, role=Membership.Role.ADMIN)
    return user


@pytest.fixture
def dave(make_user, other_project):
    user = make_user("dave")
    services.membership_set(project=other_project, user=user, role=Membership.Role.LABELER)
    return user


@pytest.fixture
def root(make_user):
    return make_user("root", is_staff=True, is_superuser=True)


@pytest.fixture
def api():
    def client_for(user=None) -> APIClient:
        client = APIClient()
        if user is not None:
            client.force_authenticate(user)
        return client

    return client_for


@pytest.fixture
def write_file(tmp_path):
    def write(name: str, data: bytes) -> Path:
        path = tmp_path / name
        path.write_bytes(data)
        return path

    return write


def pytest_report_header(config):
    from django.conf import settings

    engine = settings.DATABASES["default"]["ENGINE"].rsplit(".", 1)[-1]
    broker = settings.CELERY_BROKER_URL.split("://")[0]
    space = {k: v for k, v in getattr(settings, "TEST_BROKER_SPACE", {}).items()
             if k != "CELERY_BROKER_URL"}
    return f"rlhf-studio: database {engine}, broker {broker}, this run's space {space}"


def pytest_unconfigure(config):
    """Delete the run's broker space (tests/settings.py): what the tests sent and no worker
    took must not wait for `make run`'s worker or for the next run."""
    from django.conf import settings

    if not settings.configured or not hasattr(settings, "TEST_BROKER_SPACE"):
        return
    try:
        broker_space_clean(settings.TEST_BROKER_SPACE)
    except Exception as exc:  # a broker gone by now: say so, and do not hide the run's result
        print(f"\nrlhf-studio: broker space {settings.TEST_BROKER_SPACE} not deleted: {exc}")


@pytest.fixture(autouse=True)
def scorers_load_before_answering(settings):
    """A scoring request waits for its model to load, so tests get scores, not a 503
    (tests/training/test_scoring_bounds.py checks the 503 while a model loads)."""
    settings.SCORER_LOAD_WAIT_SECONDS = 300
