"""What each job kind writes before its training process starts, and keeps when it ends.

prepare(job, directory) -> the spec for training.ml.run; complete(job, directory, result)
registers the output, inside the transaction that marks the job succeeded.
"""

import json
from pathlib import Path

from django.conf import settings
from django.db.models import Max

from annotate.models import Completion
from annotate.services import export_file_path

from ..ml.config import RewardTrainingConfig
from ..models import CompletionScore, ModelArtifact, TrainingJob

SCORE_BATCH = 2000


def var_relative(path: str | Path) -> str:
    path = Path(path)
    try:
        return str(path.resolve().relative_to(Path(settings.VAR_DIR).resolve()))
    except ValueError:
        return str(path)  # outside VAR_DIR (a --out folder): kept absolute


def var_absolute(path: str) -> Path:
    return Path(path) if Path(path).is_absolute() else Path(settings.VAR_DIR) / path


def reward_config(job: TrainingJob, output_dir: Path) -> RewardTrainingConfig:
    """The job's validated config with its paths filled in."""
    params = {k: v for k, v in job.params.items() if k not in ("model_name", "eval_file")}
    if job.export is not None:
        train_file = export_file_path(job.export, "train.jsonl")
        test_file = export_file_path(job.export, "test.jsonl")
        eval_file = str(test_file) if test_file.stat().st_size else None
    else:
        train_file, eval_file = Path(job.dataset_path), job.params.get("eval_file") or None
    base_model = (str(var_absolute(job.base_artifact.path)) if job.base_artifact
                  else job.base_model)
    return RewardTrainingConfig(base_model=base_model, train_file=str(train_file),
                                eval_file=eval_file, output_dir=str(output_dir), **params)


class RewardKind:
    @staticmethod
    def prepare(job: TrainingJob, directory: Path) -> dict:
        config = reward_config(job, directory / "output")
        return {"kind": "reward", "config": config.as_dict()}

    @staticmethod
    def complete(job: TrainingJob, directory: Path, result: dict) -> dict:
        name = job.params.get("model_name") or f"{job.project.slug}-reward"
        latest = ModelArtifact.objects.filter(project=job.project, name=name).aggregate(
            latest=Max("version"))["latest"] or 0
        artifact = ModelArtifact.objects.create(
            project=job.project, name=name, version=latest + 1, kind=ModelArtifact.Kind.REWARD,
            base_model=job.base_model, path=var_relative(result["model_dir"]),
            merged_path=var_relative(result["merged_dir"]) if result.get("merged_dir") else "",
            is_adapter=bool(job.params.get("lora")), metrics=_artifact_metrics(result),
            job=job, export=job.export,
        )
        return {"artifact_id": artifact.id}


def _artifact_metrics(result: dict) -> dict:
    keep = ("steps", "train_pairs", "dropped_pairs", "pairs_per_second", "train_seconds")
    return {key: result[key] for key in keep if key in result} | {"eval": result.get("eval")}


class ScoreKind:
    """Score every completion of the project with a registered reward model."""

    @staticmethod
    def prepare(job: TrainingJob, directory: Path) -> dict:
        items = directory / "items.jsonl"
        completions = (Completion.objects.filter(prompt__project=job.project)
                       .order_by("prompt_id", "position")
                       .values_list("id", "text", "prompt__text", "prompt__messages"))
        with items.open("w", encoding="utf-8") as out:
            for completion_id, text, prompt_text, messages in completions.iterator(2000):
                prompt = messages if messages else prompt_text
                response = [{"role": "assistant", "content": text}] if messages else text
                out.write(json.dumps({"id": completion_id, "prompt": prompt,
                                      "response": response}) + "\n")
        return {"kind": "score", "model": str(var_absolute(job.base_artifact.path)),
                "items_file": str(items), "out_file": str(directory / "scores.jsonl"),
                "alpha": job.params.get("alpha", 1.0),
                "batch_size": job.params.get("batch_size", 32)}

    @staticmethod
    def complete(job: TrainingJob, directory: Path, result: dict) -> dict:
        artifact = job.base_artifact
        CompletionScore.objects.filter(artifact=artifact).delete()
        batch, count = [], 0
        with (directory / "scores.jsonl").open(encoding="utf-8") as scores:
            for line in scores:
                row = json.loads(line)
                batch.append(CompletionScore(artifact=artifact, completion_id=row["id"],
                                             reward=row["reward"]))
                if len(batch) >= SCORE_BATCH:
                    count += len(CompletionScore.objects.bulk_create(batch))
                    batch = []
        count += len(CompletionScore.objects.bulk_create(batch))
        return {"scored": count}


KINDS = {TrainingJob.Kind.REWARD: RewardKind, TrainingJob.Kind.SCORE: ScoreKind}
