from django.conf import settings
from django.core.management.base import BaseCommand

from annotate.demo import demo_load


class Command(BaseCommand):
    help = ("Create the demo accounts and project (development only) and print the logins; "
            "with the training extra installed, also a tiny reward model to train from.")

    def handle(self, *args, **options):
        for username, password in demo_load():
            self.stdout.write(f"  {username:<6} password: {password}")
        tiny = settings.VAR_DIR / "models" / "tiny"
        try:
            if not (tiny / "reward" / "config.json").is_file():
                from training.ml.tiny import build_tiny_models

                build_tiny_models(tiny)
        except ImportError:  # no torch: the app runs, training does not
            return
        from training.catalog import catalog_models

        names = [model.name for model in catalog_models()]
        self.stdout.write("Base models in the catalog (the training pages offer them): "
                          + (", ".join(names) or "none"))
        if not any(name.endswith("tiny/reward") for name in names):
            self.stdout.write(f"  the demo's tiny models in {tiny} are outside MODEL_ROOTS")
