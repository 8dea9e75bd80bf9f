from django.core.management.base import BaseCommand

from annotate.demo import demo_load


class Command(BaseCommand):
    help = "Create the demo accounts and project (development only) and print the logins."

    def handle(self, *args, **options):
        for username, password in demo_load():
            self.stdout.write(f"  {username:<6} password: {password}")
