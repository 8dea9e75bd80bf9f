"""A management command for a job kind, its arguments derived from the kind's declaration.

    manage.py train_reward_model --dataset 3 --base-model tiny/reward --epochs 2
    manage.py run_job reward --dataset 3 --base-model tiny/reward --epochs 2   (the same)

A model is a catalog name or a registry id, as on the pages and in the API; an operator's
command may also name a local folder. The job is queued for a worker and followed; with
--inline the same job runs here, in the foreground.
"""

import shutil
from argparse import BooleanOptionalAction
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from annotate.models import Export, Project
from config.errors import ApplicationError

from .. import services
from ..kinds import KINDS, JobKind, JobRequest
from ..kinds.base import ModelSlot, var_absolute
from ..models import ModelArtifact, TrainingJob
from ..services.requests import ARTIFACT_PREFIX
from .follow import follow

RESULT_DIRS = ("model_dir", "policy_dir")  # what --out copies, whichever the kind writes


def slot_option(kind: JobKind, slot: ModelSlot) -> str:
    """--base-model for a reward model's base, --policy for a policy, --reward-model."""
    if slot.slot == "reward":
        return "--reward-model"
    if slot.slot != "base":  # an optional model: --reference-policy, --previous-policy
        return f"--{slot.slot}-{'policy' if slot.role == 'policy' else 'model'}"
    return "--policy" if slot.role == "policy" else "--base-model"


def add_kind_arguments(parser, kind: JobKind) -> None:
    parser.add_argument("--project", help="The project's slug (default: the export's or the "
                                          "registered model's project)")
    for slot in kind.models:
        where = ("a catalog name, a registry id, or a local folder" if slot.catalog
                 else "its registry id")
        flags = [slot_option(kind, slot)]
        if flags[0] == "--policy":  # a policy to start from is a base model too
            flags.append("--base-model")
        parser.add_argument(*flags, required=slot.required,
                            dest=f"model_{slot.slot}", help=f"{slot.help}: {where}"
                            + ("" if slot.required else " (default: none)"))
    if kind.takes_export:
        parser.add_argument("--dataset", required=True, help="An export id, or a JSONL file")
    if kind.takes_prompts_file:
        parser.add_argument("--prompts", help="A JSONL file of {\"prompt\": ...} (default: the "
                                              "project's own prompts)")
    if kind.takes_export or kind.takes_prompts_file:
        parser.add_argument("--eval-file", help="Held-out data (default: the export's test "
                                                "split, or a tenth of the project's prompts)")
    if kind.registers:
        parser.add_argument("--name", help=f"Registry name (default: <project>-{kind.registers})")
    for param, field, plain, _ in kind.param_fields():
        flag = "--" + param.name.replace("_", "-")
        text = f"{param.help or param.label or param.name} (default: %(default)s)"
        if plain is bool:
            parser.add_argument(flag, action=BooleanOptionalAction, default=field.default,
                                help=text)
        else:
            parser.add_argument(flag, type=plain, default=field.default, help=text,
                                choices=param.choices or None)
    parser.add_argument("--out", type=Path, help="Copy the resulting model folder here")
    parser.add_argument("--inline", action="store_true",
                        help="Run the job here, in the foreground, instead of on a worker")


def request_from_options(kind: JobKind, options: dict) -> tuple[JobRequest, Project]:
    """The JobRequest the options describe, and the project it is for."""
    params = {param.name: options[param.name] for param, _, _, optional in kind.param_fields()
              if options[param.name] is not None or not optional}
    if kind.registers and options.get("name"):
        params["model_name"] = options["name"]
    models, projects = {}, []
    for slot in kind.models:
        value = options[f"model_{slot.slot}"]
        if not value:  # an optional model left out
            continue
        if value.isdigit() and not Path(value).exists():
            artifact = ModelArtifact.objects.filter(id=int(value),
                                                    kind=slot.artifact_kind).first()
            if artifact is None:
                raise CommandError(f"{slot_option(kind, slot)} {value}: no "
                                   f"{slot.artifact_kind} model with that registry id")
            projects.append(artifact.project)
            value = f"{ARTIFACT_PREFIX}{artifact.id}"
        models[slot.slot] = value
    request = JobRequest(kind=kind.name, params=params, models=models)
    dataset = options.get("dataset") or options.get("prompts")
    if dataset:
        if kind.takes_export and dataset.isdigit() and not Path(dataset).exists():
            export = Export.objects.filter(id=int(dataset), status=Export.Status.SUCCEEDED).first()
            if export is None:
                raise CommandError(f"No finished export with id {dataset}.")
            request.export_id = export.id
            projects.append(export.project)
        elif Path(dataset).is_file():
            request.dataset_path = str(Path(dataset).resolve())
        else:
            raise CommandError(f"--dataset {dataset}: neither an export id nor a file"
                               if kind.takes_export else f"--prompts {dataset}: no such file")
    if options.get("eval_file"):
        request.eval_file = str(Path(options["eval_file"]).resolve())
    return request, _project(options.get("project"), projects)


def _project(slug: str | None, implied: list[Project]) -> Project:
    if slug:
        project = Project.objects.filter(slug=slug).first()
        if project is None:
            raise CommandError(f"No project with slug {slug!r}.")
        return project
    if not implied:
        raise CommandError("--project is needed: nothing else names the project")
    return implied[0]


class KindCommand(BaseCommand):
    """Subclasses set `kind_name`; everything else comes from the declaration."""

    kind_name: str

    @property
    def kind(self) -> JobKind:
        return KINDS[self.kind_name]

    @property
    def help(self) -> str:
        return (f"{self.kind.help} Queues a job for a worker and follows it; --inline runs "
                "the same job here.")

    def add_arguments(self, parser):
        add_kind_arguments(parser, self.kind)

    def handle(self, *args, **options):
        run_kind(self.kind, options, self.stdout)


def run_kind(kind: JobKind, options: dict, stdout) -> TrainingJob:
    request, project = request_from_options(kind, options)
    try:
        job, created = services.job_request(project=project, request=request, created_by=None,
                                            dispatch=not options["inline"], allow_paths=True)
    except ApplicationError as refused:
        raise CommandError(str(refused)) from None
    if options["inline"] and created:
        stdout.write(f"Job {job.id}: running it here")
        services.job_run_and_rounds_advance(job.id)
        job.refresh_from_db()
        if job.status != TrainingJob.Status.SUCCEEDED:
            raise CommandError(f"job {job.id} {job.status}: {job.error}")
    else:
        stdout.write(f"{'Queued' if created else 'Already active:'} job {job.id}; following "
                     "it (Ctrl-C stops following, not the job)")
        job = follow(job)
    for line in kind.report_lines(job):
        stdout.write(line)
    result_dir = next((job.result[key] for key in RESULT_DIRS if key in job.result), None)
    if options.get("out") and result_dir:
        shutil.copytree(var_absolute(result_dir), options["out"], dirs_exist_ok=True)
        stdout.write(f"Copied to {options['out']}")
    return job
