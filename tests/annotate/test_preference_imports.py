"""Importing the files users already have (issue 17, item 6): TRL preference rows and
UltraFeedback rows land as prompts with an imported ranking, bad rows write nothing, and a
TRL file (or the real HH-RLHF file) exports back to the pairs it holds."""

import gzip
import io
import json
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from annotate import services
from annotate.importers import FORMATS
from annotate.models import Completion, Prompt, PromptImport, Ranking
from tests.factories import jsonl_bytes, prompt_record

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def var_dir(settings, tmp_path):
    settings.VAR_DIR = tmp_path / "var"
    settings.VAR_DIR.mkdir()


def import_bytes(project, data: bytes, filename="pairs.jsonl", **options):
    return services.prompts_import(project=project, binary=io.BytesIO(data), filename=filename,
                                   **options)


def nothing_written() -> bool:
    return not (Prompt.objects.exists() or Completion.objects.exists()
                or Ranking.objects.exists() or PromptImport.objects.exists())


def stored(prompt: Prompt) -> tuple[list[str], list[list[str]]]:
    """The prompt's completions and its imported ranking, as texts."""
    completions = list(prompt.completions.order_by("position"))
    text_of = {completion.id: completion.text for completion in completions}
    ranking = prompt.rankings.get()
    assert (ranking.source, ranking.labeler) == (Ranking.Source.IMPORTED, None)
    return [c.text for c in completions], [[text_of[i] for i in tier] for tier in ranking.tiers]


def user(text):
    return {"role": "user", "content": text}


def assistant(text):
    return {"role": "assistant", "content": text}


TRL_TEXT = [
    {"prompt": "What is 2+2?", "chosen": "4.", "rejected": "5."},
    {"prompt": "Capital of France?", "chosen": "Paris.", "rejected": "Lyon."},
    {"prompt": "Say hi.", "chosen": "Hi!", "rejected": "No."},
]
TRL_CHAT = [
    {"prompt": [{"role": "system", "content": "Be brief."}, user("What is 2+2?")],
     "chosen": [assistant("4.")], "rejected": [assistant("5.")]},
    {"prompt": [user("Hi"), assistant("Hello!"), user("Capital of France?")],
     "chosen": [assistant("Paris.")], "rejected": [assistant("Lyon.")]},
    {"prompt": [user("Say hi.")], "chosen": [assistant("Hi!")], "rejected": [assistant("No.")]},
]


def test_a_trl_file_is_detected_and_imports_prompts_pairs_and_imported_rankings(other_project):
    record = import_bytes(other_project, jsonl_bytes(TRL_TEXT + TRL_CHAT, compress=True),
                          filename="pairs.jsonl.gz")
    assert (record.file_format, record.prompt_count, record.ranking_count) == ("trl", 6, 6)
    prompt = Prompt.objects.get(text="Capital of France?")
    assert stored(prompt) == (["Paris.", "Lyon."], [["Paris."], ["Lyon."]])
    chat = Prompt.objects.get(messages__0__content="Hi")
    assert chat.messages == TRL_CHAT[1]["prompt"]
    assert stored(chat) == (["Paris.", "Lyon."], [["Paris."], ["Lyon."]])


def test_an_ultrafeedback_file_imports_completions_models_and_a_ranking_by_score(project):
    def completion(model, response, score):
        return {"model": model, "principle": "honesty", "custom_system_prompt": "",
                "response": response, "critique": "", "overall_score": score,
                "annotations": {"helpfulness": {"Rating": "4", "Rationale": "ok"}}}

    row = {"source": "flan", "instruction": "Name a colour.", "models": ["a", "b", "c", "d"],
           "completions": [completion("a", "Blue.", 7.0), completion("b", "Red.", 9.5),
                           completion("c", "Car.", 2), completion("d", "Green.", 7.0)],
           "correct_answers": ["None"], "incorrect_answers": ["None"]}
    record = import_bytes(project, jsonl_bytes([row]), filename="ultrafeedback.jsonl")
    assert (record.file_format, record.prompt_count, record.ranking_count) == (
        "ultrafeedback", 1, 1)
    prompt = Prompt.objects.get()
    assert prompt.text == "Name a colour."
    assert stored(prompt) == (["Blue.", "Red.", "Car.", "Green."],
                              [["Red."], ["Blue.", "Green."], ["Car."]])
    assert list(prompt.completions.order_by("position").values_list("model_name", flat=True)) \
        == ["a", "b", "c", "d"]


def test_our_jsonl_takes_completions_as_assistant_messages(project):
    record = prompt_record(1, completions=[assistant(f"Answer {i}.") for i in range(4)])
    import_bytes(project, jsonl_bytes([record]), filename="prompts.jsonl")
    assert [c.text for c in Completion.objects.order_by("position")] == [
        f"Answer {i}." for i in range(4)]


@pytest.mark.parametrize(
    ("rows", "file_format", "expected"),
    [
        ([TRL_TEXT[0], {"prompt": "Q", "chosen": "A"}, TRL_TEXT[1]], "trl",
         "line 2, field 'rejected': is missing"),
        ([TRL_CHAT[0], {**TRL_CHAT[1], "chosen": [user("Paris.")]}], "trl",
         "line 2, field 'chosen': must be one assistant message"),
        ([{"instruction": "Q", "completions": [{"response": "A", "overall_score": 1},
                                               {"response": "B", "overall_score": "x"}]}],
         "ultrafeedback", "line 1, field 'completions[1].overall_score': must be a number"),
    ],
)
def test_a_bad_row_names_line_and_field_and_nothing_is_written(other_project, rows,
                                                               file_format, expected):
    with pytest.raises(services.ImportRejected) as caught:
        import_bytes(other_project, jsonl_bytes(rows), filename="pairs.jsonl")
    assert f"pairs.jsonl, {expected}" in str(caught.value)
    assert nothing_written()


def test_a_file_of_no_known_format_is_refused_naming_the_guess_and_the_formats(other_project):
    data = jsonl_bytes([{"question": "Q", "answer": "A"}])
    with pytest.raises(services.ImportRejected) as caught:
        import_bytes(other_project, data, filename="odd.jsonl")
    message = str(caught.value)
    assert "odd.jsonl, line 1, field 'format': cannot tell the format" in message
    assert "guessed jsonl" in message and f"Known formats: {', '.join(FORMATS)}" in message
    assert nothing_written()


def test_the_command_takes_the_new_format_names(project, other_project, write_file, capsys):
    path = write_file("pairs.jsonl", jsonl_bytes(TRL_TEXT))
    with pytest.raises(CommandError, match="TRL preference rows give 2 completions each"):
        call_command("import_prompts", "helpful", str(path), "--format", "trl")
    call_command("import_prompts", "harmless", str(path), "--format", "trl")
    assert "Imported 3 prompts, 6 completions and 3 reference rankings" in capsys.readouterr().out


def test_the_form_and_the_api_offer_the_new_format_names():
    from annotate.apis import PromptImportInput
    from annotate.forms import ImportForm

    form_choices = [name for name, _ in ImportForm().fields["format"].choices]
    api_choices = list(PromptImportInput().fields["format"].choices)
    for choices in (form_choices, api_choices):
        assert choices == ["auto", "jsonl", "csv", "hh-rlhf", "trl", "ultrafeedback"]


# --- round trips: import, export with the imported votes, compare ---------------------------


def exported_pairs(project, tmp_path) -> list[tuple[str, str, str]]:
    out = tmp_path / "export"
    call_command("export_preferences", project.slug, "--include-imported", "--min-votes", "1",
                 "--format", "trl-jsonl", "--out", str(out))
    rows = [json.loads(line) for split in ("train", "test")
            for line in (out / f"{split}.jsonl").read_text().splitlines()]
    return sorted(pair_of(row) for row in rows)


def pair_of(row: dict) -> tuple[str, str, str]:
    return tuple(json.dumps(row[key], sort_keys=True) for key in ("prompt", "chosen", "rejected"))


@pytest.mark.parametrize("rows", [TRL_TEXT, TRL_CHAT], ids=["text", "conversational"])
def test_a_trl_file_imports_and_exports_back_to_the_same_pairs(other_project, write_file,
                                                               tmp_path, rows):
    path = write_file("pairs.jsonl", jsonl_bytes(rows))
    call_command("import_prompts", other_project.slug, str(path))  # detected as trl
    assert exported_pairs(other_project, tmp_path) == sorted(pair_of(row) for row in rows)


def test_an_implicit_prompt_trl_file_exports_its_pairs_with_the_prompt_made_explicit(
        other_project, write_file, tmp_path):
    implicit = [{"chosen": row["prompt"] + row["chosen"], "rejected": row["prompt"] +
                 row["rejected"]} for row in TRL_CHAT]
    call_command("import_prompts", other_project.slug,
                 str(write_file("implicit.jsonl", jsonl_bytes(implicit))))
    assert exported_pairs(other_project, tmp_path) == sorted(pair_of(row) for row in TRL_CHAT)


HH_REAL = (
    Path(__file__).resolve().parents[3] / "shared" / "data" / "hh-rlhf-harmless-base-test.jsonl.gz"
)


def hh_transcript(messages: list[dict[str, str]]) -> str:
    speaker = {"user": "Human", "assistant": "Assistant"}
    return "".join(f"\n\n{speaker[m['role']]}: {m['content']}" for m in messages)


@pytest.mark.slow
@pytest.mark.skipif(not HH_REAL.exists(), reason="optional check: ../shared/data is not here")
def test_the_real_hh_rlhf_file_imports_and_exports_back_to_the_same_pairs(other_project,
                                                                          tmp_path):
    call_command("import_prompts", other_project.slug, str(HH_REAL), "--format", "hh-rlhf",
                 "--skip-invalid", stderr=io.StringIO(), stdout=io.StringIO())
    skipped = {skip["line"] for skip in PromptImport.objects.get().skipped}
    with gzip.open(HH_REAL, "rt", encoding="utf-8") as lines:
        expected = sorted((row["chosen"], row["rejected"]) for number, row in
                          enumerate(map(json.loads, lines), start=1) if number not in skipped)
    out = tmp_path / "export"
    call_command("export_preferences", other_project.slug, "--include-imported",
                 "--min-votes", "1", "--format", "trl-jsonl", "--out", str(out),
                 stdout=io.StringIO())
    rows = [json.loads(line) for split in ("train", "test")
            for line in (out / f"{split}.jsonl").read_text().splitlines()]
    back = sorted((hh_transcript(row["prompt"] + row["chosen"]),
                   hh_transcript(row["prompt"] + row["rejected"])) for row in rows)
    assert len(skipped) == 9 and len(back) == 2303
    assert back == expected
