"""An export trains a reward model with TRL unchanged: the data contract, end to end."""

import io

import pytest

from annotate import services
from tests.factories import hh_record, jsonl_bytes, prompt_record, rank_at_random

pytestmark = [pytest.mark.django_db, pytest.mark.slow]



def one_reward_training_step(train_file, model_dir, output_dir) -> float:
    from datasets import load_dataset
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    from trl import RewardConfig, RewardTrainer

    data = load_dataset("json", data_files={"train": str(train_file)}, split="train")
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir, num_labels=1)
    config = RewardConfig(
        output_dir=str(output_dir), max_steps=1, per_device_train_batch_size=2,
        bf16=False, use_cpu=True, report_to=[], logging_steps=1, save_strategy="no",
        activation_checkpointing=False,
    )
    trainer = RewardTrainer(model=model, args=config, train_dataset=data,
                            processing_class=tokenizer)
    result = trainer.train()
    return result.training_loss


@pytest.mark.parametrize("kind", ["plain", "conversational"])
def test_one_trl_reward_step_on_an_exported_file(kind, project, other_project, make_user,
                                                  tiny_models, tmp_path, settings):
    settings.VAR_DIR = tmp_path / "var"
    if kind == "plain":
        target = project
        rows = [prompt_record(i) for i in range(6)]
        services.prompts_import(project=target, binary=io.BytesIO(jsonl_bytes(rows)),
                                filename="p.jsonl")
        rank_at_random(target, [make_user(n) for n in ("ann", "ben", "cat")])
        params = services.ExportParams(min_votes=2, min_agreement=0.5, test_fraction=0.0,
                                       formats=("trl-jsonl",))
    else:
        target = other_project
        rows = [hh_record(f"Question {i}?", f"Good answer {i}.", "No.") for i in range(6)]
        services.prompts_import(project=target, binary=io.BytesIO(jsonl_bytes(rows)),
                                filename="hh.jsonl")
        params = services.ExportParams(min_votes=1, min_agreement=0.5, test_fraction=0.0,
                                       include_imported=True, formats=("trl-jsonl",))
    export = services.export_create(project=target, params=params, created_by=None,
                                    run_now=True)
    train_file = services.export_file_path(export, "train.jsonl")
    assert export.counts["pairs"]["train"] >= 6
    loss = one_reward_training_step(train_file, tiny_models["reward"], tmp_path / "out")
    assert loss > 0
