from django.core.management.base import BaseCommand, CommandError

from annotate import services
from annotate.models import Project


class Command(BaseCommand):
    help = "Add a labeler to a project, creating the user if needed."

    def add_arguments(self, parser):
        parser.add_argument("project_slug")
        parser.add_argument("username")
        parser.add_argument(
            "--password", help="The password of a new user (an existing user keeps theirs)"
        )

    def handle(self, *args, **options):
        try:
            project = Project.objects.get(slug=options["project_slug"])
        except Project.DoesNotExist:
            raise CommandError(f"No project with slug {options['project_slug']!r}.") from None
        user, created = services.labeler_add(
            project=project, username=options["username"], password=options["password"]
        )
        action = "Created user and added" if created else "Added"
        self.stdout.write(f"{action} {user.username} to {project.slug}.")
        if options["password"] and not created:
            self.stdout.write(f"{user.username} exists: their password is unchanged "
                              "(manage.py changepassword sets it).")
