"""The settings of one test run: the app's own (config.settings), with a broker space and a
test database name of this run's own, so two runs, or a run and `make run`, never share
messages or a database. tests/conftest.py deletes the space when the run ends."""

import os

from tests.broker_space import broker_space_make, run_name

TEST_RUN = run_name()
# The environment selects the space, before the app's settings read it; a worker that a
# test starts for this run gets the same variables (tests.processes.run_broker_env).
TEST_BROKER_SPACE = broker_space_make(os.environ.get("CELERY_BROKER_URL", "filesystem://"),
                                      TEST_RUN)
os.environ.update(TEST_BROKER_SPACE)

from config.settings import *  # noqa: E402, F403

if DATABASES["default"]["ENGINE"] != "django.db.backends.sqlite3":  # noqa: F405
    # SQLite's test database lives in the run's memory; a server's is named after the run.
    _database = DATABASES["default"]  # noqa: F405
    _database.setdefault("TEST", {})["NAME"] = f"test_{_database['NAME']}_{TEST_RUN}"
