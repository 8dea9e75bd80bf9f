import io
import json
import random

import pytest

from annotate import services as annotate_services
from annotate.models import Prompt
from training.ml.synthetic import MARKER, prompt_records


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory):
    """A tiny tokenizer, policy and reward model, built offline once per test run."""
    from training.ml.tiny import build_tiny_models

    return build_tiny_models(tmp_path_factory.mktemp("tiny-models"))


@pytest.fixture
def catalog(settings, tiny_models):
    """The tiny models as the deployment's base-model catalog, named "policy" and "reward"."""
    settings.MODEL_ROOTS = [tiny_models["reward"].parent]
    return {"policy": "policy", "reward": "reward"}


def request_job(project, kind: str, *, params: dict | None = None, base=None, reward=None,
                export=None, dataset_path: str = "", eval_file: str = "",
                dispatch: bool = True, created_by=None, allow_paths: bool = False,
                **other_models):
    """Ask for a job as every interface does (training.services.job_request).

    `base`, `reward` and a kind's optional models (previous=, reference=) are catalog names
    or ModelArtifacts."""
    from training import services
    from training.kinds import JobRequest

    chosen = {"base": base, "reward": reward, **other_models}
    models = {slot: model if isinstance(model, str) else f"model:{model.id}"
              for slot, model in chosen.items() if model is not None}
    request = JobRequest(kind, dict(params or {}), models,
                         export_id=export.id if export is not None else None,
                         dataset_path=dataset_path, eval_file=eval_file)
    return services.job_request(project=project, request=request, created_by=created_by,
                                dispatch=dispatch, allow_paths=allow_paths)


def page_form(project, kind: str, **changes) -> dict:
    """What the training page posts for a kind's form sent as shown (the settings it starts
    from), with `changes`; an unticked box is left out, as a browser does."""
    from django import forms

    from training.forms import JobForm
    from training.kinds import KINDS

    form = JobForm(kind=KINDS[kind], project=project)
    values = {name: form.get_initial_for_field(field, name)
              for name, field in form.fields.items()} | changes
    posted = {"form": kind}
    for name, value in values.items():
        if isinstance(form.fields.get(name), forms.BooleanField):
            if value:
                posted[name] = "on"
        elif value is not None:
            posted[name] = value
    return posted


@pytest.fixture(scope="session")
def ppo_setup(tmp_path_factory):
    """A policy that writes word-like text, and a reward model that likes "helpful"."""
    from training.ml.config import RewardTrainingConfig
    from training.ml.progress import RecordingReporter
    from training.ml.reward import train_reward_model
    from training.ml.synthetic import policy_prompts, preference_rows, write_rows
    from training.ml.tiny import build_tiny_models, pretrain_tiny_policy

    folder = tmp_path_factory.mktemp("ppo")
    models = build_tiny_models(folder / "tiny")
    pretrain_tiny_policy(models["policy"])
    train = write_rows(folder / "pairs.jsonl", preference_rows(200, k=4, seed=1))
    reward = train_reward_model(RewardTrainingConfig(
        base_model=str(models["reward"]), train_file=str(train), output_dir=str(folder / "rm"),
        epochs=2, batch_size=24, learning_rate=3e-3, checkpoint_every=0), RecordingReporter())
    prompts = write_rows(folder / "prompts.jsonl", policy_prompts(64, seed=9))
    return {"policy": str(models["policy"]), "reward": reward["model_dir"],
            "prompts": str(prompts), "folder": folder}


@pytest.fixture
def ppo_catalog(settings, ppo_setup):
    """ppo_setup's tiny models as the catalog: "policy" (pretrained a little) and "reward"
    (untrained; the trained one is ppo_setup["reward"], registered by the tests that use it)."""
    settings.MODEL_ROOTS = [ppo_setup["folder"] / "tiny"]
    return {"policy": "policy", "reward": "reward"}


@pytest.fixture
def var_dir(settings, tmp_path):
    settings.VAR_DIR = tmp_path / "var"
    settings.VAR_DIR.mkdir()
    return settings.VAR_DIR


def rank_by_marker(project, labelers, *, noise: float = 0.0, seed: int = 0) -> None:
    """Each labeler ranks every prompt by how often the marker appears (best first)."""
    rng = random.Random(seed)
    for labeler in labelers:
        annotate_services.membership_set(project=project, user=labeler, role="labeler")
        while lease := annotate_services.assignment_next(project=project, labeler=labeler):
            completions = list(Prompt.objects.get(id=lease.prompt_id).completions.all())
            order = sorted(completions, key=lambda c: -c.text.count(MARKER))
            if rng.random() < noise:
                rng.shuffle(order)
            annotate_services.ranking_submit(
                project=project, labeler=labeler, prompt_id=lease.prompt_id,
                tiers=[[c.id] for c in order], idempotency_key=f"{labeler}-{lease.prompt_id}")


@pytest.fixture
def learnable_export(project, make_user, var_dir):
    """An export of 32 prompts ranked by three labelers who agree: 24 train, 8 test."""
    records = prompt_records(32, k=4, seed=5)
    annotate_services.prompts_import(
        project=project, filename="p.jsonl",
        binary=io.BytesIO("".join(json.dumps(r) + "\n" for r in records).encode()))
    rank_by_marker(project, [make_user(name) for name in ("ann", "ben", "cat")])
    params = annotate_services.ExportParams(min_votes=2, min_agreement=0.66, test_fraction=0.25,
                                            seed=1, formats=("trl-jsonl",))
    return annotate_services.export_create(project=project, params=params, created_by=None,
                                           run_now=True)


def import_policy_prompts(project, count: int) -> None:
    """Open-ended prompts a tiny policy continues, each with the project's 4 completions."""
    from training.ml.synthetic import policy_prompts

    records = [{"id": f"q{n}", "prompt": row["prompt"],
                "completions": [f" answer {n}.{k}" for k in range(4)]}
               for n, row in enumerate(policy_prompts(count, seed=3))]
    annotate_services.prompts_import(
        project=project, filename="p.jsonl",
        binary=io.BytesIO("".join(json.dumps(r) + "\n" for r in records).encode()))


FAST_REWARD = {"epochs": 3, "batch_size": 24, "learning_rate": 0.003, "checkpoint_every": 0,
               "threads": 1}
