"""Reward models on real-shaped data (issue 14): conversations for any tokenizer, every pair
kept (truncated to the model's limits, in training and evaluation), runs that own their
checkpoints, a K-way loop that steps like Trainer, and commands that say what they did.

Tiny models are built offline: the Llama of training.ml.tiny (a chat template) and, here, a
tiny BERT whose tokenizer has no chat template (as MiniLM's) and 64 positions."""

import io
import json
import random

import pytest

from training.ml import data
from training.ml.config import RewardTrainingConfig
from training.ml.progress import Cancelled, RecordingReporter

pytestmark = pytest.mark.slow
POSITIONS = 64


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory):
    """A BERT reward model with a WordPiece tokenizer, [CLS]/[SEP] pairs, no chat template."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import BertConfig, BertForSequenceClassification, PreTrainedTokenizerFast

    from training.ml.tiny import _corpus

    folder = tmp_path_factory.mktemp("tiny-bert")
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tokenizer = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.train_from_iterator(_corpus(), trainers.WordPieceTrainer(
        vocab_size=400, special_tokens=specials))
    cls, sep = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls), ("[SEP]", sep)])
    wrapped = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, pad_token="[PAD]", unk_token="[UNK]", cls_token="[CLS]",
        sep_token="[SEP]", mask_token="[MASK]", model_max_length=POSITIONS)
    wrapped.save_pretrained(folder)
    import torch

    torch.manual_seed(0)
    BertForSequenceClassification(BertConfig(
        vocab_size=len(wrapped), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=POSITIONS, num_labels=1,
        pad_token_id=wrapped.pad_token_id)).save_pretrained(folder)
    return folder


def chat_rows(count: int, seed: int, history: int = 0, first_id: int = 0) -> list[dict]:
    """Conversations (message lists) where the reply with more "helpful" wins; `history`
    earlier turns of filler words make the prompt long."""
    rng = random.Random(seed)
    words = "the answer is here and there a question of time".split()
    rows = []
    for n in range(count):
        turns = []
        for _ in range(history):
            turns += [{"role": "user", "content": " ".join(rng.choices(words, k=12))},
                      {"role": "assistant", "content": " ".join(rng.choices(words, k=12))}]
        question = [{"role": "user", "content": f"question {n} " + " ".join(rng.choices(words,
                                                                                      k=4))}]
        rows.append({"prompt_id": first_id + n, "prompt": turns + question,
                     "chosen": [{"role": "assistant", "content": "helpful helpful answer"}],
                     "rejected": [{"role": "assistant", "content": "the answer"}]})
    return rows


def write(path, rows) -> str:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return str(path)


def reward_config(base, train, out, **overrides) -> RewardTrainingConfig:
    values = dict(base_model=str(base), train_file=str(train), output_dir=str(out), epochs=2,
                  batch_size=8, learning_rate=3e-3, checkpoint_every=0, threads=2)
    return RewardTrainingConfig(**values | overrides)


# --- 1. an export that keeps nothing says why ---------------------------------------------------


def test_an_export_of_single_vote_pairs_says_why_and_exits_non_zero(other_project, var_dir):
    from django.core.management import call_command
    from django.core.management.base import CommandError

    from annotate import services
    from tests.factories import hh_record, jsonl_bytes

    services.prompts_import(project=other_project, filename="hh.jsonl",
                            binary=io.BytesIO(jsonl_bytes([hh_record("Q1", "fine", "rude"),
                                                           hh_record("Q2", "kind", "mean")])),
                            file_format="hh-rlhf")
    with pytest.raises(CommandError, match="every pair has 1 vote; --min-votes is 2"):
        call_command("export_preferences", other_project.slug, "--include-imported",
                     "--format", "trl-jsonl")
    with pytest.raises(CommandError, match="add --include-imported"):
        call_command("export_preferences", other_project.slug, "--format", "trl-jsonl")
    out = io.StringIO()
    call_command("export_preferences", other_project.slug, "--include-imported",
                 "--min-votes", "1", "--format", "trl-jsonl", stdout=out)
    assert "pairs from 2 rankings" in out.getvalue()


def test_export_help_shows_the_defaults():
    from annotate.management.commands.export_preferences import Command

    text = " ".join(Command().create_parser("manage.py", "export_preferences")
                    .format_help().split())
    assert "(default: 2)" in text and "(default: 0.1)" in text


# --- 2. conversations for a tokenizer with no chat template ---------------------------------------


def test_the_rendering_is_chosen_from_the_tokenizer(tiny_models, tiny_bert):
    from training.ml.loading import load_tokenizer

    assert data.choose_rendering(load_tokenizer(str(tiny_models["reward"]))) == "chat_template"
    assert data.choose_rendering(load_tokenizer(str(tiny_bert))) == "pair"
    with pytest.raises(ValueError, match="no chat template"):
        data.resolve_rendering("chat_template", load_tokenizer(str(tiny_bert)))


def test_an_encoder_without_a_chat_template_trains_on_conversations(tiny_bert, tmp_path):
    from training.ml.reward import train_reward_model

    train = write(tmp_path / "train.jsonl", chat_rows(24, seed=1))
    test = write(tmp_path / "test.jsonl", chat_rows(8, seed=2, first_id=100))
    result = train_reward_model(reward_config(tiny_bert, train, tmp_path / "out",
                                              eval_file=test, epochs=4),
                                RecordingReporter())
    assert result["rendering"] == "pair" and result["eval"]["pairs"] == 8
    assert result["eval"]["accuracy"] == 1.0  # "helpful" is learned from the reply segment
    saved = json.loads((tmp_path / "out" / "model" / data.RENDERING_FILE).read_text())
    assert saved == {"rendering": "pair", "max_length": POSITIONS}


# --- 3, 4, 5. every model's limits; long pairs truncated, kept and counted ----------------


def test_a_long_held_out_pair_is_truncated_not_a_crash_after_training(tiny_bert, tmp_path):
    from training.ml.reward import train_reward_model

    train = write(tmp_path / "train.jsonl", chat_rows(8, seed=1))
    test = write(tmp_path / "test.jsonl", chat_rows(3, seed=2, first_id=100)
                 + chat_rows(2, seed=3, history=6, first_id=200))  # over 64 positions
    result = train_reward_model(reward_config(tiny_bert, train, tmp_path / "out", epochs=1,
                                              max_length=32, eval_file=test),
                                RecordingReporter())
    assert result["eval"]["pairs"] == 5 and result["eval"]["truncated"] == 2


def test_max_length_over_the_models_positions_is_capped_and_long_pairs_train(tiny_bert,
                                                                            tmp_path):
    from training.ml.reward import report_lines, train_reward_model

    rows = chat_rows(12, seed=1) + chat_rows(4, seed=4, history=6, first_id=50)
    reporter = RecordingReporter()
    result = train_reward_model(reward_config(tiny_bert, write(tmp_path / "t.jsonl", rows),
                                              tmp_path / "out", epochs=1, max_length=1024),
                                reporter)
    assert result["max_length"] == POSITIONS and result["requested_max_length"] == 1024
    assert (result["train_pairs"], result["truncated_pairs"], result["dropped_pairs"]) == (16, 4,
                                                                                           0)
    lines = report_lines(result)
    assert "asked 1024, model limit 64" in lines[0]
    assert "Trained on 16 pairs: 4 truncated to 64 tokens, 0 dropped" in lines[1]
    assert any("over the model's 64 positions" in message for message in reporter.messages)


@pytest.mark.parametrize("model", ["llama", "bert"])
def test_truncation_keeps_the_reply_whole_and_cuts_the_conversation_from_the_left(
        model, tiny_models, tiny_bert):
    from training.ml.loading import load_tokenizer

    tokenizer = load_tokenizer(str(tiny_models["reward"] if model == "llama" else tiny_bert))
    (row,) = chat_rows(1, seed=5, history=8)
    full = data.encode(tokenizer, row["prompt"], row["chosen"], "auto")
    cut = data.encode(tokenizer, row["prompt"], row["chosen"], "auto", max_length=40)
    assert len(full.ids) > 40 and len(cut.ids) <= 40 and cut.truncated and not full.truncated
    text = tokenizer.decode(cut.ids, skip_special_tokens=True)
    assert text.rstrip().endswith("helpful helpful answer")
    assert "question 0" in text  # the latest turn of the conversation is kept
    whole = tokenizer.decode(full.ids, skip_special_tokens=True)
    assert whole.endswith(text[-30:]) and not text.startswith(whole[:30])


def test_the_kway_and_trl_methods_keep_and_count_the_same_long_pairs(tiny_models, tmp_path):
    from training.ml.reward import train_reward_model

    rows = chat_rows(8, seed=1) + chat_rows(3, seed=4, history=6, first_id=50)
    train = write(tmp_path / "t.jsonl", rows)
    for method in ("kway", "trl"):
        result = train_reward_model(reward_config(tiny_models["reward"], train,
                                                  tmp_path / method, epochs=1, max_length=48,
                                                  method=method), RecordingReporter())
        assert (result["train_pairs"], result["truncated_pairs"], result["dropped_pairs"]) == (
            11, 3, 0), method


# --- 6. checkpoints belong to a run ---------------------------------------------------------------


@pytest.mark.parametrize("method", ["kway", "trl"])
def test_a_resume_with_other_settings_is_refused(method, tiny_models, tmp_path):
    from training.ml.checkpoints import OtherRunsCheckpoint
    from training.ml.reward import train_reward_model

    train = write(tmp_path / "t.jsonl", chat_rows(32, seed=1))
    first = reward_config(tiny_models["reward"], train, tmp_path / "out", method=method,
                          batch_size=4, checkpoint_every=2, max_length=128)
    with pytest.raises(Cancelled):
        train_reward_model(first, RecordingReporter(stop_after=3))
    other = reward_config(tiny_models["reward"], train, tmp_path / "out", method=method,
                          batch_size=4, checkpoint_every=2, max_length=64)
    with pytest.raises(OtherRunsCheckpoint, match="max_length 128 there, 64 here"):
        train_reward_model(other, RecordingReporter())
    result = train_reward_model(first, RecordingReporter())  # the same run resumes
    assert result["resumed_from_step"] == 2


@pytest.mark.parametrize("keep", [False, True])
def test_a_finished_run_removes_its_checkpoints_unless_asked_to_keep_them(keep, tiny_models,
                                                                         tmp_path):
    from training.ml.reward import CHECKPOINT, train_reward_model

    train = write(tmp_path / "t.jsonl", chat_rows(16, seed=1))
    train_reward_model(reward_config(tiny_models["reward"], train, tmp_path, batch_size=4,
                                     checkpoint_every=2, keep_checkpoints=keep),
                       RecordingReporter())
    assert (tmp_path / CHECKPOINT).exists() == keep
    assert (tmp_path / "model" / "model.safetensors").is_file()


# --- the K-way loop optimises as Trainer does -----------------------------------------------------


def test_one_kway_step_equals_one_trainer_step_with_clipping_and_decay(tiny_models, tmp_path):
    """All pairs in one batch: the order inside it cannot matter, so the weights after one
    step must agree; a small max_grad_norm makes the clipping decide the step."""
    from training.ml.reward import train_reward_model
    from training.ml.scoring import RewardScorer

    train = write(tmp_path / "t.jsonl", chat_rows(8, seed=1))
    weights = {}
    for method in ("kway", "trl"):
        result = train_reward_model(reward_config(
            tiny_models["reward"], train, tmp_path / method, method=method, epochs=1,
            batch_size=8, learning_rate=1e-2, weight_decay=0.1, max_grad_norm=0.05),
            RecordingReporter())
        assert result["steps"] == 1
        weights[method] = RewardScorer.load(result["model_dir"]).model.state_dict()
    base = RewardScorer.load(str(tiny_models["reward"])).model.state_dict()
    moved = sum((weights["kway"][n] - base[n]).abs().sum().item() for n in base)
    assert moved > 0
    for name, value in weights["kway"].items():  # steps of 1e-2; AdamW's first step is
        # about lr * sign(gradient), so float noise in a near-zero gradient moves a weight
        # by up to lr: allow 1% of a step
        assert value.allclose(weights["trl"][name], atol=1e-4), name


def test_the_warmup_and_schedule_options_drive_the_kway_learning_rate(tiny_models, tmp_path):
    from training.ml.reward import train_reward_model

    train = write(tmp_path / "t.jsonl", chat_rows(40, seed=1))
    reporter = RecordingReporter()
    train_reward_model(reward_config(tiny_models["reward"], train, tmp_path, epochs=1,
                                     batch_size=4, learning_rate=1e-3, warmup_ratio=0.2,
                                     lr_scheduler_type="cosine"), reporter)
    rates = [metrics["learning_rate"] for _, _, metrics in reporter.steps]
    assert len(rates) == 10 and rates[:3] == pytest.approx([0, 5e-4, 1e-3])  # 2 warmup steps
    assert rates[-1] < rates[5] < rates[3] < rates[2]


# --- 7. pipeline and RewardScorer read the same input ---------------------------------------------


@pytest.mark.parametrize("model", ["llama", "bert"])
def test_a_pipeline_on_reward_input_agrees_with_the_scorer_on_chat_data(model, tiny_models,
                                                                        tiny_bert, tmp_path):
    from transformers import pipeline

    from training.ml.loading import load_tokenizer
    from training.ml.reward import train_reward_model
    from training.ml.scoring import RewardScorer

    base = tiny_models["reward"] if model == "llama" else tiny_bert
    train = write(tmp_path / "t.jsonl", chat_rows(16, seed=1))
    result = train_reward_model(reward_config(base, train, tmp_path, epochs=1),
                                RecordingReporter())
    path = result["model_dir"]
    scorer = RewardScorer.load(path)
    items = [(row["prompt"], row[side]) for row in chat_rows(3, seed=7, history=1)
             for side in ("chosen", "rejected")] + [("Say hi.", " helpful hello.")]
    ours = scorer.score(items)
    pipe = pipeline("text-classification", model=path, function_to_apply="none", device="cpu")
    tokenizer = load_tokenizer(path)
    rendering = data.saved_rendering(path)["rendering"]
    assert rendering == ("chat_template" if model == "llama" else "pair")
    theirs = [pipe(data.reward_input(tokenizer, p, r, rendering))["score"] for p, r in items]
    assert ours == pytest.approx(theirs, abs=1e-4)
    assert len(set(round(s, 4) for s in ours)) > 1


def test_a_long_pair_input_is_cut_as_text_so_a_pipeline_reads_what_training_read(tiny_bert):
    from training.ml.loading import load_tokenizer

    tokenizer = load_tokenizer(str(tiny_bert))
    (row,) = chat_rows(1, seed=5, history=8)
    cut = data.reward_input(tokenizer, row["prompt"], row["chosen"], "pair", max_length=40)
    assert cut["text_pair"] == "helpful helpful answer"
    assert tokenizer(**cut)["input_ids"] == data.encode(
        tokenizer, row["prompt"], row["chosen"], "pair", max_length=40).ids
