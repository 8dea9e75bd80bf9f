from fractions import Fraction

from django import forms

from .importers import FORMATS
from .models import PROJECT_SETTINGS, Membership, Project
from .ratings import aspects_from_text, rating_settings_errors


def share_text(value: float) -> str:
    """Write a share as people would: a simple fraction exactly, else at most 3 decimals.

    >>> share_text(2 / 3), share_text(0.7), share_text(0.125), share_text(0.61803)
    ('2/3', '0.7', '0.125', '0.618')
    """
    fraction = Fraction(value).limit_denominator(12)
    if fraction.denominator > 1 and abs(float(fraction) - value) < 1e-9 and (
            round(value, 3) != value):
        return f"{fraction.numerator}/{fraction.denominator}"
    return f"{value:.3f}".rstrip("0").rstrip(".")


class ShareField(forms.FloatField):
    """A share from 0 to 1, typed as a decimal (0.67) or a fraction (2/3).

    A float field would show the model's default 2/3 as 0.6666666666666666; rounding it to
    0.67 would instead raise the bar (a 2-of-3 vote is 0.667), so a fraction stays a fraction.
    """

    widget = forms.TextInput(attrs={"inputmode": "decimal"})

    def prepare_value(self, value):
        return share_text(value) if isinstance(value, float) else value

    def to_python(self, value):
        if isinstance(value, str) and "/" in value:
            try:
                return float(Fraction(value.strip()))
            except (ValueError, ZeroDivisionError):
                raise forms.ValidationError("Enter a number such as 0.7 or a fraction such as "
                                            "2/3.", code="invalid") from None
        return super().to_python(value)


class AspectsField(forms.CharField):
    """Rate mode's aspects, typed as a comma-separated list; stored as a list of names."""

    def __init__(self, *, encoder=None, decoder=None, **kwargs):  # what JSONField passes
        super().__init__(**kwargs)

    def prepare_value(self, value):
        return ", ".join(value) if isinstance(value, list) else value

    def to_python(self, value):
        if isinstance(value, list):  # a disabled field cleans the stored value
            return value
        return aspects_from_text(super().to_python(value))


class ProjectForm(forms.ModelForm):
    class Meta:
        model = Project
        fields = PROJECT_SETTINGS
        widgets = {"instructions": forms.Textarea(attrs={"rows": 6})}
        field_classes = {"consensus_min_agreement": ShareField, "rating_aspects": AspectsField}
        labels = {"rating_scale_min": "Rating scale: worst score",
                  "rating_scale_max": "Rating scale: best score",
                  "rating_aspects": "Rating aspects"}
        help_texts = {
            "rating_scale_min": "Rate mode: whole-number scores from this (the worst) ...",
            "rating_scale_max": "... to this (the best): at most 10 points, from 0 to 10.",
            "rating_aspects": "Rate mode: comma-separated names each scored separately, e.g. "
                              "helpfulness, honesty (at most 6); empty: one overall score.",
        }

    # Settings added with annotation modes: a form posted without them (a script written
    # before them) keeps what the project has, or the defaults for a new one.
    KEPT_WHEN_LEFT_OUT = ("annotation_mode", "rating_scale_min", "rating_scale_max",
                          "consensus_max_spread")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for name in self.KEPT_WHEN_LEFT_OUT:
            self.fields[name].required = False

    def clean(self):
        cleaned = super().clean()
        for name in self.KEPT_WHEN_LEFT_OUT:
            if name in cleaned and cleaned[name] in (None, ""):
                cleaned[name] = getattr(self.instance, name)
        names = ("rating_scale_min", "rating_scale_max", "rating_aspects")
        if all(name in cleaned for name in names):
            errors = rating_settings_errors(*(cleaned[name] for name in names))
            for name, message in errors.items():
                self.add_error(name, message[0].upper() + message[1:] + ".")
        return cleaned


class ImportForm(forms.Form):
    file = forms.FileField(
        help_text="JSONL, CSV, HH-RLHF pairs, TRL preference rows or UltraFeedback rows "
                  "(any of them may be gzipped)."
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
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
        help_text="Only for a new account: leave it empty to get an invitation link instead "
                  "(shown once). An existing account keeps its own password.",
    )


class ProjectSettingsForm(ProjectForm):
    """A project's settings after creation: K is shown but fixed once there are prompts."""

    def __init__(self, *args, fixed: dict[str, str] | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        for name, reason in (fixed or {}).items():
            self.fields[name].disabled = True
            self.fields[name].help_text = reason


class MemberRoleForm(forms.Form):
    role = forms.ChoiceField(choices=Membership.Role.choices)


class MemberPasswordForm(forms.Form):
    password = forms.CharField(min_length=8, widget=forms.PasswordInput(
        attrs={"autocomplete": "new-password"}))


class ExportForm(forms.Form):
    min_votes = forms.IntegerField(min_value=1, initial=2,
                                   help_text="Keep a pair only with at least this many votes.")
    min_agreement = forms.FloatField(min_value=0.5, max_value=1.0, initial=0.66,
                                     help_text="...and the winner's share at least this.")
    tie_policy = forms.ChoiceField(choices=[("half", "a tie is half a vote each way"),
                                            ("abstain", "a tie is no vote")], initial="half")
    test_fraction = forms.FloatField(min_value=0.0, max_value=0.99, initial=0.1,
                                     help_text="Share of prompts in the test split.")
    seed = forms.IntegerField(initial=0)
    include_imported = forms.BooleanField(
        required=False, label="Count imported reference rankings (e.g. HH-RLHF) as votes"
    )
    exclude_flagged = forms.BooleanField(
        required=False, label="Leave out labelers below the gold accuracy threshold"
    )
    weight_by_reliability = forms.BooleanField(
        required=False, label="Weight each labeler's votes by their agreement with the others"
    )
    max_spread = forms.FloatField(
        min_value=0, required=False,
        help_text="Keep a completion only when its labelers' scores differ by at most this "
                  "(scale points); blank: the project's setting.")
    formats = forms.MultipleChoiceField(
        choices=[("trl-jsonl", "TRL JSONL (always)"), ("parquet", "Parquet"),
                 ("hf-dataset", "Hugging Face dataset folder")],
        initial=["trl-jsonl", "parquet", "hf-dataset"], widget=forms.CheckboxSelectMultiple,
        required=False,
    )

    # The settings each mode's export reads (services.exports, rating_exports,
    # demonstration_exports); the form shows only these, so none is silently ignored.
    FIELDS_BY_MODE = {
        Project.Mode.RANK: ("min_votes", "min_agreement", "tie_policy", "test_fraction", "seed",
                            "include_imported", "exclude_flagged", "weight_by_reliability",
                            "formats"),
        Project.Mode.RATE: ("min_votes", "max_spread", "test_fraction", "seed",
                            "exclude_flagged", "formats"),
        # No gold in a demonstrate project (prompt_gold_set), so no flagged labelers either.
        Project.Mode.DEMONSTRATE: ("test_fraction", "seed", "formats"),
    }

    def __init__(self, *args, project: Project, **kwargs):
        kwargs.setdefault("initial", {"exclude_flagged": project.gold_exclude_flagged,
                                      "max_spread": project.consensus_max_spread})
        super().__init__(*args, **kwargs)
        used = self.FIELDS_BY_MODE[project.annotation_mode]
        for name in [name for name in self.fields if name not in used]:
            del self.fields[name]
        self.order_fields(used)
        if project.annotation_mode == Project.Mode.RATE:
            self.fields["min_votes"].help_text = (
                "Keep a completion only when at least this many labelers rated it.")
        if project.annotation_mode == Project.Mode.DEMONSTRATE:
            self.fields["test_fraction"].help_text = (
                "Share of prompts whose demonstrations go to the test split.")
