"""Forms for the training pages: they parse input and hand it to one service."""

from django import forms

from annotate.models import Export, Project

from . import services
from .ml.config import REWARD_METHODS
from .ml.ppo import ALGORITHMS
from .models import ModelArtifact


class RewardJobForm(forms.Form):
    export = forms.ModelChoiceField(queryset=Export.objects.none(), label="Dataset snapshot")
    base_model = forms.CharField(
        required=False, max_length=500, label="Base model",
        help_text="A Hugging Face model name or a local path (e.g. /models/qwen2.5-0.5b)")
    base_artifact = forms.ModelChoiceField(
        queryset=ModelArtifact.objects.none(), required=False, label="Or continue from",
        help_text="A reward model of this project (instead of a base model)")
    model_name = forms.SlugField(required=False, max_length=100, label="Registry name",
                                 help_text="Default: <project>-reward; each run is a new version")
    method = forms.ChoiceField(
        choices=[(m, m) for m in REWARD_METHODS], initial="kway",
        help_text="kway: each completion forwarded once per prompt; trl: TRL's RewardTrainer")
    epochs = forms.FloatField(min_value=0.01, max_value=100, initial=1)
    batch_size = forms.IntegerField(min_value=1, max_value=4096, initial=8,
                                    help_text="Pairs per optimiser step")
    learning_rate = forms.FloatField(min_value=1e-8, max_value=0.5, initial=1e-4)
    max_length = forms.IntegerField(min_value=8, max_value=131072, initial=1024,
                                    help_text="Longer pairs are dropped")
    lora = forms.BooleanField(required=False, label="LoRA adapter")
    lora_r = forms.IntegerField(min_value=1, max_value=1024, initial=16, label="LoRA rank")
    lora_alpha = forms.IntegerField(min_value=1, max_value=4096, initial=32, label="LoRA alpha")
    merge_adapter = forms.BooleanField(required=False, label="Also save the merged model")
    load_in_4bit = forms.BooleanField(required=False, label="Load in 4 bits (CUDA, with LoRA)")
    num_gpus = forms.IntegerField(min_value=1, max_value=64, initial=1, label="GPUs")

    CONFIG_FIELDS = ("method", "epochs", "batch_size", "learning_rate", "max_length", "lora",
                     "lora_r", "lora_alpha", "merge_adapter", "load_in_4bit", "num_gpus")

    def __init__(self, *args, project: Project, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["export"].queryset = project.exports.filter(status=Export.Status.SUCCEEDED)
        self.fields["export"].label_from_instance = (
            lambda e: f"v{e.version}: {e.counts.get('pairs', {}).get('train', 0)} train pairs")
        self.fields["base_artifact"].queryset = project.models.filter(
            kind=ModelArtifact.Kind.REWARD)

    def clean(self):
        data = super().clean()
        if not data.get("base_model") and not data.get("base_artifact"):
            self.add_error("base_model", "Give a base model, or a model to continue from.")
        return data

    def params(self) -> dict:
        params = {name: self.cleaned_data[name] for name in self.CONFIG_FIELDS}
        if self.cleaned_data.get("model_name"):
            params["model_name"] = self.cleaned_data["model_name"]
        return params

    def create_job(self, *, project: Project, created_by):
        return services.reward_job_create(
            project=project, params=self.params(), base_model=self.cleaned_data["base_model"],
            created_by=created_by, export=self.cleaned_data["export"],
            base_artifact=self.cleaned_data["base_artifact"])


class PolicyJobForm(forms.Form):
    """PPO (ours), or TRL's RLOO / GRPO, against a registered reward model."""

    reward_artifact = forms.ModelChoiceField(queryset=ModelArtifact.objects.none(),
                                             label="Reward model")
    base_model = forms.CharField(required=False, max_length=500, label="Policy",
                                 help_text="A Hugging Face causal LM name or a local path")
    base_artifact = forms.ModelChoiceField(queryset=ModelArtifact.objects.none(),
                                           required=False, label="Or continue from")
    model_name = forms.SlugField(required=False, max_length=100, label="Registry name",
                                 help_text="Default: <project>-policy")
    algorithm = forms.ChoiceField(choices=[(a, a) for a in ALGORITHMS], initial="ppo")
    total_episodes = forms.IntegerField(min_value=1, max_value=10_000_000, initial=256)
    batch_size = forms.IntegerField(min_value=1, max_value=4096, initial=16,
                                    help_text="Responses per step")
    mini_batch_size = forms.IntegerField(min_value=1, max_value=4096, initial=8)
    ppo_epochs = forms.IntegerField(min_value=1, max_value=32, initial=2)
    learning_rate = forms.FloatField(min_value=1e-9, max_value=0.5, initial=1e-5)
    kl_coef = forms.FloatField(min_value=0, max_value=10, initial=0.05, label="KL coefficient")
    clip_range = forms.FloatField(min_value=0.001, max_value=0.999, initial=0.2)
    clip_range_value = forms.FloatField(min_value=0.001, max_value=100, initial=0.2)
    response_length = forms.IntegerField(min_value=1, max_value=8192, initial=32)
    temperature = forms.FloatField(min_value=0.01, max_value=10, initial=0.7)
    missing_eos_penalty = forms.FloatField(min_value=0, max_value=100, initial=1.0)
    num_generations = forms.IntegerField(min_value=2, max_value=64, initial=4,
                                         help_text="RLOO / GRPO: responses per prompt")
    seed = forms.IntegerField(initial=0)
    lora = forms.BooleanField(required=False, initial=True, label="LoRA adapter")

    CONFIG_FIELDS = ("algorithm", "total_episodes", "batch_size", "mini_batch_size",
                     "ppo_epochs", "learning_rate", "kl_coef", "clip_range", "clip_range_value",
                     "response_length", "temperature", "missing_eos_penalty", "num_generations",
                     "seed", "lora")

    def __init__(self, *args, project: Project, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["reward_artifact"].queryset = project.models.filter(
            kind=ModelArtifact.Kind.REWARD)
        self.fields["base_artifact"].queryset = project.models.filter(
            kind=ModelArtifact.Kind.POLICY)

    def clean(self):
        data = super().clean()
        if not data.get("base_model") and not data.get("base_artifact"):
            self.add_error("base_model", "Give a policy, or a policy to continue from.")
        return data

    def create_job(self, *, project: Project, created_by):
        params = {name: self.cleaned_data[name] for name in self.CONFIG_FIELDS}
        if self.cleaned_data.get("model_name"):
            params["model_name"] = self.cleaned_data["model_name"]
        return services.policy_job_create(
            project=project, params=params, reward_artifact=self.cleaned_data["reward_artifact"],
            base_model=self.cleaned_data["base_model"],
            base_artifact=self.cleaned_data["base_artifact"], created_by=created_by)


class GenerateJobForm(forms.Form):
    """A policy writes the project's K completions per prompt: a new round to rank."""

    base_artifact = forms.ModelChoiceField(queryset=ModelArtifact.objects.none(),
                                           required=False, label="Policy of this project")
    base_model = forms.CharField(required=False, max_length=500, label="Or a policy by name",
                                 help_text="A Hugging Face causal LM name or a local path")
    temperature = forms.FloatField(min_value=0.01, max_value=10, initial=0.8)
    top_p = forms.FloatField(min_value=0.01, max_value=1, initial=0.95)
    max_new_tokens = forms.IntegerField(min_value=1, max_value=8192, initial=128)
    seed = forms.IntegerField(initial=0)

    def __init__(self, *args, project: Project, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["base_artifact"].queryset = project.models.filter(
            kind=ModelArtifact.Kind.POLICY)

    def clean(self):
        data = super().clean()
        if not data.get("base_model") and not data.get("base_artifact"):
            self.add_error("base_model", "Choose a policy, or give one by name or path.")
        return data

    def create_job(self, *, project: Project, created_by):
        params = {name: self.cleaned_data[name]
                  for name in ("temperature", "top_p", "max_new_tokens", "seed")}
        return services.generate_job_create(
            project=project, params=params, base_model=self.cleaned_data["base_model"],
            base_artifact=self.cleaned_data["base_artifact"], created_by=created_by)


class ScoreForm(forms.Form):
    prompt = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), max_length=100_000)
    response = forms.CharField(widget=forms.Textarea(attrs={"rows": 4}), max_length=100_000)
    alpha = forms.FloatField(initial=1.0, help_text="Scale applied to the reward")
