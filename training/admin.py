from django.contrib import admin

from .models import CompletionScore, ModelArtifact, TrainingJob


@admin.register(TrainingJob)
class TrainingJobAdmin(admin.ModelAdmin):
    list_display = ("id", "project", "kind", "status", "step", "total_steps", "attempts",
                    "created_at", "finished_at")
    list_filter = ("kind", "status")
    readonly_fields = ("metrics", "log_tail", "result", "error", "worker", "celery_task_id",
                       "heartbeat_at", "dispatched_at", "started_at", "finished_at")


@admin.register(ModelArtifact)
class ModelArtifactAdmin(admin.ModelAdmin):
    list_display = ("name", "version", "project", "kind", "base_model", "is_adapter",
                    "created_at")
    list_filter = ("kind",)


@admin.register(CompletionScore)
class CompletionScoreAdmin(admin.ModelAdmin):
    list_display = ("artifact", "completion", "reward")
