"""Drop completion.prompt's own index (issue 19's import): 40,000 entries for 10,000 prompts.

The unique (prompt, position) index leads with the same column and serves every lookup of a
prompt's completions (in position order, too) and a prompt's deletion.

prompt.project keeps its own: the (project, ...) indexes would serve its lookups on
PostgreSQL, but on SQLite a single-column index is (project, rowid), which next-prompt's
busy candidates (project = ? AND id IN (...)) probe by id; from (project, ranking_count, id)
SQLite walks the whole project instead (test_labeling_queries).

Only the index is dropped: Django's AlterField would also drop and re-add the foreign key on
PostgreSQL (checking every row again) and copy the whole table on SQLite.
"""

import django.db.models.deletion
from django.db import migrations, models

INDEX = "annotate_completion_prompt_id_460e9726"


class Migration(migrations.Migration):

    dependencies = [
        ('annotate', '0014_prompt_part_ranked_idx'),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[
                migrations.RunSQL(f'DROP INDEX IF EXISTS "{INDEX}"',
                                  f'CREATE INDEX "{INDEX}" ON "annotate_completion" ("prompt_id")'),
            ],
            state_operations=[
                migrations.AlterField(
                    model_name='completion',
                    name='prompt',
                    field=models.ForeignKey(
                        db_index=False, on_delete=django.db.models.deletion.CASCADE,
                        related_name='completions', to='annotate.prompt'),
                ),
            ],
        ),
    ]
