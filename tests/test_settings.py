"""Settings come from the environment: embedded defaults, PostgreSQL + Redis, production."""

import json
import subprocess
import sys

import pytest

from tests.processes import ROOT, app_env

SHOW = (
    "import django, json; django.setup(); from django.conf import settings as s;"
    "print(json.dumps({'engine': s.DATABASES['default']['ENGINE'],"
    " 'name': str(s.DATABASES['default']['NAME']), 'broker': s.CELERY_BROKER_URL,"
    " 'debug': s.DEBUG}))"
)


def run_python(code: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=app_env(DJANGO_SETTINGS_MODULE="config.settings", **env),
    )


def run_manage(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=app_env(**env),
    )


def test_with_nothing_set_the_app_uses_sqlite_and_a_filesystem_broker_under_var(tmp_path):
    result = run_python(SHOW, VAR_DIR=str(tmp_path))
    shown = json.loads(result.stdout)
    assert shown["engine"] == "django.db.backends.sqlite3"
    assert shown["name"] == str(tmp_path / "db.sqlite3")
    assert shown["broker"].startswith("filesystem://") and shown["debug"] is True
    assert (tmp_path / "broker" / "queue").is_dir()


def test_database_and_broker_urls_switch_to_postgresql_and_redis(tmp_path):
    result = run_python(
        SHOW,
        VAR_DIR=str(tmp_path),
        DATABASE_URL="postgres://u@db:5432/rlhf",
        CELERY_BROKER_URL="redis://cache:6379/0",
    )
    shown = json.loads(result.stdout)
    assert (shown["engine"], shown["name"]) == ("django.db.backends.postgresql", "rlhf")
    assert shown["broker"] == "redis://cache:6379/0"


def test_production_refuses_to_start_without_a_secret_key(tmp_path):
    result = run_manage(
        "check", DJANGO_ENV="production", ALLOWED_HOSTS="x.org", VAR_DIR=str(tmp_path)
    )
    assert result.returncode != 0
    assert "SECRET_KEY must be set in the environment in production" in result.stderr


def test_production_refuses_to_start_without_allowed_hosts(tmp_path):
    result = run_manage(
        "check", DJANGO_ENV="production", SECRET_KEY="k" * 60, VAR_DIR=str(tmp_path)
    )
    assert result.returncode != 0 and "ALLOWED_HOSTS must be set" in result.stderr


def test_production_settings_pass_the_deployment_checks_without_warnings(tmp_path):
    result = run_manage(
        "check",
        "--deploy",
        "--fail-level",
        "WARNING",
        DJANGO_ENV="production",
        SECRET_KEY="a-production-secret-that-is-long-and-random-6f1c9d2b8e7a4c3f5b0e9d8c7",
        ALLOWED_HOSTS="rlhf.example.org",
        VAR_DIR=str(tmp_path),
    )
    assert result.returncode == 0, result.stderr
    assert "System check identified no issues (0 silenced)." in result.stdout


@pytest.mark.parametrize(("name", "value"), [("DJANGO_ENV", "staging"), ("DEBUG", "maybe")])
def test_a_bad_setting_value_is_named(tmp_path, name, value):
    result = run_manage("check", VAR_DIR=str(tmp_path), **{name: value})
    assert result.returncode != 0 and f"{name}={value!r}" in result.stderr


def test_development_gets_a_secret_of_its_own_kept_in_var(tmp_path):
    """No key everyone knows (it reversed export pseudonyms to user ids): each deployment
    makes its own on first run, keeps it owner-only in VAR_DIR and reads it back after."""
    show = ("import django; django.setup(); from django.conf import settings; "
            "print(settings.SECRET_KEY)")
    first = run_python(show, VAR_DIR=str(tmp_path / "a"))
    again = run_python(show, VAR_DIR=str(tmp_path / "a"))
    other = run_python(show, VAR_DIR=str(tmp_path / "b"))
    keys = [result.stdout.strip() for result in (first, again, other)]
    assert all(len(key) >= 50 for key in keys), [r.stderr for r in (first, again, other)]
    assert keys[0] == keys[1] != keys[2]
    assert "development-only-insecure-key" not in keys[0]
    assert (tmp_path / "a" / "secret_key").stat().st_mode & 0o777 == 0o600
    given = run_python(show, VAR_DIR=str(tmp_path / "c"), SECRET_KEY="mine" * 13)
    assert given.stdout.strip() == "mine" * 13 and not (tmp_path / "c" / "secret_key").exists()
