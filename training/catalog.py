"""Where a job's models come from: never a free path.

Two sources, and nothing else:
- the deployment's base-model catalog: folders under MODEL_ROOTS that hold a model
  (`config.json`), named by their path below the root ("tiny/reward"), plus the hub names
  the operator allows (MODEL_HUB_NAMES; any hub name only with MODEL_HUB_ANY);
- the project's own registered models, by id (training.models.ModelArtifact).

A name that escapes its root (`..`, an absolute path, a symlink out), that lands in
VAR_DIR outside VAR_DIR/models (jobs of any project, exports, the database), or that is not
there gets one answer, whatever the reason, so the field cannot probe the server's files.
"""

import json
import re
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings

from config.errors import Invalid

from .ml.inspect import ModelFacts, facts_from_json

HUB_NAME = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")
MAX_DEPTH = 3  # folders below a root that are searched for models


@dataclass(frozen=True)
class CatalogModel:
    """A base model of the deployment: a folder under a root, or an allowed hub name."""

    name: str  # what a request names it by
    location: str  # the folder (absolute) or the hub name: for the worker, never shown
    on_hub: bool = False
    size_bytes: int | None = None
    architectures: tuple[str, ...] = ()

    @property
    def label(self) -> str:
        size = f", {self.size_bytes / 1e6:.1f} MB" if self.size_bytes else ""
        kind = f" ({', '.join(self.architectures)}{size})" if self.architectures else ""
        return f"{self.name}{' (hub)' if self.on_hub else kind}"


def folder_bytes(folder: Path) -> int:
    """The bytes of the files directly in a model folder (0 if it is gone)."""
    if not folder.is_dir():
        return 0
    return sum(p.stat().st_size for p in folder.iterdir() if p.is_file())


def model_roots() -> list[Path]:
    return [Path(root).resolve() for root in settings.MODEL_ROOTS]


def catalog_models() -> list[CatalogModel]:
    """Every base model the deployment offers, folders first, in name order."""
    found: dict[str, CatalogModel] = {}
    for root in model_roots():
        for config_file in _config_files(root):
            folder = config_file.parent
            name = folder.relative_to(root).as_posix()
            real = folder.resolve()  # a link that leads out of the root is not the root's
            if name not in found and real.is_relative_to(root) and _allowed_folder(real):
                found[name] = CatalogModel(
                    name=name, location=str(folder),
                    size_bytes=folder_bytes(folder),
                    architectures=_architectures(config_file))
    hub = [CatalogModel(name=name, location=name, on_hub=True)
           for name in settings.MODEL_HUB_NAMES if name not in found]
    return sorted(found.values(), key=lambda m: m.name) + hub


def _config_files(root: Path):
    if not root.is_dir():
        return
    for depth in range(1, MAX_DEPTH + 1):
        for config_file in sorted(root.glob("/".join(["*"] * depth) + "/config.json")):
            if not any(part.startswith(".") for part in config_file.relative_to(root).parts):
                yield config_file


def _architectures(config_file: Path) -> tuple[str, ...]:
    try:
        return tuple(json.loads(config_file.read_text()).get("architectures") or ())
    except (OSError, ValueError, AttributeError):
        return ()


def _allowed_folder(folder: Path) -> bool:
    """Not inside VAR_DIR, except its models folder: job outputs, exports and the database
    belong to projects and are reached through the registry, if at all."""
    var_dir = Path(settings.VAR_DIR).resolve()
    if not folder.is_relative_to(var_dir):
        return True
    return folder.is_relative_to(var_dir / "models")


def catalog_model(name: str, field: str) -> CatalogModel:
    """The catalog's model by name, or Invalid with the one wording for every refusal."""
    refused = Invalid(f"{field}: no model named {name[:200]!r} in this deployment's catalog; "
                      "choose one from the catalog or a registered model of this project")
    if not name or "\\" in name or "\x00" in name or name.startswith(("/", "~")):
        raise refused
    parts = name.split("/")
    if any(part in ("", ".", "..") or part.startswith(".") for part in parts):
        raise refused
    for root in model_roots():
        folder = (root / name).resolve()  # follows symlinks: the target must stay inside
        if (folder.is_relative_to(root) and (folder / "config.json").is_file()
                and _allowed_folder(folder)):
            return CatalogModel(name=name, location=str(folder),
                                architectures=_architectures(folder / "config.json"))
    if name in settings.MODEL_HUB_NAMES or (settings.MODEL_HUB_ANY and HUB_NAME.match(name)):
        return CatalogModel(name=name, location=name, on_hub=True)
    raise refused


_facts: dict[tuple[str, float], ModelFacts] = {}
_facts_lock = threading.Lock()


class ModelDoesNotLoad(Exception):
    """Its message: the loading error's type, or why the check did not finish."""


def _facts_in_child(location: str) -> ModelFacts:
    """The model's facts, read by a child process so that transformers and torch never load
    into the web process (training.ml.inspect)."""
    try:
        done = subprocess.run([sys.executable, "-m", "training.ml.inspect", location],
                              capture_output=True, text=True, cwd=settings.BASE_DIR,
                              timeout=settings.MODEL_CHECK_TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired:
        raise ModelDoesNotLoad(
            f"not within {settings.MODEL_CHECK_TIMEOUT_SECONDS} s") from None
    lines = done.stdout.strip().splitlines()
    if not lines:
        raise ModelDoesNotLoad(f"the check exited {done.returncode}")
    if done.returncode:
        raise ModelDoesNotLoad(json.loads(lines[-1]).get("error", "error"))
    return facts_from_json(lines[-1])


def check_role(model: CatalogModel, role: str, field: str) -> ModelFacts:
    """The model's facts when it loads and fits the role; Invalid naming the field if not.

    Facts are read one model at a time (the first import of transformers is not safe to run
    in two threads at once) and kept while the model's config is unchanged; a failure is not
    kept, so a passing fault does not refuse the model until a restart."""
    config_file = Path(model.location) / "config.json"
    key = (model.location, config_file.stat().st_mtime if not model.on_hub else 0.0)
    with _facts_lock:
        facts = _facts.get(key)
        if facts is None:
            try:
                facts = _facts[key] = _facts_in_child(model.location)
            except ModelDoesNotLoad as exc:
                raise Invalid(f"{field}: {model.name} cannot be a {role} model: its config "
                              f"or tokenizer does not load ({exc})") from None
    problem = facts.problems.get(role)
    if problem:
        raise Invalid(f"{field}: {model.name} cannot be a {role} model: {problem}")
    return facts
