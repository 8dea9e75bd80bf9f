"""The API's documentation pages, served from our own static files (drf-spectacular-sidecar).

Both read the schema at /api/schema/ and are public, as the schema is. Swagger UI loads its
start-up script from a URL of its own (the split view), so the app's strict policy holds
there; Redoc styles itself with inline style elements and searches in a blob: worker, so its
page, which shows only the schema, allows those two.
"""

from drf_spectacular.utils import extend_schema
from drf_spectacular.views import SpectacularRedocView, SpectacularSwaggerSplitView

from config.middleware import CONTENT_SECURITY_POLICY

REDOC_POLICY = CONTENT_SECURITY_POLICY.replace(
    "style-src 'self'", "style-src 'self' 'unsafe-inline'") + "; worker-src 'self' blob:"


class SwaggerUiView(SpectacularSwaggerSplitView):
    template_name = "api/swagger_ui.html"
    title = "rlhf-studio API"


class RedocView(SpectacularRedocView):
    template_name = "api/redoc.html"
    title = "rlhf-studio API"

    @extend_schema(exclude=True)
    def get(self, request, *args, **kwargs):
        response = super().get(request, *args, **kwargs)
        response["Content-Security-Policy"] = REDOC_POLICY
        return response
