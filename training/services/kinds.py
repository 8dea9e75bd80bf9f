"""What each job kind writes before its training process starts, and keeps when it ends.

prepare(job, directory) -> the spec for training.ml.run; complete(job, directory, result)
registers the output, inside the transaction that marks the job succeeded.
"""

import json
from pathlib import Path

from django.conf import settings
from django.db.models import Max

from annotate.exporters import is_test_prompt
from annotate.models import Completion, Prompt
from annotate.services import export_file_path, prompts_import

from ..ml.config import RewardTrainingConfig
from ..ml.generate import GenerationConfig
from ..ml.ppo import PolicyTrainingConfig
from ..models import CompletionScore, ModelArtifact, Round, TrainingJob

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
        artifact = register_artifact(
            job, ModelArtifact.Kind.REWARD, result["model_dir"], result.get("merged_dir"),
            is_adapter=bool(job.params.get("lora")), metrics=_artifact_metrics(result),
            export=job.export)
        return {"artifact_id": artifact.id}


def register_artifact(job: TrainingJob, kind: str, model_dir: str, merged_dir: str | None,
                      **fields) -> ModelArtifact:
    """The next version of the job's model name (default <project>-<kind>) in the registry."""
    name = job.params.get("model_name") or f"{job.project.slug}-{kind}"
    latest = ModelArtifact.objects.filter(project=job.project, name=name).aggregate(
        latest=Max("version"))["latest"] or 0
    return ModelArtifact.objects.create(
        project=job.project, name=name, version=latest + 1, kind=kind, job=job,
        base_model=job.base_model, path=var_relative(model_dir),
        merged_path=var_relative(merged_dir) if merged_dir else "", **fields)


def _artifact_metrics(result: dict) -> dict:
    keep = ("steps", "train_pairs", "dropped_pairs", "pairs_per_second", "train_seconds")
    return {key: result[key] for key in keep if key in result} | {"eval": result.get("eval")}


EVAL_FRACTION = 0.1  # of a project's prompts, held out to evaluate a policy


def policy_config(job: TrainingJob, directory: Path) -> PolicyTrainingConfig:
    """The job's PPO/RLOO/GRPO config, with prompt files written from the project."""
    params = {k: v for k, v in job.params.items() if k not in ("model_name", "eval_file")}
    if job.dataset_path:
        prompts_file, eval_file = job.dataset_path, job.params.get("eval_file") or None
    else:
        prompts_file, eval_file = _write_project_prompts(job, directory)
    policy = (str(var_absolute(job.base_artifact.path)) if job.base_artifact else job.base_model)
    return PolicyTrainingConfig(
        policy=policy, reward_model=str(var_absolute(job.reward_artifact.path)),
        prompts_file=prompts_file, eval_prompts_file=eval_file,
        output_dir=str(directory / "output"), **params)


def _write_project_prompts(job: TrainingJob, directory: Path) -> tuple[str, str | None]:
    """The project's prompts (gold ones left out), a tenth held out by a hash of the id."""
    train, held_out = directory / "prompts.jsonl", directory / "eval-prompts.jsonl"
    counts = {"train": 0, "eval": 0}
    with train.open("w", encoding="utf-8") as train_out, \
            held_out.open("w", encoding="utf-8") as eval_out:
        rows = (Prompt.objects.filter(project=job.project, gold_tiers__isnull=True)
                .order_by("id").values_list("id", "text", "messages"))
        for prompt_id, text, messages in rows.iterator(2000):
            line = json.dumps({"id": prompt_id, "prompt": messages or text}) + "\n"
            split = "eval" if is_test_prompt(prompt_id, EVAL_FRACTION, seed=0) else "train"
            (eval_out if split == "eval" else train_out).write(line)
            counts[split] += 1
    if not counts["train"]:
        raise ValueError("the project has no prompts to train a policy on")
    return str(train), str(held_out) if counts["eval"] else None


class PolicyKind:
    @staticmethod
    def prepare(job: TrainingJob, directory: Path) -> dict:
        return {"kind": "ppo", "config": policy_config(job, directory).as_dict()}

    @staticmethod
    def complete(job: TrainingJob, directory: Path, result: dict) -> dict:
        artifact = register_artifact(
            job, ModelArtifact.Kind.POLICY, result["policy_dir"], result.get("merged_dir"),
            is_adapter=job.params.get("lora", True),
            metrics={"algorithm": job.params.get("algorithm", "ppo"), "steps": result["steps"],
                     "train_seconds": result.get("train_seconds"),
                     "eval": result.get("eval") or {}})
        return {"artifact_id": artifact.id}


def source_prompts(project) -> list:
    """The prompts a policy writes new completions for: each distinct prompt the project was
    given by its own imports (not by an earlier round), gold ones left out."""
    generated = Round.objects.filter(project=project, prompt_import__isnull=False).values(
        "prompt_import_id")
    rows = (Prompt.objects.filter(project=project, gold_tiers__isnull=True)
            .exclude(source_import_id__in=generated).order_by("id")
            .values_list("text", "messages"))
    seen, prompts = set(), []
    for text, messages in rows.iterator(2000):
        prompt = messages or text
        key = json.dumps(prompt, sort_keys=True)
        if key not in seen:
            seen.add(key)
            prompts.append(prompt)
    return prompts


class GenerateKind:
    """A policy writes K completions per prompt; they are imported as a new round."""

    @staticmethod
    def prepare(job: TrainingJob, directory: Path) -> dict:
        if job.dataset_path:
            prompts_file = job.dataset_path
        else:
            prompts_file = directory / "prompts.jsonl"
            with prompts_file.open("w", encoding="utf-8") as out:
                for prompt in source_prompts(job.project):
                    out.write(json.dumps({"prompt": prompt}) + "\n")
        policy = (str(var_absolute(job.base_artifact.path)) if job.base_artifact
                  else job.base_model)
        config = GenerationConfig(
            policy=policy, prompts_file=str(prompts_file),
            output_file=str(directory / "generated.jsonl"), k=job.project.completions_per_prompt,
            model_name=str(job.base_artifact) if job.base_artifact else job.base_model,
            **{k: v for k, v in job.params.items() if k != "k"})
        return {"kind": "generate", "config": config.as_dict()}

    @staticmethod
    def complete(job: TrainingJob, directory: Path, result: dict) -> dict:
        path = Path(result["output_file"])
        with path.open("rb") as binary:
            record = prompts_import(project=job.project, binary=binary,
                                    filename=f"generated-by-job-{job.id}.jsonl",
                                    file_format="jsonl")
        round_ = Round.objects.filter(generation_job=job).first()
        if round_ is None:  # a generation job of its own: a round with only its prompts
            latest = job.project.rounds.order_by("-number").values_list("number", flat=True)
            round_ = Round.objects.create(
                project=job.project, number=(latest.first() or 0) + 1, generation_job=job,
                policy_artifact=job.base_artifact, created_by=job.created_by,
                plan={"generate": job.params})
        Round.objects.filter(id=round_.id).update(prompt_import=record,
                                                  status=Round.Status.RANKING)
        return {"prompt_import_id": record.id, "round": round_.number}


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


KINDS = {TrainingJob.Kind.REWARD: RewardKind, TrainingJob.Kind.SCORE: ScoreKind,
         TrainingJob.Kind.PPO: PolicyKind, TrainingJob.Kind.GENERATE: GenerateKind}
