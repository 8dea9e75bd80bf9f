"""SFT on a demonstrate project's export (issue 17, item 5): the labelers' own responses are
the examples, trained on the tiny offline policy."""

import io
import json

import pytest
from django.core.management import call_command

from annotate import services as annotate_services
from annotate.models import Prompt
from training.models import ModelArtifact, TrainingJob

pytestmark = pytest.mark.django_db


@pytest.fixture
def demonstration_export(make_user, var_dir):
    """12 prompts, each given the same answer by alice (half edited from a completion):
    9 train, 3 test."""
    project = annotate_services.project_create(
        created_by=None, slug="writing", name="Writing", criterion="helpfulness",
        completions_per_prompt=2, labelers_per_prompt=1, annotation_mode="demonstrate")
    for index in range(12):
        prompt = Prompt.objects.create(project=project, text=f"Say it {index}:")
        for position in range(2):
            prompt.completions.create(position=position, text=f" draft {position}")
    alice = make_user("alice")
    while lease := annotate_services.assignment_next(project=project, labeler=alice):
        source = lease.prompt.completions.first().id if lease.prompt_id % 2 else None
        annotate_services.demonstration_submit(
            project=project, labeler=alice, prompt_id=lease.prompt_id,
            text=" helpful helpful helpful", source_completion_id=source,
            idempotency_key=f"alice-{lease.prompt_id}")
    params = annotate_services.ExportParams(test_fraction=0.25, seed=0, formats=("trl-jsonl",))
    return annotate_services.export_create(project=project, params=params, created_by=None,
                                           run_now=True)


def lines_in(export, name: str) -> int:
    path = annotate_services.export_file_path(export, name)
    return len([json.loads(line) for line in path.read_text().splitlines()])


@pytest.mark.slow
def test_train_sft_on_a_demonstration_export_id(demonstration_export, tiny_models, tmp_path):
    train, test = lines_in(demonstration_export, "train.jsonl"), lines_in(
        demonstration_export, "test.jsonl")
    assert train and test and train + test == 12
    out = io.StringIO()
    call_command("train_sft", "--dataset", str(demonstration_export.id),
                 "--base-model", str(tiny_models["policy"]), "--epochs", "3",
                 "--learning-rate", "0.003", "--threads", "1", "--inline", stdout=out)
    text = out.getvalue()
    # The export's test split is the held-out set: one example per demonstration in it.
    assert "SFT: " in text and f"on {train} examples" in text
    assert f"Held-out loss on {test} examples" in text
    job = TrainingJob.objects.get()
    evaluation = job.result["eval"]
    assert evaluation["loss_after"] < evaluation["loss_before"], evaluation
    artifact = ModelArtifact.objects.get(job=job)
    assert (artifact.kind, artifact.export) == ("policy", demonstration_export)


def test_the_training_form_offers_the_export_by_its_examples(demonstration_export):
    from training.forms import JobForm
    from training.kinds import KINDS

    form = JobForm(kind=KINDS["sft"], project=demonstration_export.project)
    train, test = (lines_in(demonstration_export, f"{split}.jsonl") for split in ("train", "test"))
    assert dict(form.fields["export"].choices)[str(demonstration_export.id)] == (
        f"v1: {train} train examples, {test} test · demonstrations (SFT examples, no pairs)")
