"""What a job kind declares, once: its models, its data, its settings, how it runs, what it
keeps, and the curves its page draws.

From one JobKind the rest is derived: the API's validation (training.services.requests),
the page's form (training.forms), the management command's arguments
(training.management.kind_command), the training process's entry point (the spec that
training.ml.run executes) and the job page's charts.
"""

import dataclasses
import json
import types
import typing
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings

from config.errors import Invalid

from ..ml.config import ConfigError


@dataclass(frozen=True)
class Param:
    """A setting of the kind's config dataclass that a request may set. Its type and default
    come from the dataclass field of the same name; the config validates the value."""

    name: str
    help: str = ""
    label: str = ""
    choices: tuple[str, ...] = ()
    advanced: bool = False  # folded away on the page


@dataclass(frozen=True)
class ModelSlot:
    """A model the kind takes. `slot` is where the job keeps it ("base": base_model /
    base_artifact; "reward": reward_artifact). `role` is what it must be able to do
    ("policy": generate text; "reward": score it)."""

    slot: str
    role: str
    label: str
    artifact_kind: str  # the project's registered models of this kind may be chosen
    catalog: bool = True  # the deployment's base-model catalog may be chosen too
    help: str = ""
    required: bool = True  # an optional slot may be left empty (kept in job.other_models)


@dataclass(frozen=True)
class Curve:
    title: str
    metrics: tuple[str, ...]


@dataclass
class JobRequest:
    """What the API, the form and the command all build, in the same terms.

    `models` maps a slot to a choice: "model:<id>" for a registered model, otherwise a
    catalog name. `dataset_path`/`eval_file` are for the command only (operators)."""

    kind: str
    params: dict
    models: dict[str, str]
    export_id: int | None = None
    dataset_path: str = ""
    eval_file: str = ""


class JobKind:
    """One kind of job. Subclasses set the class attributes and write prepare/complete."""

    name: str
    label: str  # "Reward model": messages say "<label> finished, but ..."
    help: str = ""
    config_class: type
    entry: str  # "training.ml.<module>:<function>", run with (config, reporter)
    models: tuple[ModelSlot, ...] = ()
    takes_export: bool = False  # trains on an export of the project (the dataset picker)
    # What it can train on from an export (training.export_contents names), for the picker;
    # export_reads says what one request's job reads.
    reads: tuple[str, ...] = ()
    takes_prompts_file: bool = False  # the command may give a prompts file instead
    params: tuple[Param, ...] = ()
    registers: str | None = None  # the registry kind of the model it produces
    curves: tuple[Curve, ...] = ()
    # Config fields the job fills in (paths and the like): a request may not set them.
    # Their placeholder values let a request's params be validated before anything exists.
    set_by_job: dict = {}

    # --- declared settings ---------------------------------------------------------------

    def param_fields(self) -> list[tuple[Param, dataclasses.Field, type, bool]]:
        """Each Param with its dataclass field, its plain type and whether it may be None."""
        hints = typing.get_type_hints(self.config_class)
        by_name = {f.name: f for f in dataclasses.fields(self.config_class)}
        found = []
        for param in self.params:
            hint = hints[param.name]
            args = typing.get_args(hint)
            optional = isinstance(hint, types.UnionType) and type(None) in args
            plain = next(a for a in args if a is not type(None)) if optional else hint
            found.append((param, by_name[param.name], plain, optional))
        return found

    def defaults(self) -> dict:
        return {param.name: field.default for param, field, _, _ in self.param_fields()}

    def validate_params(self, params: dict) -> dict:
        """The params as the config will hold them; Invalid naming every bad field."""
        allowed = {p.name for p in self.params} | ({"model_name"} if self.registers else set())
        unknown = sorted(set(params) - allowed)
        if unknown:
            raise Invalid(f"params: unknown {', '.join(unknown)}; {self.name} jobs take "
                          f"{', '.join(sorted(allowed))}")
        name = params.get("model_name")
        if name is not None and not (isinstance(name, str) and 0 < len(name) <= 100):
            raise Invalid("model_name: give a name of 1 to 100 characters")
        config = {k: v for k, v in params.items() if k != "model_name"}
        try:
            self.config_class.from_dict({**self.set_by_job, **config})
        except (ConfigError, TypeError, ValueError) as exc:
            raise Invalid(str(exc)) from None
        return dict(params)

    def export_reads(self, settings: dict) -> tuple[str, ...]:
        """What a job with these settings (defaults filled in) reads from its export: any
        one of them will do."""
        return self.reads

    def job_named(self, settings: dict) -> str:
        """The job as a refusal names it."""
        return self.label

    def curves_for(self, settings: dict) -> tuple[Curve, ...]:
        """The curves the page of a job with these settings draws (its metrics by step)."""
        return self.curves

    # --- what a job does -----------------------------------------------------------------

    def check(self, project, request: JobRequest, resolved: dict) -> dict | None:
        """Refuse what the declaration cannot say (Invalid); `resolved` maps slots to
        CatalogModel or ModelArtifact. Return params that the request leaves to the job and
        that are settled now (they are stored with the job), or None."""

    def prepare(self, job, directory: Path):
        """The job's config, paths filled in, for the training process."""
        raise NotImplementedError

    def complete(self, job, directory: Path, result: dict) -> dict:
        """Keep what the job made, besides a registered model (inside the transaction
        that marks the job succeeded); return what to add to the job's result."""
        return {}

    def artifact_fields(self, job, result: dict) -> dict:
        """For a kind that `registers`: model_dir, merged_dir, is_adapter, metrics, export."""
        raise NotImplementedError

    def report_lines(self, job) -> list[str]:
        """What a command prints once the job succeeded."""
        return []

    def spec(self, job, directory: Path) -> dict:
        config = self.prepare(job, directory)
        config_class = type(config)
        return {"kind": self.name, "entry": self.entry,
                "config_class": f"{config_class.__module__}:{config_class.__qualname__}",
                "config": config.as_dict()}


# --- helpers the kinds share ----------------------------------------------------------------


def var_relative(path: str | Path) -> str:
    path = Path(path)
    try:
        return str(path.resolve().relative_to(Path(settings.VAR_DIR).resolve()))
    except ValueError:
        return str(path)  # outside VAR_DIR (a --out folder): kept absolute


def var_absolute(path: str) -> Path:
    return Path(path) if Path(path).is_absolute() else Path(settings.VAR_DIR) / path


def model_location(job, slot: str) -> str:
    """Where the training process loads the job's model in `slot` from ("" for an optional
    slot left empty)."""
    if slot not in ("base", "reward"):
        other = job.other_models.get(slot)
        return location_load(other["location"]) if other else ""
    artifact = job.base_artifact if slot == "base" else job.reward_artifact
    if artifact is not None:
        return str(var_absolute(artifact.path))
    return location_load(job.base_location)


def model_shown(job, slot: str) -> str:
    """What the request chose for `slot`, as pages and completions name it."""
    if slot == "base":
        return job.base_model
    if slot == "reward":
        return str(job.reward_artifact) if job.reward_artifact else ""
    return job.other_models.get(slot, {}).get("shown", "")


def location_store(model) -> str:
    """How a job keeps a catalog model: "hub:<name>", or its folder (relative to VAR_DIR
    when inside it, so a worker that mounts VAR_DIR elsewhere finds it)."""
    return f"hub:{model.location}" if model.on_hub else var_relative(model.location)


def location_load(stored: str) -> str:
    return stored.removeprefix("hub:") if stored.startswith("hub:") else str(
        var_absolute(stored))


def job_params(job) -> dict:
    """The job's config settings, without the registry name."""
    return {k: v for k, v in job.params.items() if k != "model_name"}


def write_jsonl(path: Path, rows) -> int:
    count = 0
    with path.open("w", encoding="utf-8") as out:
        for row in rows:
            out.write(json.dumps(row) + "\n")
            count += 1
    return count
