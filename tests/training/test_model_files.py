"""Model files are never unpickled: weights come from safetensors, checkpoints through
torch.load(weights_only=True).

A pickle can run any code as it loads. Each test below plants one whose __reduce__ opens
(creates) a marker file, shows that unpickling it the unsafe way does create the marker, and
then that our loaders refuse it with a clear error and the marker never appears.
"""

import json
import shutil
from pathlib import Path

import pytest

pytest.importorskip("torch")

import torch  # noqa: E402

from training.ml import checkpoints, loading  # noqa: E402


class Payload:
    """Unpickled, it creates `marker`: the harmless stand-in for an attacker's code."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def plant(path: Path, marker: Path, **tensors) -> Path:
    torch.save({**tensors, "payload": Payload(marker)}, path)
    torch.load(path, weights_only=False).get("payload").close()  # the unsafe way: it runs
    assert marker.exists(), "the payload must be real for the test to mean anything"
    marker.unlink()
    return path


def test_a_checkpoint_holding_a_pickled_object_is_refused_and_runs_nothing(tmp_path):
    marker = tmp_path / "pwned"
    weight = torch.nn.Parameter(torch.zeros(3))
    checkpoints.save(tmp_path / "ckpt", {"w": weight}, step=7)
    assert checkpoints.load(tmp_path / "ckpt", {"w": weight})["step"] == 7  # a real one loads
    state = tmp_path / "ckpt" / checkpoints.STATE_FILE
    plant(state, marker, weights={"w": torch.ones(3)}, step=8)
    with pytest.raises(ValueError, match="holds more than tensors and plain values") as caught:
        checkpoints.load(tmp_path / "ckpt", {"w": weight})
    assert "GLOBAL" in str(caught.value)  # says what it refused
    assert not marker.exists()
    assert torch.equal(weight.detach(), torch.zeros(3))  # nothing copied in


@pytest.fixture
def pickle_only_model(tiny_models, tmp_path) -> tuple[Path, Path]:
    """The tiny reward model with its safetensors swapped for a booby-trapped .bin."""
    folder = tmp_path / "downloaded-model"
    shutil.copytree(tiny_models["reward"], folder)
    (folder / "model.safetensors").unlink()
    marker = tmp_path / "pwned"
    plant(folder / "pytorch_model.bin", marker)
    return folder, marker


def test_a_model_folder_with_only_pytorch_model_bin_is_refused(pickle_only_model):
    folder, marker = pickle_only_model
    with pytest.raises(loading.UnsafeModelFiles) as caught:
        loading.load_reward_model(str(folder))
    message = str(caught.value)
    assert str(folder) in message and "pytorch_model.bin" in message
    assert "no .safetensors weights" in message and "safe_serialization=True" in message
    assert not marker.exists()


def test_without_the_folder_check_from_pretrained_still_reads_only_safetensors(
        pickle_only_model, monkeypatch):
    # Two locks: the check above, and use_safetensors=True on from_pretrained (which is all
    # that guards a Hub name).
    folder, marker = pickle_only_model
    monkeypatch.setattr(loading, "require_safetensors", lambda name_or_path: None)
    with pytest.raises(OSError, match="model.safetensors"):
        loading.load_reward_model(str(folder))
    assert not marker.exists()


def test_an_adapter_on_a_pickle_only_base_is_refused(pickle_only_model, tmp_path):
    base, marker = pickle_only_model
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(json.dumps(
        {"peft_type": "LORA", "task_type": "SEQ_CLS", "base_model_name_or_path": str(base)}))
    (adapter / "adapter_model.safetensors").write_bytes(b"")
    with pytest.raises(loading.UnsafeModelFiles, match="downloaded-model has no .safetensors"):
        loading.load_reward_model(str(adapter))
    assert not marker.exists()


def test_an_adapter_saved_as_a_pickle_is_refused(tiny_models, tmp_path):
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(json.dumps(
        {"peft_type": "LORA", "base_model_name_or_path": str(tiny_models["reward"])}))
    marker = tmp_path / "pwned"
    plant(adapter / "adapter_model.bin", marker)
    with pytest.raises(loading.UnsafeModelFiles, match="adapter_model.bin"):
        loading.load_reward_model(str(adapter))
    assert not marker.exists()


def test_a_safetensors_model_loads(tiny_models):
    model = loading.load_reward_model(str(tiny_models["reward"]))
    assert model.config.num_labels == 1


def test_the_policy_loaders_default_is_weights_only_too(pickle_only_model):
    # ppo.py and generate.py load policies with from_pretrained directly; transformers reads
    # a .bin with torch.load(weights_only=True), which refuses the payload. Kept as a test so
    # an upgrade or downgrade that changes it is noticed.
    import pickle

    from transformers import AutoModelForCausalLM

    folder, marker = pickle_only_model
    with pytest.raises(pickle.UnpicklingError, match="Weights only load failed"):
        AutoModelForCausalLM.from_pretrained(str(folder))
    assert not marker.exists()
