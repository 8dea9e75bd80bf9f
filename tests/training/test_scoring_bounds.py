"""Scoring on request is bounded: the model loads outside the request (503 with Retry-After
meanwhile), a request's characters are capped, and long inputs are cut, saying which."""

import threading
import time
from collections import OrderedDict

import pytest

from training.models import ModelArtifact
from training.services import scoring

pytestmark = pytest.mark.django_db


@pytest.fixture
def reward_model(project, tiny_models, monkeypatch):
    monkeypatch.setattr(scoring, "_scorers", OrderedDict())
    monkeypatch.setattr(scoring, "_loading", {})
    monkeypatch.setattr(scoring, "_failed", {})
    return ModelArtifact.objects.create(project=project, name="rm", version=1, kind="reward",
                                        base_model="reward", path=str(tiny_models["reward"]))


def score(client, model, items, **extra):
    return client.post(f"/api/models/{model.id}/score/", {"items": items, **extra},
                       format="json")


def test_a_model_loads_in_the_background_while_requests_get_503(api, carol, reward_model,
                                                                 settings, monkeypatch):
    from training.ml import scoring as ml_scoring

    release = threading.Event()
    real_load = ml_scoring.RewardScorer.load

    def slow_load(path, **kwargs):
        release.wait(60)  # loading takes as long as the test says
        return real_load(path, **kwargs)

    monkeypatch.setattr(ml_scoring.RewardScorer, "load", slow_load)
    settings.SCORER_LOAD_WAIT_SECONDS = 0.2
    client, items = api(carol), [{"prompt": "Hi?", "response": "Hello."}]
    started = time.monotonic()
    busy = score(client, reward_model, items)
    assert busy.status_code == 503 and busy["Retry-After"] == "5"
    assert busy.json() == {"detail": f"Model {reward_model.id} is loading; try again in a few "
                                     "seconds."}
    assert time.monotonic() - started < 5  # the request did not wait for the load
    assert score(client, reward_model, items).status_code == 503  # one load, still going
    assert [t.name for t in threading.enumerate()].count(
        f"scorer-load-{reward_model.id}") == 1
    release.set()
    settings.SCORER_LOAD_WAIT_SECONDS = 60
    answer = score(client, reward_model, items)
    assert answer.status_code == 200 and len(answer.json()["rewards"]) == 1


def test_a_request_is_capped_in_characters_and_long_inputs_are_cut(api, carol, reward_model):
    client = api(carol)
    huge = score(client, reward_model, [{"prompt": "x" * 2_000_000, "response": "y"}])
    assert huge.status_code == 400
    assert huge.json()["detail"] == ("items: 2,000,001 characters; a request takes at most "
                                     "400,000 (for more, start a scoring job)")
    long_prompt = "word " * 20_000  # far past the tiny model's 512 positions
    answer = score(client, reward_model, [{"prompt": "Short?", "response": "Yes."},
                                          {"prompt": long_prompt, "response": "Yes."}])
    assert answer.status_code == 200, answer.json()
    assert answer.json()["truncated"] == [1] and len(answer.json()["rewards"]) == 2


def test_a_model_that_cannot_load_is_a_409_with_its_reason(api, carol, reward_model, tmp_path):
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text("{not json")
    ModelArtifact.objects.filter(id=reward_model.id).update(path=str(broken))
    reward_model.refresh_from_db()
    answer = score(api(carol), reward_model, [{"prompt": "Hi?", "response": "Hello."}])
    assert answer.status_code == 409
    detail = answer.json()["detail"]
    assert detail.startswith(f"Model {reward_model.id} could not be loaded: ")
    assert str(tmp_path) not in detail
