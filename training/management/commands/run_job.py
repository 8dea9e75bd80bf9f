from django.core.management.base import BaseCommand

from training.kinds import KINDS
from training.management.kind_command import add_kind_arguments, run_kind


class Command(BaseCommand):
    help = ("Ask for a job of any registered kind, with the arguments its declaration gives "
            "(`run_job KIND --help`); queued for a worker and followed, or --inline.")

    def add_arguments(self, parser):
        kinds = parser.add_subparsers(dest="kind", required=True)
        for kind in KINDS.values():
            add_kind_arguments(kinds.add_parser(kind.name, help=kind.help), kind)

    def handle(self, *args, **options):
        run_kind(KINDS[options["kind"]], options, self.stdout)
