from django.apps import AppConfig


class TrainingConfig(AppConfig):
    name = "training"
    verbose_name = "Training"

    def ready(self) -> None:
        from annotate.signals import export_finished

        from .services.rounds import advance_after_export

        # A round moves on when its snapshot is built, not at the next minute's tick.
        export_finished.connect(advance_after_export, dispatch_uid="training.rounds.export")
