"""Forms for the training pages, derived from the job kinds' declarations.

Every model is a picker (the project's registered models and the deployment's catalog,
grouped, with size and lineage); nothing asks for a path. Defaults are preselected: the
latest export, the latest reward model and policy, the settings the project used last.
"""

from django import forms

from annotate.models import Export, Project
from config.errors import ApplicationError

from . import selectors
from .catalog import catalog_models, folder_bytes
from .export_contents import WHAT, export_holds, holds_text
from .kinds import KINDS, JobKind, JobRequest
from .kinds.base import ModelSlot, var_absolute
from .ml.inspect import GENERATING
from .models import ModelArtifact, Round
from .services.requests import ARTIFACT_PREFIX
from .services.rounds import DEFAULT_PLAN, ROUND_ALGORITHMS, round_failed_step

# A refusal that names one of these goes beside that field.
FIELD_OF_MESSAGE = {"base_model": "base", "base_artifact": "base", "reward_artifact": "reward",
                    "export": "export", "model_name": "model_name"}


class JobForm(forms.Form):
    """The form of one job kind, for one project."""

    def __init__(self, *args, kind: JobKind, project: Project, catalog: list | None = None,
                 **kwargs):
        super().__init__(*args, **kwargs)
        self.kind, self.project = kind, project
        # One scan of MODEL_ROOTS serves every picker (a page passes one to all its forms).
        self.catalog = catalog_models() if catalog is None else catalog
        self.unavailable = ""  # one line saying why this kind cannot start yet
        for slot in kind.models:
            self.fields[slot.slot] = self._model_field(slot)
        if kind.takes_export:
            self.fields["export"] = self._export_field()
        if kind.registers:
            self.fields["model_name"] = forms.SlugField(
                required=False, max_length=100, label="Registry name",
                help_text=f"Default: {project.slug}-{kind.registers}; each run is a new version")
        initial = selectors.kind_initial(project, kind)
        for param, _, plain, optional in kind.param_fields():
            self.fields[param.name] = _param_field(param, plain, optional, initial[param.name])

    # --- pickers --------------------------------------------------------------------------

    def _model_field(self, slot: ModelSlot) -> forms.ChoiceField:
        registered = [(f"{ARTIFACT_PREFIX}{a.id}", artifact_label(a)) for a in
                      self.project.models.filter(kind=slot.artifact_kind)
                      .select_related("export", "job").order_by("-created_at")]
        groups = []
        if registered:
            groups.append((f"This project's {slot.artifact_kind} models", registered))
        if slot.catalog:
            base = [(m.name, m.label) for m in sorted(
                        self.catalog, key=lambda m: not _made_for(m, slot.role))
                    if slot.role != "policy" or m.on_hub or _made_for(m, "policy")]
            if base:
                groups.append(("Base models of this deployment", base))
        if not slot.required:  # left empty unless chosen: "none" is the default
            return forms.ChoiceField(choices=[("", "none")] + groups, label=slot.label,
                                     help_text=slot.help, required=False, initial="")
        if not groups:
            where = ("the deployment's catalog is empty (MODEL_ROOTS)" if slot.catalog
                     else f"this project has no {slot.artifact_kind} model yet")
            self.unavailable = self.unavailable or f"{slot.label}: none to choose; {where}."
        prefer_registered = slot.slot == "reward" or slot.role == "policy"
        last = self._last_choice(slot)
        values = [value for _, choices in groups for value, _ in choices]
        initial = (last if last in values else
                   registered[0][0] if registered and prefer_registered else
                   (values[len(registered)] if len(values) > len(registered) else
                    values[0] if values else None))
        return forms.ChoiceField(choices=[("", "—")] + groups, label=slot.label,
                                 help_text=slot.help, initial=initial)

    def _last_choice(self, slot: ModelSlot) -> str | None:
        last = self.project.training_jobs.filter(kind=self.kind.name).order_by(
            "-created_at").first()
        if last is None:
            return None
        artifact_id = last.base_artifact_id if slot.slot == "base" else last.reward_artifact_id
        if artifact_id:
            return f"{ARTIFACT_PREFIX}{artifact_id}"
        return last.base_model if slot.slot == "base" else None

    def _export_field(self) -> forms.ChoiceField:
        finished = list(self.project.exports.filter(status=Export.Status.SUCCEEDED)
                        .order_by("-version")[:50])
        # Only exports holding data the kind reads (the request refuses the others).
        exports = [e for e in finished if export_holds(e.counts) & set(self.kind.reads)]
        if not finished:
            self.unavailable = self.unavailable or (
                "Dataset: this project has no finished export yet; create one on the project "
                "page.")
        elif not exports:
            needs = " or ".join(WHAT[name] for name in self.kind.reads)
            self.unavailable = (self.unavailable
                                or f"Dataset: no export of this project holds {needs}.")
        choices = [(str(e.id), f"{export_label(e)} · {holds_text(export_holds(e.counts))}")
                   for e in exports]
        return forms.ChoiceField(choices=choices, label="Dataset (export)",
                                 initial=choices[0][0] if choices else None)

    # --- to a request ---------------------------------------------------------------------

    def to_request(self) -> JobRequest:
        data = self.cleaned_data
        params = {param.name: data[param.name] for param, _, _, optional in
                  self.kind.param_fields() if not (optional and data[param.name] is None)}
        if data.get("model_name"):
            params["model_name"] = data["model_name"]
        return JobRequest(kind=self.kind.name, params=params,
                          models={slot.slot: data[slot.slot] for slot in self.kind.models
                                  if data[slot.slot]},
                          export_id=int(data["export"]) if data.get("export") else None)

    def add_refusal(self, error: ApplicationError) -> None:
        """Put a service's refusal beside the field it names, or above the form."""
        name, _, rest = error.message.partition(": ")
        field = FIELD_OF_MESSAGE.get(name, name)
        self.add_error(field if rest and field in self.fields else None, error.message)

    def advanced_fields(self):
        return [self[p.name] for p in self.kind.params if p.advanced]

    def main_fields(self):
        advanced = {p.name for p in self.kind.params if p.advanced}
        return [field for field in self if field.name not in advanced]


def _made_for(model, role: str) -> bool:
    """Whether a catalog model was saved for the role (reward bases may be any model)."""
    ends = GENERATING if role == "policy" else ("ForSequenceClassification",)
    return any(a.endswith(ends) for a in model.architectures)


def _param_field(param, plain: type, optional: bool, initial) -> forms.Field:
    options = {"label": param.label or param.name.replace("_", " ").capitalize(),
               "help_text": param.help, "initial": initial, "required": not optional}
    if plain is bool:
        return forms.BooleanField(**options | {"required": False})
    if param.choices:
        return forms.ChoiceField(choices=[(c, c) for c in param.choices], **options)
    if plain is int:
        return forms.IntegerField(**options)
    if plain is float:
        return forms.FloatField(**options)
    return forms.CharField(max_length=500, **options)


def artifact_label(artifact: ModelArtifact) -> str:
    """"name v3 · 1.2 MB · from tiny/reward, export v2": what a picker shows of a model."""
    size = folder_bytes(var_absolute(artifact.path))
    made = f"from {artifact.base_model}" + (f", export v{artifact.export.version}"
                                             if artifact.export else "")
    adapter = " · LoRA" if artifact.is_adapter else ""
    return f"{artifact.name} v{artifact.version}{adapter} · {size / 1e6:.1f} MB · {made}"


class RoundForm(forms.Form):
    """The first round needs a reward base and a policy; later ones go on from the last.
    The algorithm the round trains its policy with starts as the last round's."""

    reward_model = forms.ChoiceField(required=False, label="Reward model to start from")
    policy_model = forms.ChoiceField(required=False, label="Policy to start from")
    algorithm = forms.ChoiceField(
        required=False, label="Policy algorithm", choices=[(a, a) for a in ROUND_ALGORITHMS],
        help_text="ppo: ours; rloo, grpo: TRL's; dpo: iterative DPO on the reward model's "
                  "best and worst of K samples per prompt; dpo-labelers: DPO on the "
                  "labelers' own pairs in the round's snapshot")

    def __init__(self, *args, project: Project, last: Round | None, **kwargs):
        """`last`: the round a new one goes on from (selectors.round_to_go_on_from)."""
        super().__init__(*args, **kwargs)
        has_rounds = last is not None
        catalog = catalog_models()
        for name, kind in (("reward_model", KINDS["reward"]), ("policy_model", KINDS["policy"])):
            picker = JobForm(kind=kind, project=project, catalog=catalog).fields["base"]
            keep_going = [("", "go on from the last round's")] if has_rounds else []
            self.fields[name].choices = keep_going + list(picker.choices)[1:]
            self.fields[name].initial = "" if has_rounds else picker.initial
        self.fields["algorithm"].initial = (
            last.policy_algorithm if last else DEFAULT_PLAN["policy"]["params"]["algorithm"])


class RoundRetryForm(forms.Form):
    """The failed step's settings, as the round's plan holds them, to retry as they are or
    edited."""

    EXPORT_FIELDS = (("min_votes", forms.IntegerField, "Votes a pair needs"),
                     ("min_agreement", forms.FloatField, "Agreement a pair needs"),
                     ("test_fraction", forms.FloatField, "Held-out fraction"))

    def __init__(self, *args, round_: Round, **kwargs):
        super().__init__(*args, prefix=f"retry{round_.number}", **kwargs)
        self.part = round_failed_step(round_)
        plan = round_.plan.get(self.part, {})
        if self.part == "export":
            for name, field, label in self.EXPORT_FIELDS:
                self.fields[name] = field(label=label, initial=plan.get(name))
            return
        kind = KINDS[self.part]
        initial = kind.defaults() | plan.get("params", {})
        for param, _, plain, optional in kind.param_fields():
            self.fields[param.name] = _param_field(param, plain, optional, initial[param.name])

    def changes(self) -> dict:
        return {name: value for name, value in self.cleaned_data.items() if value is not None}


class ScoreForm(forms.Form):
    prompt = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), max_length=100_000)
    response = forms.CharField(widget=forms.Textarea(attrs={"rows": 4}), max_length=100_000)
    alpha = forms.FloatField(initial=1.0, help_text="Scale applied to the reward")


def export_label(export: Export) -> str:
    """"v3: 120 train pairs, 12 test"; a demonstrate project's export counts its examples."""
    unit = "examples" if "examples" in export.counts else "pairs"
    split = export.counts.get(unit, {})
    return f"v{export.version}: {split.get('train', 0)} train {unit}, {split.get('test', 0)} test"
