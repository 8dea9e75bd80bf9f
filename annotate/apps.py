from django.apps import AppConfig


class AnnotateConfig(AppConfig):
    name = "annotate"
    verbose_name = "Annotation"

    def ready(self):
        # config/ is no app, so the app whose hot path the prepared plans serve connects it.
        from django.core.signals import request_started

        from config.prepared_plans import plans_renew_if_old

        request_started.connect(plans_renew_if_old, dispatch_uid="prepared_plans_renew")
