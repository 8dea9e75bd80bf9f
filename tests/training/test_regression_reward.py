"""A regression reward model (issue 17, item 3): tanh(output) fitted to rated completions'
scores in [-1, 1], evaluated by held-out Pearson, MSE and pair accuracy, scored as
alpha * tanh(output) everywhere (RewardScorer, a pipeline with the README's recipe, PPO).

The scores files are written here, in the contract a rate project's export will follow
(scores.jsonl: prompt, completion, score, votes, spread, aspects, split)."""

import io
import json
import math
import re

import pytest
from django.core.management import CommandError, call_command

from training.ml.config import RewardTrainingConfig
from training.ml.data import DataError
from training.ml.progress import RecordingReporter
from training.ml.scores import read_scores
from training.ml.synthetic import score_rows, write_rows

from .conftest import request_job

pytestmark = pytest.mark.slow
FAST = {"epochs": 3, "batch_size": 16, "learning_rate": 3e-3, "checkpoint_every": 0,
        "threads": 1}
HELD_OUT_SCORES = re.compile(r"^Held-out scores: (\d+) completions, \d+ truncated; Pearson "
                             r"([\d.-]+), MSE ([\d.]+), pair accuracy ([\d.]+) on (\d+) pairs",
                             re.M)


def regression_config(base, train, out, **overrides) -> RewardTrainingConfig:
    return RewardTrainingConfig(base_model=str(base), train_file=str(train),
                                output_dir=str(out), method="regression", **FAST | overrides)


@pytest.fixture(scope="module")
def regression_model(tiny_models, tmp_path_factory):
    """A tiny regression model trained on a learnable score: completion j of 4 carries the
    word "helpful" j times and scores -1 + 2j/3. No split: a quarter of the prompts held out."""
    from training.ml.reward import train_reward_model

    folder = tmp_path_factory.mktemp("regression")
    train = write_rows(folder / "scores.jsonl", score_rows(48, seed=1))
    result = train_reward_model(
        regression_config(tiny_models["reward"], train, folder / "out", held_out_fraction=0.25),
        RecordingReporter())
    return result


# --- it learns, and says how well ----------------------------------------------------------------


def test_it_learns_a_score_that_depends_on_the_completion(regression_model):
    held_out = regression_model["held_out"]
    assert held_out["rows"] == 48 and held_out["pairs"] == 72  # 12 prompts x C(4, 2)
    assert held_out["pearson"] >= 0.8
    assert held_out["pair_accuracy"] >= 0.9 and held_out["mse"] < 0.2
    assert regression_model["train_rows"] == 144 and regression_model["train_prompts"] == 36
    assert regression_model["method"] == "regression"


def test_the_folder_records_the_method_and_the_output(regression_model):
    from training.ml.scoring import OUTPUT_FILE

    folder = regression_model["model_dir"]
    recorded = json.loads(open(f"{folder}/{OUTPUT_FILE}").read())
    assert recorded["method"] == "regression" and recorded["output"] == "tanh"
    assert "alpha * tanh(score)" in recorded["pipeline"]
    assert json.loads(open(f"{folder}/training_config.json").read())["method"] == "regression"


def test_held_out_rows_are_whole_prompts_and_a_given_split_is_kept(tiny_models, tmp_path):
    from training.ml.regression import split_rows

    rows = score_rows(10, seed=3)
    for n, row in enumerate(rows):
        row["split"] = "test" if n < 8 else "train"  # the first two prompts
    train = write_rows(tmp_path / "s.jsonl", rows)
    kept, held_out = split_rows(regression_config(tiny_models["reward"], train, tmp_path))
    assert len(held_out) == 8 and {r.prompt for r in held_out} == {rows[0]["prompt"],
                                                                  rows[4]["prompt"]}
    unsplit = write_rows(tmp_path / "u.jsonl", score_rows(10, seed=3))
    kept, held_out = split_rows(regression_config(tiny_models["reward"], unsplit, tmp_path))
    assert len(held_out) == 4  # a tenth of 10 prompts, by default
    assert not {r.prompt_key for r in kept} & {r.prompt_key for r in held_out}


def test_a_stopped_run_resumes_from_its_checkpoint(tiny_models, tmp_path):
    from training.ml.progress import Cancelled
    from training.ml.reward import train_reward_model

    train = write_rows(tmp_path / "scores.jsonl", score_rows(12, seed=4))
    config = regression_config(tiny_models["reward"], train, tmp_path / "out", epochs=1,
                               batch_size=8, checkpoint_every=2)
    with pytest.raises(Cancelled):
        train_reward_model(config, RecordingReporter(stop_after=3))
    reporter = RecordingReporter()
    result = train_reward_model(config, reporter)
    assert result["resumed_from_step"] == 2
    assert [step for step, _, _ in reporter.steps] == [3, 4, 5, 6]  # 44 train rows, 8 a step


@pytest.mark.django_db
def test_the_training_form_offers_the_method(project):
    from training.forms import JobForm
    from training.kinds import KINDS

    form = JobForm(kind=KINDS["reward"], project=project)
    assert "regression" in [value for value, _ in form.fields["method"].choices]
    assert "held_out_fraction" in form.fields


# --- scoring: alpha * tanh(output), as a pipeline with the recipe ---------------------------------


ITEMS = [("Why is the sky blue?", " helpful helpful answer."), ("Say hi.", " the a an."),
         ([{"role": "user", "content": "Hi"}], [{"role": "assistant", "content": "helpful"}])]


def test_the_scorer_returns_alpha_times_tanh_of_the_output(regression_model):
    from training.ml.scoring import RewardScorer, model_inputs

    scorer = RewardScorer.load(regression_model["model_dir"])
    inputs = model_inputs([scorer.encode(*ITEMS[0])], scorer.tokenizer.pad_token_id, "cpu")
    output = scorer.model(**inputs).logits[0, 0].item()
    plain = scorer.score(ITEMS)
    assert all(-1 <= s <= 1 for s in plain)
    assert plain[0] == pytest.approx(math.tanh(output), abs=1e-5)
    assert scorer.score(ITEMS, alpha=2.5) == pytest.approx([2.5 * s for s in plain])
    assert scorer.score(ITEMS, alpha=-1.0) == pytest.approx([-s for s in plain])


def test_a_pipeline_with_the_readme_recipe_agrees_with_the_scorer(regression_model):
    from transformers import pipeline

    from training.ml.data import reward_input, saved_rendering
    from training.ml.loading import load_tokenizer
    from training.ml.scoring import RewardScorer

    path, alpha = regression_model["model_dir"], 0.5
    pipe = pipeline("text-classification", model=path, function_to_apply="none", device="cpu")
    tokenizer = load_tokenizer(path)
    saved = saved_rendering(path, tokenizer)
    theirs = [alpha * math.tanh(pipe(reward_input(tokenizer, prompt, response, **saved))["score"])
              for prompt, response in ITEMS]
    ours = RewardScorer.load(path).score(ITEMS, alpha=alpha)
    assert ours == pytest.approx(theirs, abs=1e-4)
    assert len({round(s, 4) for s in ours}) > 1


def test_a_pairwise_model_is_scored_as_before(tiny_models):
    from training.ml.scoring import RewardScorer, saved_output

    assert saved_output(tiny_models["reward"]) == "logit"
    scorer = RewardScorer.load(str(tiny_models["reward"]))
    assert scorer.transform(7.0) == 7.0


def test_ppo_gets_a_scalar_reward_from_a_regression_model(ppo_setup, regression_model, tmp_path):
    from training.ml.policy import PolicyTrainingConfig
    from training.ml.ppo import train_policy

    reporter = RecordingReporter()
    config = PolicyTrainingConfig(
        policy=ppo_setup["policy"], reward_model=regression_model["model_dir"],
        prompts_file=ppo_setup["prompts"], output_dir=str(tmp_path), total_episodes=32,
        batch_size=16, mini_batch_size=8, learning_rate=3e-3, response_length=8,
        checkpoint_every=0, threads=1, missing_eos_penalty=0.0)  # the reward is the score
    result = train_policy(config, reporter)
    rewards = [metrics["reward"] for _, _, metrics in reporter.steps]
    assert len(rewards) == 2 and all(-1 <= r <= 1 for r in rewards)
    assert -1 <= result["eval"]["policy_reward"] <= 1


# --- refusals: what and where, before anything runs ----------------------------------------------


@pytest.mark.parametrize(("line", "message"), [
    ({"prompt": "p", "completion": "c", "score": 1.5},
     "scores.jsonl, line 2, field 'score': 1.5 is not a number in [-1, 1]"),
    ({"prompt": "p", "completion": "c", "score": "0.5"},
     "scores.jsonl, line 2, field 'score': \"0.5\" is not a number in [-1, 1]"),
    ({"prompt": "p", "completion": "c"}, "scores.jsonl, line 2, field 'score': missing is not"),
    ({"prompt": "p", "completion": "c", "score": True}, "line 2, field 'score': true is not"),
    ({"prompt": "p", "score": 0.5}, "scores.jsonl, line 2, field 'completion': missing"),
    ({"completion": "c", "score": 0.5}, "scores.jsonl, line 2, field 'prompt': missing"),
    ({"prompt": "p", "completion": "c", "score": 0, "split": "dev"},
     "scores.jsonl, line 2, field 'split': must be \"train\" or \"test\""),
])
def test_a_bad_line_is_refused_with_the_file_line_and_field(tmp_path, line, message):
    good = {"prompt": "p", "completion": "c", "score": -0.25}
    path = write_rows(tmp_path / "scores.jsonl", [good, line])
    with pytest.raises(DataError) as refused:
        read_scores(path)
    assert message in str(refused.value)


def test_a_missing_file_and_an_empty_one_say_so(tmp_path):
    with pytest.raises(DataError, match="missing.jsonl: no such file"):
        read_scores(tmp_path / "missing.jsonl")
    (tmp_path / "empty.jsonl").write_text("\n")
    with pytest.raises(DataError, match="empty.jsonl: no scored rows"):
        read_scores(tmp_path / "empty.jsonl")


@pytest.mark.django_db
def test_an_export_without_scores_is_refused_and_no_job_is_made(project, learnable_export,
                                                                catalog):
    from config.errors import Invalid
    from training.models import TrainingJob

    with pytest.raises(Invalid, match=r"export: v\d+ holds preference pairs; a Reward model "
                                      r"\(method regression\) job needs rated completions' "
                                      r"scores \(scores.jsonl\)"):
        request_job(project, "reward", params={"method": "regression", **FAST},
                    base=catalog["reward"], export=learnable_export)
    assert not TrainingJob.objects.exists()


@pytest.mark.django_db
def test_the_api_refuses_it_with_a_400_that_says_what(api, carol, project, learnable_export,
                                                      catalog):
    body = {"project": project.id, "kind": "reward", "export": learnable_export.id,
            "base_model": catalog["reward"], "params": {"method": "regression"} | FAST}
    refused = api(carol).post("/api/training-jobs/", body, format="json")
    assert refused.status_code == 400
    assert "needs rated completions' scores" in json.dumps(refused.json())


@pytest.mark.django_db
def test_the_command_refuses_a_bad_file_before_making_a_job(project, tiny_models, tmp_path):
    from training.models import TrainingJob

    rows = score_rows(2, seed=1)
    rows[3]["score"] = 2
    path = write_rows(tmp_path / "scores.jsonl", rows)
    with pytest.raises(CommandError, match=r"scores.jsonl, line 4, field 'score': 2 is not"):
        call_command("train_reward_model", "--project", project.slug, "--dataset", str(path),
                     "--base-model", str(tiny_models["reward"]), "--method", "regression",
                     "--inline")
    assert not TrainingJob.objects.exists()


# --- the command, end to end ---------------------------------------------------------------------


def command(dataset, base, out, *extra) -> str:
    stdout = io.StringIO()
    call_command("train_reward_model", "--dataset", str(dataset), "--base-model", str(base),
                 "--method", "regression", "--out", str(out), "--epochs", "3",
                 "--batch-size", "16", "--learning-rate", "0.003", "--threads", "1",
                 "--checkpoint-every", "0", "--inline", *extra, stdout=stdout)
    return stdout.getvalue()


@pytest.mark.django_db
def test_the_command_trains_on_a_file_prints_and_registers_the_evaluation(project, var_dir,
                                                                         tiny_models, tmp_path):
    from training.models import ModelArtifact

    path = write_rows(tmp_path / "rated.jsonl",
                      [{k: r[k] for k in ("prompt", "completion", "score")}
                       for r in score_rows(40, seed=2)])
    text = command(path, tiny_models["reward"], tmp_path / "rm", "--project", project.slug,
                   "--held-out-fraction", "0.2")
    assert "Trained on 128 rated completions of 32 prompts" in text, text
    held_out = HELD_OUT_SCORES.search(text)
    assert held_out and held_out[1] == "32" and held_out[5] == "48", text
    assert float(held_out[2]) >= 0.8
    artifact = ModelArtifact.objects.get()
    assert artifact.metrics["method"] == "regression"
    assert artifact.metrics["held_out"]["pearson"] == pytest.approx(float(held_out[2]),
                                                                    abs=1e-3)
    assert (tmp_path / "rm" / "reward_output.json").is_file()  # --out copies it


@pytest.mark.django_db
def test_the_job_page_draws_the_regression_curves(project, carol, client):
    """A regression model logs no pairs: its page draws its squared error and mean score,
    not a pair accuracy and a margin left empty."""
    from django.urls import reverse

    from training.models import TrainingJob

    job = TrainingJob.objects.create(
        project=project, kind="reward", params={"method": "regression"}, base_model="tiny",
        dedupe_key="k", metrics=[{"step": 1, "loss": 0.4, "mean_prediction": 0.1},
                                 {"step": 2, "loss": 0.3, "mean_prediction": 0.2}])
    pairwise = TrainingJob.objects.create(
        project=project, kind="reward", params={"method": "kway"}, base_model="tiny",
        dedupe_key="l", metrics=[{"step": 1, "loss": 0.6, "accuracy": 0.5, "margin": 0.1}])
    client.force_login(carol)
    page = client.get(reverse("training_job", args=[job.id])).content.decode()
    assert "Loss (squared error of tanh(output) to the score)" in page
    assert "Mean predicted score in the batch" in page
    assert "Pair accuracy" not in page and "Reward margin" not in page
    assert page.count("<polyline") == 2  # both curves have their points
    page = client.get(reverse("training_job", args=[pairwise.id])).content.decode()
    assert "Pair accuracy in the batch" in page and "Mean predicted score" not in page


@pytest.mark.django_db
def test_the_command_trains_on_an_exports_scores_and_its_test_pairs(learnable_export,
                                                                   tiny_models, tmp_path):
    from training.kinds.reward import scores_file

    rows = score_rows(32, seed=5)
    for n, row in enumerate(rows):
        row |= {"aspects": {}, "split": "test" if n >= 24 * 4 else "train"}
    write_rows(scores_file(learnable_export), rows)
    # As a rate project's export records it (what training.export_contents reads).
    learnable_export.counts["scores"] = {"train": 96, "test": 32}
    learnable_export.save(update_fields=["counts"])
    text = command(learnable_export.id, tiny_models["reward"], tmp_path / "rm")
    held_out = HELD_OUT_SCORES.search(text)
    assert held_out and held_out[1] == "32", text  # the rows marked "test"
    assert re.search(r"^Held-out: \d+ pairs, .*; accuracy [\d.]+", text, re.M), text


def test_the_doctests_of_the_scores_contract_pass():
    import doctest

    import training.ml.regression
    import training.ml.scores

    for module in (training.ml.scores, training.ml.regression):
        failed, attempted = doctest.testmod(module)
        assert attempted > 0 and failed == 0, module.__name__
