"""A database trigger: a ranking's tiers name exactly its prompt's completions, each once.

A CHECK constraint cannot look at another table, so this is a trigger, one per vendor.
The Python validation in annotate.ranking says the same thing with a clearer message;
this is the guarantee for every other writer (bulk loads, the shell, a future bug).
"""

from django.db import migrations

MESSAGE = "ranking tiers must name exactly the completions of the prompt, each once"

POSTGRES_FORWARD = f"""
CREATE OR REPLACE FUNCTION annotate_ranking_check_tiers() RETURNS trigger AS $$
DECLARE
    named bigint[];
    expected bigint[];
BEGIN
    IF jsonb_typeof(NEW.tiers) <> 'array' OR jsonb_array_length(NEW.tiers) = 0
       OR EXISTS (SELECT 1 FROM jsonb_array_elements(NEW.tiers) AS tier
                  WHERE jsonb_typeof(tier) <> 'array' OR jsonb_array_length(tier) = 0)
       OR EXISTS (SELECT 1 FROM jsonb_array_elements(NEW.tiers) AS tier,
                                jsonb_array_elements(tier) AS item
                  WHERE jsonb_typeof(item) <> 'number') THEN
        RAISE EXCEPTION '{MESSAGE} (tiers must be a non-empty list of non-empty lists of ids)'
            USING ERRCODE = 'check_violation';
    END IF;
    SELECT array_agg(item::text::bigint ORDER BY item::text::bigint) INTO named
        FROM jsonb_array_elements(NEW.tiers) AS tier, jsonb_array_elements(tier) AS item;
    SELECT array_agg(id ORDER BY id) INTO expected
        FROM annotate_completion WHERE prompt_id = NEW.prompt_id;
    IF named IS DISTINCT FROM expected THEN
        RAISE EXCEPTION '{MESSAGE} (prompt %)', NEW.prompt_id USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END
$$ LANGUAGE plpgsql;

CREATE TRIGGER annotate_ranking_check_tiers
    BEFORE INSERT OR UPDATE OF tiers, prompt_id ON annotate_ranking
    FOR EACH ROW EXECUTE FUNCTION annotate_ranking_check_tiers();
"""

POSTGRES_BACKWARD = """
DROP TRIGGER IF EXISTS annotate_ranking_check_tiers ON annotate_ranking;
DROP FUNCTION IF EXISTS annotate_ranking_check_tiers();
"""

# SQLite: the named ids must be integers, as many as the prompt's completions, and every
# completion must appear among them: then they are exactly those completions, each once.
SQLITE_VALID = """
json_valid(NEW.tiers) AND json_type(NEW.tiers) = 'array' AND json_array_length(NEW.tiers) > 0
AND NOT EXISTS (SELECT 1 FROM json_each(NEW.tiers) AS tier
                WHERE tier.type <> 'array' OR json_array_length(tier.value) = 0)
AND NOT EXISTS (SELECT 1 FROM json_each(NEW.tiers) AS tier, json_each(tier.value) AS item
                WHERE item.type <> 'integer')
AND (SELECT count(*) FROM json_each(NEW.tiers) AS tier, json_each(tier.value) AS item)
    = (SELECT count(*) FROM annotate_completion WHERE prompt_id = NEW.prompt_id)
AND (SELECT count(DISTINCT item.value) FROM json_each(NEW.tiers) AS tier,
            json_each(tier.value) AS item
     WHERE item.value IN (SELECT id FROM annotate_completion WHERE prompt_id = NEW.prompt_id))
    = (SELECT count(*) FROM annotate_completion WHERE prompt_id = NEW.prompt_id)
"""

SQLITE_FORWARD = [
    f"""
    CREATE TRIGGER annotate_ranking_check_tiers_{event.split()[0].lower()}
    BEFORE {event} ON annotate_ranking
    WHEN NOT ({SQLITE_VALID})
    BEGIN SELECT RAISE(ABORT, 'CHECK constraint failed: {MESSAGE}'); END;
    """
    for event in ("INSERT", "UPDATE OF tiers, prompt_id")
]

SQLITE_BACKWARD = [
    "DROP TRIGGER IF EXISTS annotate_ranking_check_tiers_insert",
    "DROP TRIGGER IF EXISTS annotate_ranking_check_tiers_update",
]


def run(schema_editor, statements: list[str]) -> None:
    # A raw cursor: the PL/pgSQL body has a '%' that the schema editor would read as a parameter.
    with schema_editor.connection.cursor() as cursor:
        for statement in statements:
            cursor.execute(statement)


def forward(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    if vendor == "postgresql":
        run(schema_editor, [POSTGRES_FORWARD])
    elif vendor == "sqlite":
        run(schema_editor, SQLITE_FORWARD)
    else:
        raise NotImplementedError(f"no ranking tiers trigger for database vendor {vendor!r}")


def backward(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    run(schema_editor, [POSTGRES_BACKWARD] if vendor == "postgresql" else SQLITE_BACKWARD)


class Migration(migrations.Migration):
    dependencies = [("annotate", "0001_initial")]
    operations = [migrations.RunPython(forward, backward)]
