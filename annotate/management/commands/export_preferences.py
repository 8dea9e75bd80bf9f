import shutil
from argparse import BooleanOptionalAction
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from annotate import services
from annotate.models import Project


class Command(BaseCommand):
    help = "Build a versioned preference dataset from a project's rankings (in the foreground)."

    def add_arguments(self, parser):
        parser.add_argument("project_slug")
        parser.add_argument("--format", action="append", choices=services.exports.FORMATS,
                            help="trl-jsonl (always written), parquet, hf-dataset; repeatable "
                                 "(default: all)")
        parser.add_argument("--min-votes", type=int, default=2)
        parser.add_argument("--min-agreement", type=float, default=2 / 3)
        parser.add_argument("--tie-policy", choices=("half", "abstain"), default="half")
        parser.add_argument("--test-fraction", type=float, default=0.1)
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument("--include-imported", action="store_true",
                            help="Count imported reference rankings (e.g. HH-RLHF) as votes")
        parser.add_argument("--exclude-flagged", action=BooleanOptionalAction, default=None,
                            help="Leave out labelers below the project's gold accuracy threshold "
                                 "(default: the project's setting)")
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
        self.stdout.write(
            f"Export v{export.version} of {project.slug}: {counts['pairs']['train']} train and "
            f"{counts['pairs']['test']} test pairs from {counts['rankings']} rankings of "
            f"{counts['prompts']} prompts; sha256 {export.content_hash}\n"
            f"Files: {out or folder}"
        )
