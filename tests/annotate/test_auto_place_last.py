"""The project setting `auto_place_last`: on by default, editable on the settings page and
through the API, and handed to the ranking page (which places the last completion)."""

import pytest

from annotate import services
from annotate.forms import ProjectForm, ProjectSettingsForm

pytestmark = pytest.mark.django_db


def test_a_new_project_places_the_last_completion_by_default():
    project = services.project_create(created_by=None, name="Helpful", slug="helpful",
                                      criterion="helpfulness")
    assert project.auto_place_last is True
    assert ProjectForm()["auto_place_last"].initial is True


def test_the_settings_form_and_the_api_turn_it_off(project, carol, api):
    assert "auto_place_last" in ProjectSettingsForm(instance=project).fields
    url = f"/api/projects/{project.id}/"
    assert api(carol).get(url).json()["auto_place_last"] is True
    response = api(carol).patch(url, {"auto_place_last": False}, format="json")
    assert response.status_code == 200 and response.json()["auto_place_last"] is False
    project.refresh_from_db()
    assert project.auto_place_last is False

