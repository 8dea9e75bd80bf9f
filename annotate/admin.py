from django.contrib import admin

from .models import Assignment, Completion, Membership, Project, Prompt, PromptImport, Ranking


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 1
    autocomplete_fields = ["user"]


@admin.register(Project)
class ProjectAdmin(admin.ModelAdmin):
    list_display = [
        "name",
        "slug",
        "criterion",
        "completions_per_prompt",
        "labelers_per_prompt",
        "allow_ties",
        "is_frozen",
    ]
    prepopulated_fields = {"slug": ["name"]}
    search_fields = ["name", "slug"]
    inlines = [MembershipInline]


class CompletionInline(admin.TabularInline):
    model = Completion
    extra = 0


@admin.register(Prompt)
class PromptAdmin(admin.ModelAdmin):
    list_display = ["id", "project", "external_id", "created_at"]
    list_filter = ["project"]
    search_fields = ["external_id", "text"]
    inlines = [CompletionInline]
    raw_id_fields = ["source_import"]


@admin.register(Ranking)
class RankingAdmin(admin.ModelAdmin):
    list_display = ["id", "prompt", "labeler", "source", "created_at"]
    list_filter = ["source", "prompt__project"]
    raw_id_fields = ["prompt", "labeler"]


@admin.register(Assignment)
class AssignmentAdmin(admin.ModelAdmin):
    list_display = ["prompt", "labeler", "leased_at", "expires_at"]
    raw_id_fields = ["prompt", "labeler"]


@admin.register(PromptImport)
class PromptImportAdmin(admin.ModelAdmin):
    list_display = [
        "filename",
        "project",
        "file_format",
        "prompt_count",
        "ranking_count",
        "imported_by",
        "created_at",
    ]
    readonly_fields = ["skipped"]


admin.site.register(Membership)
