"""SFT and DPO jobs (issue 17, items 4 and 5) on the tiny offline models.

The policy is the randomly initialised byte-level tiny Llama (tiny_models["policy"]): it
starts knowing nothing, so a lower held-out loss and an implied preference accuracy above
chance are what training taught it. The export ranks completions by how often they say
"helpful": SFT learns the best-ranked ones, DPO the preference.
"""

import io
import json

import pytest
from django.core.management import CommandError, call_command
from django.urls import reverse

from annotate.services import export_file_path
from training import selectors, services
from training.forms import JobForm, RoundForm
from training.kinds import KINDS
from training.ml.checkpoints import OtherRunsCheckpoint
from training.ml.data import DataError
from training.ml.progress import Cancelled, RecordingReporter
from training.ml.sft import read_examples
from training.ml.synthetic import preference_rows, write_rows
from training.models import ModelArtifact

from .conftest import request_job

pytestmark = pytest.mark.django_db

FAST_SFT = {"epochs": 3.0, "batch_size": 8, "learning_rate": 0.003, "checkpoint_every": 0,
            "threads": 1}
FAST_DPO = {"epochs": 2.0, "batch_size": 8, "learning_rate": 0.003, "checkpoint_every": 0,
            "threads": 1}


def rows_of(export, name: str) -> list[dict]:
    lines = export_file_path(export, name).read_text().splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def prompts_in(export, name: str) -> int:
    return len({row["prompt_id"] for row in rows_of(export, name)})


def pairs_in(export, name: str) -> int:
    return len(rows_of(export, name))


def run(job):
    services.job_run(job.id)
    job.refresh_from_db()
    assert job.status == "succeeded", job.error
    return job, ModelArtifact.objects.get(job=job)


@pytest.mark.slow
def test_sft_on_an_export_lowers_held_out_loss_and_dpo_goes_on_from_it(
        learnable_export, catalog, client, carol):
    """SFT learns each prompt's best-ranked completion; DPO trains that policy's adapter
    further, the SFT policy its reference; both are registered with their lineage."""
    project = learnable_export.project
    sft_job, _ = request_job(project, "sft", params={**FAST_SFT, "model_name": "sft"},
                             base=catalog["policy"], export=learnable_export)
    sft_job, sft = run(sft_job)
    evaluation = sft.metrics["eval"]
    # One example per prompt of the export's splits.
    assert evaluation["examples"] == prompts_in(learnable_export, "test.jsonl")
    assert sft_job.result["train_examples"] == prompts_in(learnable_export, "train.jsonl")
    assert evaluation["loss_after"] < evaluation["loss_before"] - 0.3, evaluation
    assert (sft.kind, sft.name, sft.is_adapter, sft.export) == ("policy", "sft", True,
                                                               learnable_export)
    assert {"loss", "token_accuracy"} <= set(sft_job.metrics[-1])
    assert [kind for kind, _ in selectors.lineage(sft)] == ["model", "job", "dataset"]

    dpo_job, _ = request_job(project, "dpo",
                             params={**FAST_DPO, "epochs": 1.0, "model_name": "dpo"},
                             base=sft, export=learnable_export)
    dpo_job, dpo = run(dpo_job)
    assert dpo_job.base_artifact == sft and dpo.is_adapter
    assert dpo.metrics["eval"]["pairs"] == pairs_in(learnable_export, "test.jsonl")
    assert dpo.metrics["eval"]["accuracy"] >= 0.85, dpo.metrics["eval"]
    assert [kind for kind, _ in selectors.lineage(dpo)] == [
        "model", "job", "dataset", "model", "job", "dataset"]
    # The adapter saved is the policy's alone (not TRL's frozen reference copy).
    assert not (services.job_directory(dpo_job) / "output" / "policy" / "ref").exists()

    client.force_login(carol)
    pages = {name: client.get(url).content.decode() for name, url in (
        ("sft model", reverse("training_model", args=[sft.id])),
        ("dpo model", reverse("training_model", args=[dpo.id])),
        ("dpo job", reverse("training_job", args=[dpo_job.id])))}
    assert 'id="sft-held-out"' in pages["sft model"]
    assert 'id="dpo-held-out"' in pages["dpo model"]
    assert "Implied preference accuracy in the batch" in pages["dpo job"]


@pytest.mark.slow
def test_dpo_on_a_catalog_model_reaches_the_held_out_preference(learnable_export, catalog):
    job, _ = request_job(learnable_export.project, "dpo", params=FAST_DPO,
                         base=catalog["policy"], export=learnable_export)
    job, policy = run(job)
    evaluation = policy.metrics["eval"]
    assert evaluation["pairs"] == pairs_in(learnable_export, "test.jsonl")
    assert evaluation["accuracy"] >= 0.85, evaluation
    assert evaluation["loss_after"] < evaluation["loss_before"]
    assert {"loss", "accuracy", "margin", "chosen_reward"} <= set(job.metrics[-1])
    assert policy.name == f"{learnable_export.project.slug}-policy"


def test_an_sft_policy_is_offered_to_policy_jobs_generation_and_rounds(learnable_export,
                                                                       catalog, tiny_models,
                                                                       monkeypatch):
    """A registered policy, whatever trained it: the pickers offer it and a PPO job takes
    it as the policy it goes on from."""
    monkeypatch.setattr("training.services.jobs.job_dispatch", lambda job_id: False)
    project = learnable_export.project
    sft = ModelArtifact.objects.create(project=project, name="sft", version=1, kind="policy",
                                       base_model="policy", path=str(tiny_models["policy"]),
                                       is_adapter=True)
    chosen = f"model:{sft.id}"
    for kind in ("policy", "generate", "dpo", "sft"):
        choices = JobForm(kind=KINDS[kind], project=project).fields["base"].choices
        assert chosen in _flatten(choices), kind
    assert chosen in _flatten(RoundForm(project=project, last=None)
                              .fields["policy_model"].choices)
    reward = ModelArtifact.objects.create(project=project, name="rm", version=1, kind="reward",
                                          base_model="reward", path=str(tiny_models["reward"]))
    job, created = request_job(project, "policy", base=sft, reward=reward)
    assert created and job.base_artifact == sft


def _flatten(choices) -> list:
    """The values of a picker's choices, groups opened."""
    found = []
    for value, label in choices:
        found += [v for v, _ in label] if isinstance(label, list | tuple) else [value]
    return found


@pytest.mark.slow
def test_train_sft_on_a_messages_file_and_train_dpo_on_an_export(project, var_dir,
                                                                 tiny_models, tmp_path,
                                                                 learnable_export):
    chats = write_rows(tmp_path / "chats.jsonl", [
        {"messages": [{"role": "user", "content": f"Say it {n}"},
                      {"role": "assistant", "content": "helpful helpful helpful"}]}
        for n in range(20)])
    out = io.StringIO()
    call_command("train_sft", "--project", project.slug, "--dataset", str(chats),
                 "--base-model", str(tiny_models["policy"]), "--out", str(tmp_path / "sft"),
                 "--epochs", "2", "--learning-rate", "0.003", "--threads", "1", "--inline",
                 stdout=out)
    text = out.getvalue()
    assert "Held-out loss on 2 examples" in text and "Registered as helpful-policy" in text
    assert (tmp_path / "sft" / "adapter_config.json").is_file()

    out = io.StringIO()
    call_command("train_dpo", "--dataset", str(learnable_export.id), "--policy",
                 str(tiny_models["policy"]), "--epochs", "1", "--no-lora", "--threads", "1",
                 "--inline", stdout=out)
    assert "Held-out implied preference accuracy" in out.getvalue()
    full = ModelArtifact.objects.get(name="helpful-policy", version=2)
    assert not full.is_adapter


@pytest.mark.slow
def test_a_bad_line_fails_the_job_with_one_line(project, var_dir, tiny_models, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "Hi", "completion": " there"}\n{"prompt": "Hi"}\n')
    with pytest.raises(CommandError) as refused:
        call_command("train_sft", "--project", project.slug, "--dataset", str(bad),
                     "--base-model", str(tiny_models["policy"]), "--inline",
                     stdout=io.StringIO())
    message = str(refused.value)
    assert "\n" not in message
    assert message.endswith("SFT failed: DataError: bad.jsonl, line 2, field 'completion': "
                            "missing (give prompt and completion, or messages)")


def test_sft_data_forms_and_their_errors(tmp_path):
    path = tmp_path / "data.jsonl"

    def examples(*rows):
        path.write_text("".join(json.dumps(row) + "\n" for row in rows))
        return read_examples(path)

    chat = [{"role": "user", "content": "Hi"}]
    reply = [{"role": "assistant", "content": "Yo"}]
    assert examples({"messages": chat + reply}) == [{"prompt": chat, "completion": reply}]
    assert examples({"prompt": chat, "completion": reply}) == [
        {"prompt": chat, "completion": reply}]
    # Preference rows: the best-ranked completion of each prompt.
    path.write_text("".join(json.dumps(r) + "\n" for r in preference_rows(2, k=3, seed=0)))
    best = read_examples(path)
    assert [row["completion"].count("helpful") for row in best] == [2, 2]
    refusals = [
        ({"messages": chat}, "line 1, field 'messages': must be a list of two or more"),
        ({"messages": reply + chat}, "the last turn must be the assistant's"),
        ({"prompt": "Hi", "completion": reply}, "line 1, field 'completion': prompt and"),
        ({"completion": "x"}, "line 1, field 'prompt': missing"),
    ]
    for row, message in refusals:
        with pytest.raises(DataError, match=message):
            examples(row)
    with pytest.raises(DataError, match="example 2 is a chat and example 1 is not"):
        examples({"prompt": "Hi", "completion": " yo"}, {"messages": chat + reply})
    path.write_text("\n")
    with pytest.raises(DataError, match="data.jsonl: no examples"):
        read_examples(path)


@pytest.mark.parametrize("trainer", ["sft", "dpo"])
def test_a_run_asked_to_stop_is_cancelled_at_the_end_of_a_step_and_resumes(trainer,
                                                                           tiny_models,
                                                                           tmp_path):
    from training.ml.dpo import DPOTrainingConfig, train_dpo
    from training.ml.sft import SFTTrainingConfig, train_sft

    config_class, entry = {"sft": (SFTTrainingConfig, train_sft),
                           "dpo": (DPOTrainingConfig, train_dpo)}[trainer]
    data = write_rows(tmp_path / "pairs.jsonl", preference_rows(8, k=3, seed=1))

    def config(**changes):
        return config_class(**{"policy": str(tiny_models["policy"]), "train_file": str(data),
                               "output_dir": str(tmp_path / "out"), "batch_size": 4,
                               "threads": 1, "checkpoint_every": 1, **changes})

    reporter = RecordingReporter(stop_after=2)
    with pytest.raises(Cancelled, match="stopped after step 2 of"):
        entry(config(), reporter)
    assert [step for step, _, _ in reporter.steps] == [1, 2]
    assert not (tmp_path / "out" / "policy").exists()
    with pytest.raises(OtherRunsCheckpoint, match="learning_rate"):
        entry(config(learning_rate=0.01), RecordingReporter())
    result = entry(config(threads=2), RecordingReporter())  # threads may change
    assert result["resumed_from_step"] == 2 and result["steps"] == reporter.steps[0][1]
    assert not (tmp_path / "out" / "checkpoints").exists()


def test_chats_for_a_tokenizer_without_a_chat_template_are_refused_in_one_line(tiny_models,
                                                                                tmp_path):
    import shutil

    from training.ml.dpo import DPOTrainingConfig, train_dpo
    from training.ml.sft import SFTTrainingConfig, train_sft

    plain = shutil.copytree(tiny_models["policy"], tmp_path / "plain")
    (plain / "chat_template.jinja").unlink()
    chats = write_rows(tmp_path / "chats.jsonl", preference_rows(4, k=2, seed=1, chat=True))
    for config_class, entry in ((SFTTrainingConfig, train_sft), (DPOTrainingConfig, train_dpo)):
        config = config_class(policy=str(plain), train_file=str(chats),
                              output_dir=str(tmp_path / "out"), threads=1)
        with pytest.raises(DataError, match=r"^chats.jsonl: the \w+ are chats, but the "
                                            "model's tokenizer has no chat template; give "
                                            r"plain-text [a-z ]+$"):
            entry(config, RecordingReporter())
