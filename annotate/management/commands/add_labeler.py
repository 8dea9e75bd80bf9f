from django.core.management.base import BaseCommand, CommandError
from django.urls import reverse

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
        added = services.member_add(
            project=project, username=options["username"], password=options["password"]
        )
        user = added.user
        self.stdout.write(f"{project.slug}: {added.message()}")
        if added.invitation is not None:
            path = reverse("invitation_accept", args=[added.invitation.token])
            until = f"{added.invitation.expires_at:%Y-%m-%d %H:%M} UTC"
            self.stdout.write(f"{user.username} has no password yet: send them {path} on "
                              f"this site (works once, until {until}).")
        if options["password"] and not added.created:
            self.stdout.write(f"{user.username} exists: their password is unchanged "
                              "(manage.py changepassword sets it).")
