import shutil
from argparse import BooleanOptionalAction
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from django.db.models import Count

from annotate import services
from annotate.models import Project, Ranking
from annotate.rating_exporters import why_no_rated_pairs


class Command(BaseCommand):
    help = "Build a versioned preference dataset from a project's rankings (in the foreground)."

    def add_arguments(self, parser):
        parser.add_argument("project_slug")
        parser.add_argument("--format", action="append", choices=services.exports.FORMATS,
                            help="trl-jsonl (always written), parquet, hf-dataset; repeatable "
                                 "(default: all)")
        parser.add_argument("--min-votes", type=int, default=2,
                            help="Keep a pair only with at least this many votes; an imported "
                                 "ranking is one vote (default: %(default)s)")
        parser.add_argument("--min-agreement", type=float, default=2 / 3,
                            help="Share of the votes the winner needs (default: 0.667)")
        parser.add_argument("--tie-policy", choices=("half", "abstain"), default="half",
                            help="A tie counts half a vote each way, or abstains "
                                 "(default: %(default)s)")
        parser.add_argument("--test-fraction", type=float, default=0.1,
                            help="Share of prompts held out as the test split "
                                 "(default: %(default)s)")
        parser.add_argument("--seed", type=int, default=0,
                            help="Seed of the train/test split (default: %(default)s)")
        parser.add_argument("--include-imported", action="store_true",
                            help="Count imported reference rankings (e.g. HH-RLHF) as votes")
        parser.add_argument("--exclude-flagged", action=BooleanOptionalAction, default=None,
                            help="Leave out labelers below the project's gold accuracy threshold "
                                 "(default: the project's setting)")
        parser.add_argument("--max-spread", type=float, default=None,
                            help="Rate projects: keep a completion's score only when its "
                                 "labelers' scores differ by at most this, highest minus lowest "
                                 "(default: the project's consensus_max_spread)")
        parser.add_argument("--weight-by-reliability", action="store_true",
                            help="Weight votes by each labeler's agreement with the others")
        parser.add_argument("--out", type=Path, help="Copy the export here (a .zip or a folder)")

    def handle(self, *args, **options):
        try:
            project = Project.objects.get(slug=options["project_slug"])
        except Project.DoesNotExist:
            raise CommandError(f"No project with slug {options['project_slug']!r}.") from None
        try:
            params = services.ExportParams(
                min_votes=options["min_votes"], min_agreement=options["min_agreement"],
                tie_policy=options["tie_policy"], test_fraction=options["test_fraction"],
                seed=options["seed"], include_imported=options["include_imported"],
                exclude_flagged=options["exclude_flagged"],
                weight_by_reliability=options["weight_by_reliability"],
                max_spread=options["max_spread"],
                formats=tuple(options["format"] or services.exports.FORMATS),
            )
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        export = services.export_create(project=project, params=params, created_by=None,
                                        run_now=True)
        folder = services.export_file_path(export, None).with_suffix("")
        out: Path | None = options["out"]
        if out is not None:
            if out.suffix == ".zip":
                shutil.copyfile(folder.with_suffix(".zip"), out)
            else:
                shutil.copytree(folder, out, dirs_exist_ok=True)
        counts = export.counts
        if not counts["pairs"]["train"] + counts["pairs"]["test"]:
            why = (why_no_rated_pairs(counts, export.params)
                   if project.annotation_mode == Project.Mode.RATE
                   else why_no_pairs(project, options))
            raise CommandError(f"Export v{export.version} of {project.slug} kept no pairs: {why}")
        self.stdout.write(
            f"Export v{export.version} of {project.slug}: {counts['pairs']['train']} train and "
            f"{counts['pairs']['test']} test pairs from {counts['rankings']} rankings of "
            f"{counts['prompts']} prompts; sha256 {export.content_hash}\n"
            f"Files: {out or folder}"
        )


def why_no_pairs(project: Project, options: dict) -> str:
    """Say why an export kept nothing: no rankings it may use, or too few votes per pair."""
    rankings = Ranking.objects.filter(prompt__project=project)
    imported = rankings.filter(source=Ranking.Source.IMPORTED).count()
    if not options["include_imported"]:
        rankings = rankings.filter(source=Ranking.Source.LABELER)
    if not rankings.exists():
        if imported:
            return (f"no labeler has ranked yet, and the {imported} imported rankings are left "
                    f"out; add --include-imported to count them as votes")
        return "the project has no rankings yet"
    votes = rankings.values("prompt").annotate(n=Count("id")).order_by("-n").first()["n"]
    if votes < options["min_votes"]:
        every = "every pair has 1 vote" if votes == 1 else f"no pair has more than {votes} votes"
        return (f"{every}; --min-votes is {options['min_votes']}. Lower --min-votes (an "
                f"imported ranking is one vote) or collect more rankings")
    return (f"no pair reached --min-agreement {options['min_agreement']:.3g} with "
            f"--min-votes {options['min_votes']}")
