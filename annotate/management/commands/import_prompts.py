from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from annotate import services
from annotate.importers import FORMATS
from annotate.models import Project


class Command(BaseCommand):
    help = ("Import prompts with their completions into a project from JSONL, CSV, HH-RLHF, "
            "TRL preference rows or UltraFeedback (any of them gzipped).")

    def add_arguments(self, parser):
        parser.add_argument("project_slug")
        parser.add_argument("file", type=Path)
        parser.add_argument("--format", default="auto", choices=("auto", *FORMATS),
                            help="default: detected from the file's name and first lines")
        parser.add_argument(
            "--skip-invalid",
            action="store_true",
            help="Import the valid lines and report every skipped one (default: reject the file)",
        )

    def handle(self, *args, **options):
        try:
            project = Project.objects.get(slug=options["project_slug"])
        except Project.DoesNotExist:
            raise CommandError(f"No project with slug {options['project_slug']!r}.") from None
        path: Path = options["file"]
        try:
            binary = path.open("rb")
        except OSError as exc:
            raise CommandError(f"{path}: {exc.strerror}") from None
        with binary:
            try:
                record = services.prompts_import(
                    project=project,
                    binary=binary,
                    filename=str(path),
                    file_format=options["format"],
                    skip_invalid=options["skip_invalid"],
                )
            except services.ImportRejected as exc:
                raise CommandError(str(exc)) from None
        for skip in record.skipped:
            self.stderr.write(
                f"skipped {path}, line {skip['line']}, field '{skip['field']}': {skip['message']}"
            )
        self.stdout.write(
            f"Imported {_count(record.prompt_count, 'prompt')}, "
            f"{_count(record.completion_count, 'completion')} and "
            f"{_count(record.ranking_count, 'reference ranking')} from {path}"
            + (f"; skipped {_count(len(record.skipped), 'line')}." if record.skipped else ".")
        )


def _count(number: int, noun: str) -> str:
    """Return '1 prompt' or '2 prompts'."""
    return f"{number} {noun}{'' if number == 1 else 's'}"
