from django.urls import path

from . import apis, views

urlpatterns = [
    path("projects/<slug:slug>/training/", views.project_training, name="project_training"),
    path("projects/<slug:slug>/rounds/", views.project_rounds, name="project_rounds"),
    path("projects/<slug:slug>/rounds/<int:number>/retry/", views.project_round_retry,
         name="project_round_retry"),
    path("projects/<slug:slug>/rounds/<int:number>/cancel/", views.project_round_cancel,
         name="project_round_cancel"),
    path("training/jobs/<int:job_id>/", views.job_detail, name="training_job"),
    path("training/jobs/<int:job_id>/cancel/", views.job_cancel, name="training_job_cancel"),
    path("training/models/<int:artifact_id>/", views.model_detail, name="training_model"),
    path("training/models/<int:artifact_id>/score-project/", views.model_score_project,
         name="training_model_score_project"),
    path("training/models/<int:artifact_id>/request-more/", views.model_request_more,
         name="training_model_request_more"),
    # API
    path("api/training-jobs/", apis.TrainingJobsApi.as_view(), name="api_training_jobs"),
    path("api/training-jobs/<int:job_id>/", apis.TrainingJobDetailApi.as_view(),
         name="api_training_job"),
    path("api/training-jobs/<int:job_id>/cancel/", apis.TrainingJobCancelApi.as_view(),
         name="api_training_job_cancel"),
    path("api/models/", apis.ModelsApi.as_view(), name="api_models"),
    path("api/models/catalog/", apis.ModelCatalogApi.as_view(), name="api_model_catalog"),
    path("api/models/<int:artifact_id>/", apis.ModelDetailApi.as_view(), name="api_model"),
    path("api/models/<int:artifact_id>/download/", apis.ModelDownloadApi.as_view(),
         name="api_model_download"),
    path("api/models/<int:artifact_id>/score/", apis.ModelScoreApi.as_view(),
         name="api_model_score"),
    path("api/projects/<int:project_id>/prompts/request-more/",
         apis.RequestMoreRankingsApi.as_view(), name="api_request_more"),
]
