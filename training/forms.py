"""Forms for the training pages: they parse input and hand it to one service."""

from django import forms

from annotate.models import Export, Project

from .ml.config import REWARD_METHODS
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


class ScoreForm(forms.Form):
    prompt = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), max_length=100_000)
    response = forms.CharField(widget=forms.Textarea(attrs={"rows": 4}), max_length=100_000)
    alpha = forms.FloatField(initial=1.0, help_text="Scale applied to the reward")
