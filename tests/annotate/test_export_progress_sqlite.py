"""An export's progress on the SQLite default (a file), while others write: the export streams
its rows on its connection, so a progress write there would upgrade a read snapshot that
another writer's commit made stale, which SQLite refuses at once ("database is locked").
Found by the labeler-loop benchmark: a two-process export failed on its own child's
progress. The suite's SQLite database is in memory, so this runs in a process of its own on
a file."""

import json
import subprocess
import sys

import pytest

from tests.processes import ROOT, app_env

pytestmark = pytest.mark.slow

SCRIPT = r"""
import io, json, sqlite3, sys
import django
django.setup()
from django.conf import settings
from django.core.management import call_command
call_command("migrate", verbosity=0)
from annotate import services
from annotate.models import Export
from annotate.services import exports
from tests.factories import jsonl_bytes, prompt_record

project = services.project_create(created_by=None, slug="p", name="P", criterion="helpful",
                                  completions_per_prompt=2, labelers_per_prompt=1)
services.prompts_import(project=project, filename="p.jsonl", binary=io.BytesIO(jsonl_bytes(
    [prompt_record(i, completions=["a", "b"]) for i in range(4)])))
export = Export.objects.create(project=project, version=1, params={}, prompts_total=4)
exports.STREAM_CHUNK = 1  # the reads stay open past the first prompt, as a big export's do
rows = exports.prompts_with_rankings(project, exports.ExportParams())
next(rows)  # the streaming reads are open: their snapshot is taken
other = sqlite3.connect(settings.DATABASES["default"]["NAME"])
other.execute("UPDATE annotate_export SET heartbeat_at = '2026-01-01 00:00:00'")
other.commit()  # someone else commits meanwhile (a labeler, another part, the heartbeat)
other.close()
exports.export_progress(export.id)(exports.PROGRESS_EVERY)
list(rows)
export.refresh_from_db()
print(json.dumps({"prompts_done": export.prompts_done, "every": exports.PROGRESS_EVERY}))
"""


def test_progress_is_written_while_the_exports_reads_are_open_and_others_commit(tmp_path):
    env = app_env(DJANGO_SETTINGS_MODULE="config.settings", VAR_DIR=str(tmp_path / "var"))
    result = subprocess.run([sys.executable, "-c", SCRIPT], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    answer = json.loads(result.stdout.strip().splitlines()[-1])
    assert answer["prompts_done"] == answer["every"]
