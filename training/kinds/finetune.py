"""What the SFT and DPO kinds share: a policy to start from, an export (or a file) to train
on, the same settings, and a registered policy as the result."""

from pathlib import Path

from annotate.services import export_file_path

from ..ml.config import LR_SCHEDULERS
from .base import JobKind, ModelSlot, Param, job_params, model_location

POLICY_SLOT = ModelSlot("base", "policy", "Policy", artifact_kind="policy",
                        help="A causal LM of the catalog, or a policy of this project to go "
                             "on from (its LoRA adapter is trained further)")

SHARED_PARAMS = (
    Param("epochs"),
    Param("batch_size", "Examples (DPO: pairs) per optimiser step"),
    Param("learning_rate"),
    Param("max_length", "Tokens of prompt and completion; a longer example loses its end"),
    Param("lora", "Train a LoRA adapter instead of every weight", label="LoRA adapter"),
    Param("lora_r", label="LoRA rank", advanced=True),
    Param("lora_alpha", label="LoRA alpha", advanced=True),
    Param("lora_dropout", label="LoRA dropout", advanced=True),
    Param("merge_adapter", "Also save the adapter merged into the base",
          label="Also save the merged model", advanced=True),
    Param("eval_fraction", "Of the training data, held out to evaluate when the export has no "
          "test split (or a file has no --eval-file)", advanced=True),
    Param("warmup_ratio", advanced=True),
    Param("lr_scheduler_type", label="Learning-rate schedule", choices=LR_SCHEDULERS,
          advanced=True),
    Param("max_grad_norm", "Gradient clipping (0: none)", advanced=True),
    Param("seed", advanced=True),
    Param("checkpoint_every", "Optimiser steps between checkpoints (0: never)", advanced=True),
    Param("eval_batch_size", advanced=True),
    Param("threads", "CPU threads (empty: one for a tiny model, else all)", advanced=True),
)


class FineTuneKind(JobKind):
    """A kind that trains a policy with one of TRL's trainers on an export or a file."""

    models = (POLICY_SLOT,)
    takes_export = True
    registers = "policy"
    set_by_job = {"policy": "-", "train_file": "-", "eval_file": None, "output_dir": "-"}

    def prepare(self, job, directory: Path):
        if job.export is not None:
            train_file = export_file_path(job.export, "train.jsonl")
            test_file = export_file_path(job.export, "test.jsonl")
            eval_file = str(test_file) if test_file.stat().st_size else None
        else:
            train_file, eval_file = Path(job.dataset_path), job.eval_file or None
        return self.config_class(
            policy=model_location(job, "base"), train_file=str(train_file),
            eval_file=eval_file, output_dir=str(directory / "output"), **job_params(job))

    def artifact_fields(self, job, result: dict) -> dict:
        keep = ("steps", "train_examples", "train_pairs", "train_loss", "train_seconds")
        return {"model_dir": result["policy_dir"], "merged_dir": result.get("merged_dir"),
                "is_adapter": result["is_adapter"], "export": job.export,
                "metrics": {"algorithm": self.name, **{k: result[k] for k in keep if k in result},
                            "eval": result.get("eval") or {}}}

    def registered_line(self, job) -> str:
        name = job.params.get("model_name") or f"{job.project.slug}-policy"
        return f"Registered as {name} (registry id {job.result.get('artifact_id')})"
