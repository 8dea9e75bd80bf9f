"""Reward model: train a one-output sequence classifier on an export's pairs, or (method
"regression") on the rated completions of a rate project's export (scores.jsonl)."""

from pathlib import Path

from annotate.models import Export
from annotate.services import export_file_path
from config.errors import Invalid

from ..catalog import CatalogModel, check_role
from ..export_contents import PAIRS, SCORES
from ..ml.config import LR_SCHEDULERS, RENDERINGS, REWARD_METHODS, RewardTrainingConfig
from ..ml.data import DataError
from ..ml.reward import report_lines
from ..ml.scores import read_scores
from .base import Curve, JobKind, ModelSlot, Param, job_params, model_location


class RewardKind(JobKind):
    name = "reward"
    label = "Reward model"
    help = ("Train a reward model on an export's preference pairs (or, by regression, on a "
            "rate project's scores); it is registered.")
    config_class = RewardTrainingConfig
    entry = "training.ml.reward:train_reward_model"
    models = (ModelSlot("base", "reward", "Base model", artifact_kind="reward",
                        help="A base model of the catalog, or a reward model of this project "
                             "to continue training"),)
    takes_export = True
    reads = (PAIRS, SCORES)
    registers = "reward"
    params = (
        Param("method", "kway: each completion forwarded once per prompt; trl: TRL's "
              "RewardTrainer; regression: tanh(output) fitted to each rated completion's "
              "score (a rate project's export, or a scores JSONL file)",
              choices=REWARD_METHODS),
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
        Param("held_out_fraction", "Regression: the fraction of prompts held out of rows "
              "without a split", advanced=True),
        Param("seed", advanced=True),
        Param("checkpoint_every", "Optimiser steps between checkpoints (0: never)",
              advanced=True),
        Param("eval_batch_size", advanced=True),
        Param("num_gpus", label="GPUs", advanced=True),
        Param("threads", "CPU threads (empty: all)", advanced=True),
    )
    curves = (Curve("Loss", ("loss",)), Curve("Pair accuracy in the batch", ("accuracy",)),
              Curve("Reward margin (chosen - rejected)", ("margin",)))
    # A regression model has no pairs: its batches log the squared error and the mean score.
    regression_curves = (Curve("Loss (squared error of tanh(output) to the score)", ("loss",)),
                         Curve("Mean predicted score in the batch", ("mean_prediction",)))
    set_by_job = {"base_model": "-", "train_file": "-", "output_dir": "-"}

    def export_reads(self, settings: dict) -> tuple[str, ...]:
        return (SCORES,) if settings.get("method") == "regression" else (PAIRS,)

    def job_named(self, settings: dict) -> str:
        return f"{self.label} (method {settings.get('method')})"

    def curves_for(self, settings: dict) -> tuple[Curve, ...]:
        return self.regression_curves if settings.get("method") == "regression" else self.curves

    def check(self, project, request, resolved) -> dict | None:
        """Refuse regression data that cannot train (before any job exists), and settle the
        input rendering now, so the job page and the model folder say it."""
        if request.params.get("method") == "regression":
            _check_scores(request)
        base, rendering = resolved["base"], request.params.get("rendering", "auto")
        if not isinstance(base, CatalogModel):
            return None  # a registered model keeps the rendering it was trained with
        facts = check_role(base, "reward", "base_model")
        if rendering == "chat_template" and not facts.chat_template:
            raise Invalid(f"rendering: {base.name}'s tokenizer has no chat template; choose "
                          "auto, pair or text")
        return {"rendering": facts.rendering} if rendering == "auto" else None

    def prepare(self, job, directory: Path) -> RewardTrainingConfig:
        if job.export is not None and job.params.get("method") == "regression":
            train_file = scores_file(job.export)
            test_file = export_file_path(job.export, "test.jsonl")  # its pairs, if any
            eval_file = str(test_file) if test_file.stat().st_size else None
        elif job.export is not None:
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
                "train_seconds", "method", "output", "train_rows", "truncated_rows",
                "rows_per_second")
        metrics = {key: result[key] for key in keep if key in result}
        if "held_out" in result:  # a regression model's held-out scores
            metrics["held_out"] = result["held_out"]
        return {"model_dir": result["model_dir"], "merged_dir": result.get("merged_dir"),
                "is_adapter": bool(job.params.get("lora")), "export": job.export,
                "metrics": metrics | {"eval": result.get("eval")}}

    def report_lines(self, job) -> list[str]:
        name = job.params.get("model_name") or f"{job.project.slug}-reward"
        return [*report_lines(job.result),
                f"Registered as {name} (registry id {job.result.get('artifact_id')})"]


KIND = RewardKind()


def scores_file(export: Export) -> Path:
    """Where an export keeps its rated completions (a rate project's export has them)."""
    return export_file_path(export, "train.jsonl").parent / "scores.jsonl"


def _check_scores(request) -> None:
    """Read the regression data now: a missing file, an export without scores or a bad line
    is refused with what and where, and no job is made."""
    if request.export_id is not None:
        export = Export.objects.get(id=request.export_id)
        path = scores_file(export)
        if not path.is_file():
            raise Invalid(f"export: v{export.version} has no scores.jsonl (regression trains "
                          "on a rate project's export; choose kway or trl for ranked pairs)")
    else:
        path = Path(request.dataset_path)
    try:
        read_scores(path)
    except DataError as exc:
        raise Invalid(f"dataset: {exc}") from None
