"""Checkpoints of our training loops: the trainable weights and the loop's state (optimiser,
schedule, step, RNG), written atomically, so a kill mid-write leaves the last checkpoint.

Read back with `torch.load(weights_only=True)`: tensors and plain values, nothing unpickled.
"""

import json
import os
import pickle
import shutil
from pathlib import Path

STATE_FILE = "state.pt"
RUN_FILE = "run.json"  # beside a Trainer's checkpoints: the settings of the run they belong to


class OtherRunsCheckpoint(ValueError):
    """A checkpoint written by a run with other settings: resuming it would mix two runs."""


def check_run(found: dict | None, expected: dict, where: Path) -> None:
    """Raise OtherRunsCheckpoint unless a checkpoint's run settings are `expected`.

    >>> check_run({"max_length": 512, "seed": 0}, {"max_length": 512, "seed": 0}, Path("c"))
    >>> try:
    ...     check_run({"max_length": 1024}, {"max_length": 256}, Path("c"))
    ... except OtherRunsCheckpoint as exc:
    ...     print(exc)  # doctest: +ELLIPSIS
    the checkpoint in c belongs to another run (max_length 1024 there, 256 here): not resumed...
    """
    if found == expected:
        return
    if found is None:
        why = "it does not record its settings"
    else:
        keys = sorted(set(found) | set(expected), key=str)
        why = ", ".join(f"{key} {found.get(key)} there, {expected.get(key)} here"
                        for key in keys if found.get(key) != expected.get(key))
    raise OtherRunsCheckpoint(f"the checkpoint in {where} belongs to another run ({why}): not "
                              f"resumed. Delete it, or train into another output folder.")


def write_run(directory: Path, settings: dict) -> None:
    """Record the run that owns the checkpoints in `directory` (Trainer's checkpoint folders)."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / RUN_FILE).write_text(json.dumps(settings, indent=2, sort_keys=True) + "\n")


def read_run(directory: Path) -> dict | None:
    path = directory / RUN_FILE
    return json.loads(path.read_text()) if path.is_file() else None


def trainable_parameters(models: dict[str, object]) -> dict[str, object]:
    """{prefix + name: parameter} of every trainable parameter of the named models."""
    return {f"{prefix}{name}": parameter for prefix, model in models.items()
            for name, parameter in model.named_parameters() if parameter.requires_grad}


def save(directory: Path, parameters: dict[str, object], **state) -> Path:
    """Write the parameters and `state` (e.g. step=..., optimizer=...) under `directory`."""
    import torch

    partial = directory.with_name(directory.name + ".partial")
    partial.mkdir(parents=True, exist_ok=True)
    weights = {name: parameter.detach().cpu() for name, parameter in parameters.items()}
    torch.save({"weights": weights, **state}, partial / STATE_FILE)
    shutil.rmtree(directory, ignore_errors=True)
    os.replace(partial, directory)
    return directory


def load(directory: Path, parameters: dict[str, object], run: dict | None = None) -> dict | None:
    """Copy a checkpoint's weights into `parameters`; return its state, or None if none.

    With `run`, the checkpoint must have been saved with `run=json.dumps(run, sort_keys=True)`
    (the settings of the run it belongs to), else OtherRunsCheckpoint is raised and nothing
    is copied."""
    import torch

    state_file = directory / STATE_FILE
    if not state_file.is_file():
        return None
    try:
        state = torch.load(state_file, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:  # weights_only refused an object: never unpickle it
        why = next((line for line in str(exc).splitlines() if "GLOBAL" in line), "")
        raise ValueError(
            f"checkpoint {state_file} holds more than tensors and plain values, so it is not "
            f"loaded. {why[:300]}"
        ) from exc
    weights = state.pop("weights")
    if run is not None:
        check_run(json.loads(state["run"]) if isinstance(state.get("run"), str) else None,
                  run, directory)
    if set(weights) != set(parameters):
        different = sorted(set(weights) ^ set(parameters))[:3]
        raise ValueError(f"checkpoint {directory} does not fit this model: {different}")
    with torch.no_grad():
        for name, value in weights.items():
            parameters[name].copy_(value)
    return state


def last_trainer_checkpoint(directory: Path) -> str | None:
    """The newest `checkpoint-<step>` folder a transformers Trainer wrote, if any."""
    found = sorted(directory.glob("checkpoint-*"), key=lambda p: int(p.name.rsplit("-", 1)[1]))
    return str(found[-1]) if found else None
