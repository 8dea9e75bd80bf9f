"""Generation: a policy writes the project's K completions for each prompt, imported as new
prompts to rank (training.services.rounds makes them a round)."""

import json
from pathlib import Path

from annotate.models import Prompt
from annotate.services import prompts_import
from config.errors import Invalid

from ..ml.config import ConfigError
from ..ml.generate import GenerationConfig, policy_share
from ..models import Round
from .base import (
    JobKind,
    ModelSlot,
    Param,
    job_params,
    model_location,
    model_shown,
    write_jsonl,
)


class GenerateKind(JobKind):
    name = "generate"
    label = "Generation"
    help = ("A policy writes K completions (the project's K) for each of the project's own "
            "prompts; they are imported as a new round to rank.")
    config_class = GenerationConfig
    entry = "training.ml.generate:generate_completions"
    models = (ModelSlot("base", "policy", "Policy", artifact_kind="policy",
                        help="A policy of this project, or a causal LM of the catalog"),
              ModelSlot("previous", "policy", "Previous policy", artifact_kind="policy",
                        required=False, help="Writes previous_count of each prompt's "
                        "completions, for labelers to judge the policy against"),
              ModelSlot("reference", "policy", "Reference policy", artifact_kind="policy",
                        required=False, help="Writes reference_count of each prompt's "
                        "completions: the model the loop started from, say"))
    takes_prompts_file = True
    params = (
        Param("temperature"),
        Param("top_p", label="Top-p"),
        Param("max_new_tokens", "Tokens per completion"),
        Param("min_new_tokens", "Tokens before a completion may end", advanced=True),
        Param("seed"),
        Param("previous_count", "Of each prompt's K completions, how many the previous "
              "policy writes"),
        Param("reference_count", "Of each prompt's K completions, how many the reference "
              "policy writes"),
        Param("max_resamples", "Extra draws for a prompt whose completions came out empty or "
              "repeated, before it is skipped", advanced=True),
        Param("batch_size", "Prompts per generate() call", advanced=True),
        Param("max_prompt_length", advanced=True),
        Param("threads", "CPU threads (empty: all)", advanced=True),
    )
    curves = ()  # one step per batch of prompts: the counts say more than a curve
    set_by_job = {"policy": "-", "prompts_file": "-", "output_file": "-", "model_name": "",
                  "k": 2, "previous_policy": "", "previous_name": "", "reference_policy": "",
                  "reference_name": ""}
    OTHERS = ("previous", "reference")

    def check(self, project, request, resolved: dict) -> None:
        k = project.completions_per_prompt
        counts = {slot: request.params.get(f"{slot}_count", 0) for slot in self.OTHERS}
        for slot, count in counts.items():
            if count and slot not in resolved:
                raise Invalid(f"models.{slot}: choose the {slot} policy that writes "
                              f"{slot}_count = {count} of each prompt's completions")
            if slot in resolved and not count:
                raise Invalid(f"{slot}_count: say how many of each prompt's {k} completions "
                              f"the {slot} policy writes (1 or more), or leave it out")
        try:
            policy_share(k, sum(counts.values()))
        except ConfigError as exc:
            raise Invalid(str(exc)) from None

    def prepare(self, job, directory: Path) -> GenerationConfig:
        if job.dataset_path:
            prompts_file = Path(job.dataset_path)
        else:
            prompts_file = directory / "prompts.jsonl"
            write_jsonl(prompts_file, ({"prompt": p} for p in source_prompts(job.project)))
        return GenerationConfig(
            policy=model_location(job, "base"), prompts_file=str(prompts_file),
            output_file=str(directory / "generated.jsonl"),
            k=job.project.completions_per_prompt, model_name=job.base_model,
            **{f"{slot}_{what}": how(job, slot) for slot in self.OTHERS
               for what, how in (("policy", model_location), ("name", model_shown))},
            **job_params(job))

    def complete(self, job, directory: Path, result: dict) -> dict:
        if not result.get("written", result.get("prompts")):
            first = (result.get("skipped_prompts") or [{}])[0].get("reason", "")
            raise Invalid(f"every prompt was skipped ({result.get('skipped', 0)}); the first: "
                          f"{first}")
        with Path(result["output_file"]).open("rb") as binary:
            # Skip mode: a prompt the project already holds with the same completions is
            # left out with its reason on the import, not the whole round with it.
            record = prompts_import(project=job.project, binary=binary,
                                    filename=f"generated-by-job-{job.id}.jsonl",
                                    file_format="jsonl", skip_invalid=True)
        return {"prompt_import_id": record.id, "duplicates_skipped": len(record.skipped)}

    def report_lines(self, job) -> list[str]:
        round_ = Round.objects.filter(generation_job=job).first()
        where = f"round {round_.number}" if round_ else "the project"
        result = job.result
        lines = [f"{result.get('prompts')} prompts with {result.get('completions')} "
                 f"completions imported into {job.project.slug} as {where}; "
                 f"{result.get('resampled', 0)} samples drawn again, "
                 f"{result.get('skipped', 0)} prompts skipped"]
        if len(result.get("sources", [])) > 1:
            lines.append("Written per prompt by: " + ", ".join(
                f"{s['model']} ({s['count']})" for s in result["sources"]))
        return lines


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


KIND = GenerateKind()
