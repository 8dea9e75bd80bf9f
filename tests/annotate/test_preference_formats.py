"""Files users already have (issue 17, item 6): TRL preference rows, UltraFeedback rows and
completions as chat messages, parsed without a database, and how detection names a guess."""

import doctest
import io
import json
import subprocess
import sys

import pytest

import annotate.preference_formats
from annotate.importers import FORMATS, PromptRow, RowError, guess_format, parse_prompts
from tests.factories import hh_record, jsonl_bytes, prompt_record


def parse(records, file_format: str, k: int = 2) -> list[PromptRow | RowError]:
    stream = io.BufferedReader(io.BytesIO(jsonl_bytes(records)))
    return list(parse_prompts(stream, file_format=file_format, completions_per_prompt=k,
                              max_bytes=10**9))


def one_row(record, file_format: str, k: int = 2) -> PromptRow:
    [row] = parse([record], file_format, k)
    assert isinstance(row, PromptRow), row
    return row


def one_error(record, file_format: str, k: int = 2) -> RowError:
    [error] = parse([record], file_format, k)
    assert isinstance(error, RowError), error
    return error


def user(text):
    return {"role": "user", "content": text}


def assistant(text):
    return {"role": "assistant", "content": text}


def texts(row: PromptRow) -> list[str]:
    return [completion.text for completion in row.completions]


# --- TRL ----------------------------------------------------------------------------------


def test_trl_text_rows_become_a_prompt_chosen_rejected_and_the_preference():
    row = one_row({"prompt": "Sky?", "chosen": "Blue.", "rejected": "Green."}, "trl")
    assert (row.text, row.messages, texts(row)) == ("Sky?", None, ["Blue.", "Green."])
    assert row.reference_tiers == [[0], [1]]
    assert row.metadata == {"source": "trl"}


def test_trl_conversational_rows_keep_the_prompt_messages_and_the_assistant_turns():
    record = {
        "prompt": [{"role": "system", "content": "Be brief."}, user("Sky?")],
        "chosen": [assistant("Blue.")],
        "rejected": [assistant("Green.")],
        "id": "q7",
    }
    row = one_row(record, "trl")
    assert (row.text, row.messages, row.external_id) == ("", record["prompt"], "q7")
    assert texts(row) == ["Blue.", "Green."] and row.reference_tiers == [[0], [1]]


def test_trl_implicit_prompt_conversations_share_their_beginning_as_the_prompt():
    history = [user("Hi"), assistant("Hello!"), user("Sky?")]
    row = one_row({"chosen": [*history, assistant("Blue.")],
                   "rejected": [*history, assistant("Green.")]}, "trl")
    assert (row.messages, texts(row)) == (history, ["Blue.", "Green."])


def test_trl_implicit_prompt_text_splits_where_the_answers_differ_as_trl_does():
    row = one_row({"chosen": "The sky is blue.", "rejected": "The sky is green."}, "trl")
    assert (row.text, texts(row)) == ("The sky is", [" blue.", " green."])


def test_trl_a_text_prompt_beside_whole_conversations_is_read_as_trl_reads_it():
    """HuggingFaceH4/ultrafeedback_binarized: a text prompt, and chosen/rejected that repeat
    it as the first user turn, with scores and a prompt_id beside them."""
    record = {
        "prompt": "Sky?", "prompt_id": "abc", "score_chosen": 8.0, "score_rejected": 3.5,
        "chosen": [user("Sky?"), assistant("Blue.")],
        "rejected": [user("Sky?"), assistant("Green.")],
        "messages": [user("Sky?"), assistant("Blue.")],
    }
    row = one_row(record, "trl")
    assert (row.messages, texts(row)) == ([user("Sky?")], ["Blue.", "Green."])
    assert row.metadata == {"source": "trl", "prompt_id": "abc", "score_chosen": 8.0,
                            "score_rejected": 3.5}


@pytest.mark.parametrize(
    ("record", "field", "message"),
    [
        ({"prompt": "Q", "chosen": "A"}, "rejected", "is missing"),
        ({"prompt": "Q", "chosen": "A", "rejected": "B", "score": 1}, "score", "unknown field"),
        ({"prompt": "Q", "chosen": "A", "rejected": [assistant("B")]}, "rejected",
         "must be a string, as 'chosen' is"),
        ({"prompt": "Q", "chosen": "", "rejected": "B"}, "chosen", "is empty"),
        ({"prompt": [user("Q")], "chosen": [assistant("A"), assistant("B")],
          "rejected": [assistant("B")]}, "chosen", "must be one assistant message"),
        ({"prompt": [user("Q")], "chosen": [user("A")], "rejected": [assistant("B")]},
         "chosen", "must be one assistant message"),
        ({"prompt": [user("Q"), assistant("A")], "chosen": [assistant("A")],
          "rejected": [assistant("B")]}, "prompt", "must end with a user message"),
        ({"prompt": [{"role": "robot", "content": "Q"}], "chosen": [assistant("A")],
          "rejected": [assistant("B")]}, "prompt[0].role", "must be one of"),
        ({"chosen": "Blue.", "rejected": "Green."}, "chosen", "shares no beginning"),
        ({"chosen": "Same words", "rejected": "Same words"}, "chosen", "must differ"),
        ({"chosen": [user("Q"), assistant("A")], "rejected": [user("Other"), assistant("B")]},
         "chosen", "shares no first message"),
    ],
)
def test_bad_trl_rows_name_the_line_and_field(record, field, message):
    error = one_error(record, "trl")
    assert (error.line, error.field) == (1, field) and message in error.message, error


def test_trl_rows_need_a_project_of_two_completions():
    [error] = parse([{"prompt": "Q", "chosen": "A", "rejected": "B"}], "trl", k=4)
    assert error.fatal and "TRL preference rows give 2 completions each" in error.message


# --- UltraFeedback ------------------------------------------------------------------------


def uf_completion(model, response, **scores):
    return {"model": model, "principle": "helpfulness", "custom_system_prompt": "Be helpful.",
            "response": response, "critique": "...", **scores}


def annotations(*ratings):
    aspects = ("helpfulness", "honesty", "instruction_following", "truthfulness")
    return {aspect: {"Rating": rating, "Rationale": "..."}
            for aspect, rating in zip(aspects, ratings, strict=False)}


def uf_record(*completions, **extra):
    return {"source": "evol_instruct", "instruction": "Name a colour.",
            "models": [c["model"] for c in completions], "completions": list(completions),
            "correct_answers": ["None"], "incorrect_answers": ["None"], **extra}


def test_ultrafeedback_rows_rank_by_overall_score_with_ties_and_keep_the_models():
    record = uf_record(
        uf_completion("gpt-4", "Blue.", overall_score=8.5, annotations=annotations("5")),
        uf_completion("llama-2-7b", "Red.", overall_score=6, **{"fine-grained_score": 4.75}),
        uf_completion("alpaca-7b", "Sky.", overall_score=9),
        uf_completion("falcon-40b", "Green.", overall_score=6),
    )
    row = one_row(record, "ultrafeedback", k=4)
    assert (row.text, row.messages) == ("Name a colour.", None)
    assert texts(row) == ["Blue.", "Red.", "Sky.", "Green."]
    assert [c.model_name for c in row.completions] == ["gpt-4", "llama-2-7b", "alpaca-7b",
                                                       "falcon-40b"]
    assert row.completions[0].generation_params == {"principle": "helpfulness",
                                                    "custom_system_prompt": "Be helpful."}
    assert row.reference_tiers == [[2], [0], [1, 3]]
    assert row.metadata["score"] == "overall_score"
    assert row.metadata["scores"] == [8.5, 6.0, 9.0, 6.0]
    assert row.metadata["dataset"] == "evol_instruct"


def test_ultrafeedback_without_overall_scores_ranks_by_fine_grained_score():
    record = uf_record(
        uf_completion("a", "One.", **{"fine-grained_score": 3.25}),
        uf_completion("b", "Two.", overall_score=9, **{"fine-grained_score": 4.5}),
    )
    row = one_row(record, "ultrafeedback")
    assert (row.metadata["score"], row.reference_tiers) == ("fine-grained_score", [[1], [0]])


def test_ultrafeedback_without_scores_ranks_by_the_mean_of_the_aspect_ratings():
    record = uf_record(
        uf_completion("a", "One.", annotations=annotations("5", "4", "N/A", "3")),  # 4.0
        uf_completion("b", "Two.", annotations=annotations("5", "5", "5", "5")),  # 5.0
        uf_completion("c", "Three.", annotations=annotations(4, 4)),  # 4.0
    )
    record["prompt"] = record.pop("instruction")
    row = one_row(record, "ultrafeedback", k=3)
    assert (row.metadata["score"], row.reference_tiers) == ("mean rating", [[1], [0, 2]])
    assert row.text == "Name a colour."


@pytest.mark.parametrize(
    ("completion", "field", "message"),
    [
        ({"model": "m", "overall_score": 5}, "completions[1].response", "is missing"),
        ({"model": "m", "response": " ", "overall_score": 5}, "completions[1].response",
         "is empty"),
        ({"model": "m", "response": "Hi", "overall_score": "high"},
         "completions[1].overall_score", "must be a number"),
        ({"model": "m", "response": "Hi", "rating": 5}, "completions[1].rating",
         "unknown field"),
        ({"model": "m", "response": "Hi"}, "completions[1]", "has no score"),
        ({"model": "m", "response": "Hi", "annotations": annotations("great")},
         "completions[1].annotations.helpfulness.Rating", "must be a number or 'N/A'"),
        ({"model": "m", "response": "Hi", "fine-grained_score": 4}, "completions",
         "different kinds of scores"),
    ],
)
def test_bad_ultrafeedback_rows_name_the_line_and_field(completion, field, message):
    record = uf_record(uf_completion("a", "One.", overall_score=7), completion)
    error = one_error(record, "ultrafeedback")
    assert (error.line, error.field) == (1, field) and message in error.message, error


def test_ultrafeedback_rows_must_have_the_projects_number_of_completions():
    record = uf_record(uf_completion("a", "One.", overall_score=7))
    error = one_error(record, "ultrafeedback", k=4)
    assert error.field == "completions" and "has 1 completions; this project takes 4" in (
        error.message)


# --- completions as chat messages ---------------------------------------------------------


def test_jsonl_completions_may_be_assistant_messages():
    record = prompt_record(1, k=2, completions=[
        assistant("Four."), {"role": "assistant", "content": "Five.", "model": "m-7b"}])
    row = one_row(record, "jsonl")
    assert texts(row) == ["Four.", "Five."]
    assert [c.model_name for c in row.completions] == ["", "m-7b"]


@pytest.mark.parametrize(
    ("completion", "field", "message"),
    [
        (user("Four."), "completions[1].role", "must be 'assistant'"),
        ({"content": "Four."}, "completions[1].role", "must be 'assistant'"),
        ({"role": "assistant", "content": ""}, "completions[1].content", "is empty"),
        ({"role": "assistant", "content": "x", "text": "y"}, "completions[1].text",
         "unknown field"),
    ],
)
def test_bad_message_completions_name_the_field(completion, field, message):
    error = one_error(prompt_record(1, k=2, completions=["Three.", completion]), "jsonl")
    assert (error.field, error.line) == (field, 1) and message in error.message, error


# --- detection ----------------------------------------------------------------------------


def head(*records) -> bytes:
    return jsonl_bytes(records)


@pytest.mark.parametrize(
    ("records", "expected"),
    [
        ([{"prompt": "Q", "chosen": "A", "rejected": "B"}], "trl"),
        ([{"chosen": [user("Q"), assistant("A")], "rejected": [user("Q"), assistant("B")]}],
         "trl"),
        ([{"chosen": "The sky is blue.", "rejected": "The sky is green."}], "trl"),
        ([hh_record("Q", "A", "B")], "hh-rlhf"),
        ([uf_record(uf_completion("a", "One.", overall_score=7))], "ultrafeedback"),
        ([{"prompt": "Q", "completions": [{"response": "A"}]}], "ultrafeedback"),
        ([prompt_record(1, completions=[assistant("A")])], "jsonl"),
        # a first line that is not JSON, or fits nothing, is passed over for one that fits
        (["{broken", {"x": 1}, {"prompt": "Q", "chosen": "A", "rejected": "B"}], "trl"),
    ],
)
def test_detection_reads_the_fields_of_the_first_lines(records, expected):
    guess = guess_format("data.jsonl", head(*records))
    assert (guess.file_format, guess.error) == (expected, None)


def test_detection_that_fails_names_the_line_its_guess_and_the_formats_known():
    guess = guess_format("data.jsonl", b"\n" + head({"question": "Q", "answers": ["A"]}))
    error = guess.error
    assert (guess.file_format, error.line, error.field, error.fatal) == (
        "jsonl", 2, "format", True)
    assert "fields (answers, question)" in error.message
    assert "guessed jsonl" in error.message
    assert f"Known formats: {', '.join(FORMATS)}" in error.message
    assert "trl" in FORMATS and "ultrafeedback" in FORMATS


def test_detection_of_pairs_without_transcripts_guesses_trl_not_hh_rlhf():
    guess = guess_format("data.jsonl", head({"prompt": "Q", "chosen": "A", "rejected": "B"}))
    assert guess.file_format == "trl"
    assert guess_format("x.jsonl", json.dumps({"chosen": 1, "rejected": 2}).encode()) == (
        guess.__class__("trl"))


# --- a pure core --------------------------------------------------------------------------


def test_the_preference_formats_load_no_django_and_their_examples_hold():
    code = ("import sys, annotate.preference_formats; "
            "print(sorted(m for m in sys.modules if 'django' in m))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True)
    assert result.stdout.strip() == "[]"
    failed, attempted = doctest.testmod(annotate.preference_formats)
    assert attempted > 0 and failed == 0
