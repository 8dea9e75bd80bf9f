"""Reward model: train a one-output sequence classifier on an export's pairs."""

from pathlib import Path

from annotate.services import export_file_path
from config.errors import Invalid

from ..catalog import CatalogModel, check_role
from ..ml.config import LR_SCHEDULERS, RENDERINGS, REWARD_METHODS, RewardTrainingConfig
from ..ml.reward import report_lines
from .base import Curve, JobKind, ModelSlot, Param, job_params, model_location


class RewardKind(JobKind):
    name = "reward"
    label = "Reward model"
    help = "Train a reward model on an export's preference pairs; it is registered."
    config_class = RewardTrainingConfig
    entry = "training.ml.reward:train_reward_model"
    models = (ModelSlot("base", "reward", "Base model", artifact_kind="reward",
                        help="A base model of the catalog, or a reward model of this project "
                             "to continue training"),)
    takes_export = True
    registers = "reward"
    params = (
        Param("method", "kway: each completion forwarded once per prompt; trl: TRL's "
              "RewardTrainer", choices=REWARD_METHODS),
        Param("epochs"),
        Param("batch_size", "Pairs per optimiser step"),
        Param("learning_rate"),
        Param("max_length", "Tokens per sequence, capped at the model's positions; longer pairs "
              "are cut from the left of the conversation"),
        Param("rendering", "How a (prompt, response) becomes the model's input: auto picks "
              "the chat template, else the pair encoding for an encoder, else text",
              choices=RENDERINGS),
        Param("lora", "Train a LoRA adapter instead of every weight", label="LoRA adapter"),
        Param("lora_r", label="LoRA rank", advanced=True),
        Param("lora_alpha", label="LoRA alpha", advanced=True),
        Param("lora_dropout", label="LoRA dropout", advanced=True),
        Param("merge_adapter", "Also save the adapter merged into the base",
              label="Also save the merged model", advanced=True),
        Param("load_in_4bit", "CUDA only, with LoRA", label="Load in 4 bits", advanced=True),
        Param("weight_decay", advanced=True),
        Param("warmup_ratio", advanced=True),
        Param("lr_scheduler_type", label="Learning-rate schedule", choices=LR_SCHEDULERS,
              advanced=True),
        Param("max_grad_norm", "Gradient clipping (0: none)", advanced=True),
        Param("keep_checkpoints", "Keep the run's checkpoints after it finishes",
              advanced=True),
        Param("use_margin", "Use the export's margin column in the loss", advanced=True),
        Param("center_rewards_coefficient", advanced=True),
        Param("seed", advanced=True),
        Param("checkpoint_every", "Optimiser steps between checkpoints (0: never)",
              advanced=True),
        Param("eval_batch_size", advanced=True),
        Param("num_gpus", label="GPUs", advanced=True),
        Param("threads", "CPU threads (empty: all)", advanced=True),
    )
    curves = (Curve("Loss", ("loss",)), Curve("Pair accuracy in the batch", ("accuracy",)),
              Curve("Reward margin (chosen - rejected)", ("margin",)))
    set_by_job = {"base_model": "-", "train_file": "-", "output_dir": "-"}

    def check(self, project, request, resolved) -> dict | None:
        """Settle the input rendering now, so the job page and the model folder say it."""
        base, rendering = resolved["base"], request.params.get("rendering", "auto")
        if not isinstance(base, CatalogModel):
            return None  # a registered model keeps the rendering it was trained with
        facts = check_role(base, "reward", "base_model")
        if rendering == "chat_template" and not facts.chat_template:
            raise Invalid(f"rendering: {base.name}'s tokenizer has no chat template; choose "
                          "auto, pair or text")
        return {"rendering": facts.rendering} if rendering == "auto" else None

    def prepare(self, job, directory: Path) -> RewardTrainingConfig:
        if job.export is not None:
            train_file = export_file_path(job.export, "train.jsonl")
            test_file = export_file_path(job.export, "test.jsonl")
            eval_file = str(test_file) if test_file.stat().st_size else None
        else:
            train_file, eval_file = Path(job.dataset_path), job.eval_file or None
        return RewardTrainingConfig(
            base_model=model_location(job, "base"), train_file=str(train_file),
            eval_file=eval_file, output_dir=str(directory / "output"), **job_params(job))

    def artifact_fields(self, job, result: dict) -> dict:
        keep = ("steps", "train_pairs", "dropped_pairs", "truncated_pairs", "pairs_per_second",
                "train_seconds")
        metrics = {key: result[key] for key in keep if key in result}
        return {"model_dir": result["model_dir"], "merged_dir": result.get("merged_dir"),
                "is_adapter": bool(job.params.get("lora")), "export": job.export,
                "metrics": metrics | {"eval": result.get("eval")}}

    def report_lines(self, job) -> list[str]:
        name = job.params.get("model_name") or f"{job.project.slug}-reward"
        return [*report_lines(job.result),
                f"Registered as {name} (registry id {job.result.get('artifact_id')})"]


KIND = RewardKind()
