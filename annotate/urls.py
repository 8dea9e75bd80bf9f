from django.contrib.auth import views as auth_views
from django.urls import path
from drf_spectacular.views import SpectacularAPIView
from rest_framework.authtoken.views import ObtainAuthToken

from . import apis, views

urlpatterns = [
    path("", views.home, name="home"),
    path("healthz/", views.healthz, name="healthz"),
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("projects/new/", views.project_create, name="project_create"),
    path("projects/<slug:slug>/", views.project_detail, name="project_detail"),
    path("projects/<slug:slug>/import/", views.project_import, name="project_import"),
    path("projects/<slug:slug>/members/", views.project_member_add, name="project_member_add"),
    # API
    path("api/auth/token/", ObtainAuthToken.as_view(), name="api_token"),
    path("api/schema/", SpectacularAPIView.as_view(), name="api_schema"),
    path("api/projects/", apis.ProjectListCreateApi.as_view(), name="api_projects"),
    path("api/projects/<int:project_id>/", apis.ProjectDetailApi.as_view(), name="api_project"),
    path(
        "api/projects/<int:project_id>/members/",
        apis.ProjectMemberAddApi.as_view(),
        name="api_project_members",
    ),
    path(
        "api/projects/<int:project_id>/imports/",
        apis.PromptImportApi.as_view(),
        name="api_project_imports",
    ),
]
