"""Every response carries the headers that keep injected markup and framing harmless."""

import pytest

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("path", ["/accounts/login/", "/healthz/", "/api/schema/"])
def test_responses_carry_a_strict_content_security_policy(client, path):
    response = client.get(path)
    policy = response["Content-Security-Policy"]
    assert "script-src 'self'" in policy and "frame-ancestors 'none'" in policy
    assert "unsafe-inline" not in policy and "unsafe-eval" not in policy
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Referrer-Policy"] == "same-origin"
    assert response["X-Frame-Options"] == "DENY"


def test_pages_have_no_inline_script_or_style(client, project, alice):
    client.force_login(alice)
    for path in ("/", f"/projects/{project.slug}/", "/accounts/login/"):
        html = client.get(path).content.decode()
        assert "<script>" not in html and " style=" not in html and "onclick" not in html
