from django.contrib.auth import views as django_auth_views
from django.urls import path
from drf_spectacular.views import SpectacularAPIView

from . import api_docs, apis, auth_views, views

PROJECT_API = "api/projects/<int:project_id>/"

urlpatterns = [
    path("", views.home, name="home"),
    path("healthz/", views.healthz, name="healthz"),
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", django_auth_views.LogoutView.as_view(), name="logout"),
    path("projects/new/", views.project_create, name="project_create"),
    path("projects/<slug:slug>/", views.project_detail, name="project_detail"),
    path("projects/<slug:slug>/import/", views.project_import, name="project_import"),
    path("projects/<slug:slug>/members/", views.project_member_add, name="project_member_add"),
    path("projects/<slug:slug>/exports/", views.project_export_create,
         name="project_export_create"),
    path("projects/<slug:slug>/dashboard/", views.project_dashboard, name="project_dashboard"),
    path("projects/<slug:slug>/rank/", views.rank_next, name="rank_next"),
    path("projects/<slug:slug>/rank/<int:prompt_id>/", views.rank_page, name="rank_page"),
    path("projects/<slug:slug>/my-rankings/", views.my_rankings, name="my_rankings"),
    # API
    path("api/auth/token/", auth_views.TokenObtainApi.as_view(), name="api_token"),
    path("api/schema/", SpectacularAPIView.as_view(), name="api_schema"),
    path("api/docs/", api_docs.SwaggerUiView.as_view(url_name="api_schema"), name="api_docs"),
    path("api/redoc/", api_docs.RedocView.as_view(url_name="api_schema"), name="api_redoc"),
    path("api/projects/", apis.ProjectListCreateApi.as_view(), name="api_projects"),
    path(PROJECT_API, apis.ProjectDetailApi.as_view(), name="api_project"),
    path(PROJECT_API + "members/", apis.ProjectMemberAddApi.as_view(), name="api_project_members"),
    path(PROJECT_API + "imports/", apis.PromptImportApi.as_view(), name="api_project_imports"),
    path(PROJECT_API + "imports/<int:import_id>/", apis.PromptImportDetailApi.as_view(),
         name="api_project_import"),
    path(PROJECT_API + "next-prompt/", apis.NextPromptApi.as_view(), name="api_next_prompt"),
    path(PROJECT_API + "rankings/", apis.RankingCreateApi.as_view(), name="api_rankings"),
    path(PROJECT_API + "skips/", apis.SkipCreateApi.as_view(), name="api_skips"),
    path(PROJECT_API + "prompts/<int:prompt_id>/lease/", apis.LeaseRenewApi.as_view(),
         name="api_lease_renew"),
    path(PROJECT_API + "progress/", apis.ProgressApi.as_view(), name="api_progress"),
    path(PROJECT_API + "prompts/<int:prompt_id>/gold/", apis.PromptGoldApi.as_view(),
         name="api_prompt_gold"),
    path(PROJECT_API + "exports/", apis.ProjectExportsApi.as_view(), name="api_project_exports"),
    path("api/exports/<int:export_id>/", apis.ExportDetailApi.as_view(), name="api_export"),
    path("api/exports/<int:export_id>/download/", apis.ExportDownloadApi.as_view(),
         name="api_export_download"),
]
