"""A rate project's export: pairs and scores from ratings (annotate.rating_exporters).

exports.export_run builds it in the same folder, zip and Export row as any export; this
module is the branch of its build for projects whose labelers rate.
"""

from pathlib import Path

from .. import exporters, rating_exporters
from ..models import Export
from ..quality import flagged_labeler_ids
from ..rating_exporters import RatingExportWriter, RatingRules
from ..selectors import model_win_rates
from .exports import ExportParams, export_progress, prompts_with_rankings, reported


def rating_export_build(export: Export, params: ExportParams,
                        directory: Path) -> tuple[dict, str]:
    """Write the export's files into `directory`; return its counts and data hash."""
    project = export.project
    conversational = project.prompts.filter(messages__isnull=False).exists()
    excluded = flagged_labeler_ids(project) if params.exclude_flagged else set()
    rules = RatingRules(min_votes=params.min_votes, max_spread=params.max_spread,
                        scale_min=project.rating_scale_min, scale_max=project.rating_scale_max)
    writer = RatingExportWriter(directory, conversational=conversational,
                                test_fraction=params.test_fraction, seed=params.seed,
                                rules=rules)
    try:
        for prompt, rankings in reported(prompts_with_rankings(project, params),
                                         export_progress(export.id)):
            writer.add_prompt(prompt, [r for r in rankings if r.labeler_id not in excluded])
    finally:
        writer.close()
    data_hash = rating_exporters.rating_content_hash(directory)
    if "parquet" in params.formats:
        exporters.write_parquet(directory)
    if "hf-dataset" in params.formats:
        exporters.write_hf_dataset(directory)
    card = rating_exporters.rating_dataset_card(
        project_name=project.name, criterion=project.criterion, params=params.as_dict(),
        rules=rules, aspects=project.rating_aspects, counts=writer.counts, data_hash=data_hash,
        conversational=conversational, judged=model_win_rates(project, exclude_labelers=excluded),
    )
    (directory / "README.md").write_text(card, encoding="utf-8")
    counts = writer.counts.as_dict()
    exporters.write_manifest(directory, counts=writer.counts, data_hash=data_hash,
                             params=params.as_dict())
    return counts, data_hash
