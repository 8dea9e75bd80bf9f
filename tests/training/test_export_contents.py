"""A job asked for on an export that holds the wrong kind of data is refused before it is
queued, the refusal naming the export, what it holds and what the job needs; the training
page's picker offers a kind only the exports it can use (issue 17).

Carol administers a rank, a rate and a demonstrate project, each with one finished export.
"""

import pytest

from annotate import services as annotate_services
from annotate.models import Export
from config.errors import Invalid
from training.forms import JobForm
from training.kinds import KINDS
from training.models import TrainingJob

from .conftest import request_job

pytestmark = pytest.mark.django_db

# The counts each mode's export build records (annotate.exporters, rating_exporters,
# sft_export): what they hold is read from these.
COUNTS = {
    "rank": {"prompts": 4, "rankings": 8, "pairs": {"train": 12, "test": 3}},
    "rate": {"prompts": 4, "rankings": 8, "pairs": {"train": 12, "test": 3},
             "scores": {"train": 9, "test": 3}},
    "demonstrate": {"prompts": 4, "demonstrations": 4, "edited": 1,
                    "examples": {"train": 3, "test": 1}},
}


@pytest.fixture
def exports(db):
    made = {}
    for mode, counts in COUNTS.items():
        project = annotate_services.project_create(
            created_by=None, slug=f"{mode}-project", name=mode.title(), criterion="helpfulness",
            completions_per_prompt=2, labelers_per_prompt=2, annotation_mode=mode)
        made[mode] = Export.objects.create(project=project, version=2, params={},
                                           status=Export.Status.SUCCEEDED, counts=counts)
    return made


def refusal(export, kind, catalog, **params) -> str:
    base = catalog["reward"] if kind == "reward" else catalog["policy"]
    with pytest.raises(Invalid) as refused:
        request_job(export.project, kind, params=params, base=base, export=export,
                    dispatch=False)
    assert not TrainingJob.objects.exists()
    return str(refused.value)


@pytest.mark.parametrize("kind, params, job", [
    ("reward", {"method": "kway"}, "a Reward model (method kway) job"),
    ("reward", {"method": "trl"}, "a Reward model (method trl) job"),
    ("reward", {}, "a Reward model (method kway) job"),  # the default method
    ("dpo", {}, "a DPO job"),
])
def test_a_pairwise_job_on_a_demonstrate_export_is_refused(exports, catalog, kind, params, job):
    assert refusal(exports["demonstrate"], kind, catalog, **params) == (
        "export: v2 holds demonstrations (SFT examples, no pairs); "
        f"{job} needs preference pairs (an export of a rank or rate project)")


@pytest.mark.parametrize("mode, holds", [
    ("rank", "preference pairs"),
    ("demonstrate", "demonstrations (SFT examples, no pairs)"),
])
def test_a_regression_reward_model_needs_an_export_with_scores(exports, catalog, mode, holds):
    assert refusal(exports[mode], "reward", catalog, method="regression") == (
        f"export: v2 holds {holds}; a Reward model (method regression) job needs rated "
        "completions' scores (scores.jsonl) (an export of a rate project)")


@pytest.mark.parametrize("kind, mode, params", [
    ("reward", "rank", {"method": "kway"}),
    ("reward", "rate", {"method": "trl"}),
    ("dpo", "rate", {}),
    ("sft", "demonstrate", {}),
    ("sft", "rank", {}),  # each prompt's best-ranked completion (training.ml.sft)
])
def test_a_job_on_an_export_it_can_read_is_queued(exports, catalog, kind, mode, params):
    base = catalog["reward"] if kind == "reward" else catalog["policy"]
    job, created = request_job(exports[mode].project, kind, params=params, base=base,
                               export=exports[mode], dispatch=False)
    assert created and job.export == exports[mode]


def offered(project, kind: str) -> list[str]:
    form = JobForm(kind=KINDS[kind], project=project, catalog=[])
    return [label for _, label in form.fields["export"].choices]


def test_the_picker_offers_only_exports_the_kind_can_read_and_says_what_they_hold(exports):
    demonstrate = exports["demonstrate"].project
    Export.objects.create(project=demonstrate, version=3, params={}, counts=COUNTS["rank"],
                          status=Export.Status.SUCCEEDED)  # pairs, before the mode was set
    assert offered(demonstrate, "dpo") == [
        "v3: 12 train pairs, 3 test · preference pairs"]
    assert offered(demonstrate, "sft") == [
        "v3: 12 train pairs, 3 test · preference pairs",
        "v2: 3 train examples, 1 test · demonstrations (SFT examples, no pairs)"]
    assert offered(exports["rate"].project, "reward") == [
        "v2: 12 train pairs, 3 test · preference pairs and rated completions' scores "
        "(scores.jsonl)"]


def test_a_kind_with_no_export_it_can_read_says_so(exports, catalog):
    form = JobForm(kind=KINDS["reward"], project=exports["demonstrate"].project)
    assert form.fields["export"].choices == []
    assert form.unavailable == ("Dataset: no export of this project holds preference pairs or "
                                "rated completions' scores (scores.jsonl).")
