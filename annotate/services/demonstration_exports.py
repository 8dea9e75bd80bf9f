"""A demonstrate project's export: SFT data (annotate.sft_export) instead of preference pairs.

exports.export_run builds it in the same folder, zip and Export row as any export; this
module is the branch of its build that reads demonstrations.
"""

from collections.abc import Iterator
from pathlib import Path

from config.errors import Conflict

from .. import exporters, sft_export
from ..exporters import PromptForExport
from ..models import Demonstration, Export, Project
from ..quality import flagged_labeler_ids
from ..sft_export import DemonstrationForExport, SFTWriter
from .exports import (
    STREAM_CHUNK,
    ExportParams,
    export_progress,
    labeler_pseudonym,
    reported,
)


def demonstration_export_build(export: Export, params: ExportParams,
                               directory: Path) -> tuple[dict, str]:
    """Write the export's files into `directory`; return its counts and data hash. Conflict
    (the export fails saying so) when there is no demonstration to export."""
    project = export.project
    conversational = project.prompts.filter(messages__isnull=False).exists()
    excluded = flagged_labeler_ids(project) if params.exclude_flagged else set()
    writer = SFTWriter(directory, conversational=conversational,
                       test_fraction=params.test_fraction, seed=params.seed)
    try:
        # The export page counts the prompts done, as a ranking export's does.
        for prompt, demonstrations in reported(prompts_with_demonstrations(project, excluded),
                                               export_progress(export.id)):
            writer.add_prompt(prompt, demonstrations)
    finally:
        writer.close()
    if not writer.counts.demonstrations:
        raise Conflict(f"project {project.slug!r} has no demonstrations to export yet (its "
                       "labelers write them on the labeling page)")
    data_hash = sft_export.sft_content_hash(directory)
    if "parquet" in params.formats:
        exporters.write_parquet(directory)
    if "hf-dataset" in params.formats:
        exporters.write_hf_dataset(directory)
    card = sft_export.sft_dataset_card(
        project_name=project.name, criterion=project.criterion, params=params.as_dict(),
        counts=writer.counts, data_hash=data_hash, conversational=conversational)
    (directory / "README.md").write_text(card, encoding="utf-8")
    sft_export.write_sft_manifest(directory, counts=writer.counts, data_hash=data_hash,
                                  params=params.as_dict())
    return {**writer.counts.__dict__, "examples": dict(writer.counts.examples)}, data_hash


def prompts_with_demonstrations(
    project: Project, excluded: set[int]
) -> Iterator[tuple[PromptForExport, list[DemonstrationForExport]]]:
    """The project's prompts that have demonstrations, in id order, each with them (by
    labeler); retired prompts and `excluded` labelers are left out. One query, streamed."""
    rows = (Demonstration.objects
            .filter(prompt__project=project, prompt__retired_at__isnull=True)
            .exclude(labeler_id__in=excluded)
            .order_by("prompt_id", "labeler_id")
            .values_list("prompt_id", "prompt__external_id", "prompt__text", "prompt__messages",
                         "labeler_id", "text", "source_completion_id",
                         "source_completion__text", "revision", "time_spent_ms")
            .iterator(chunk_size=STREAM_CHUNK))
    prompt, batch = None, []
    for (prompt_id, external_id, prompt_text, messages, labeler_id, text, source_id,
         source_text, revision, time_spent_ms) in rows:
        if prompt is None or prompt.prompt_id != prompt_id:
            if batch:
                yield prompt, batch
            prompt, batch = PromptForExport(prompt_id, external_id, prompt_text, messages, {}), []
        batch.append(DemonstrationForExport(
            labeler_pseudonym(project.id, labeler_id), text, source_id, source_text, revision,
            time_spent_ms))
    if batch:
        yield prompt, batch
