import pytest


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory):
    """A tiny tokenizer, policy and reward model, built offline once per test run."""
    from training.ml.tiny import build_tiny_models

    return build_tiny_models(tmp_path_factory.mktemp("tiny-models"))
