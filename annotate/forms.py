from django import forms

from .importers import FORMATS
from .models import PROJECT_SETTINGS, Membership, Project


class ProjectForm(forms.ModelForm):
    class Meta:
        model = Project
        fields = PROJECT_SETTINGS
        widgets = {"instructions": forms.Textarea(attrs={"rows": 6})}


class ImportForm(forms.Form):
    file = forms.FileField(
        help_text="JSONL, JSONL.gz, CSV or HH-RLHF pairs (JSONL, may be gzipped)."
    )
    format = forms.ChoiceField(
        choices=[("auto", "Detect from the file")] + [(name, name) for name in FORMATS],
        initial="auto",
    )
    skip_invalid = forms.BooleanField(
        required=False, label="Skip invalid lines (import the rest and list what was skipped)"
    )


class MemberForm(forms.Form):
    username = forms.CharField(max_length=150)
    role = forms.ChoiceField(choices=Membership.Role.choices, initial=Membership.Role.LABELER)
    password = forms.CharField(
        required=False,
        min_length=8,
        widget=forms.PasswordInput,
        help_text="Only for a new user; leave empty for an existing one.",
    )
