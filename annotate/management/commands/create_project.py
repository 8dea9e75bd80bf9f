from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from annotate import services


class Command(BaseCommand):
    help = "Create a labeling project."

    def add_arguments(self, parser):
        parser.add_argument("slug")
        parser.add_argument("--name", required=True)
        parser.add_argument("--criterion", required=True, help="What to rank by, e.g. helpfulness")
        parser.add_argument("--instructions", default="", help="Markdown shown to labelers")
        parser.add_argument("--completions-per-prompt", type=int, default=4)
        parser.add_argument("--labelers-per-prompt", type=int, default=3)
        parser.add_argument("--allow-ties", action="store_true")

    def handle(self, *args, **options):
        try:
            project = services.project_create(
                created_by=None,
                slug=options["slug"],
                name=options["name"],
                criterion=options["criterion"],
                instructions=options["instructions"],
                completions_per_prompt=options["completions_per_prompt"],
                labelers_per_prompt=options["labelers_per_prompt"],
                allow_ties=options["allow_ties"],
            )
        except ValidationError as exc:
            problems = (f"{name}: {' '.join(errors)}" for name, errors in exc.message_dict.items())
            raise CommandError("; ".join(problems)) from None
        self.stdout.write(f"Created project {project.slug} (id {project.id}).")
