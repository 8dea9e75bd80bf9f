"""Scoring: a registered reward model scores every completion of its project (the model
page then lists where it disagrees most with the labelers)."""

import json
from pathlib import Path

from annotate.models import Completion

from ..ml.score import ScoreConfig
from ..models import CompletionScore
from .base import Curve, JobKind, ModelSlot, Param, job_params, model_location

SCORE_BATCH = 2000


class ScoreKind(JobKind):
    name = "score"
    label = "Scoring"
    help = "Score every completion of the project with one of its reward models."
    config_class = ScoreConfig
    entry = "training.ml.score:score_items"
    models = (ModelSlot("reward", "reward", "Reward model", artifact_kind="reward",
                        catalog=False, help="A reward model of this project"),)
    params = (Param("alpha", "Every reward is multiplied by it"),
              Param("batch_size", advanced=True))
    curves = (Curve("Completions scored", ("scored",)),)
    set_by_job = {"model": "-", "items_file": "-", "out_file": "-"}

    def prepare(self, job, directory: Path) -> ScoreConfig:
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
        return ScoreConfig(model=model_location(job, "reward"), items_file=str(items),
                           out_file=str(directory / "scores.jsonl"), **job_params(job))

    def complete(self, job, directory: Path, result: dict) -> dict:
        artifact = job.reward_artifact
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

    def report_lines(self, job) -> list[str]:
        return [f"{job.result.get('scored')} completions scored by {job.reward_artifact}"]


KIND = ScoreKind()
