"""The model registry: start reward-model and scoring jobs, score on request, and find where
a reward model disagrees with the labelers' consensus."""

import threading
from collections import OrderedDict
from dataclasses import dataclass, replace
from pathlib import Path

from django.contrib.auth.models import AbstractUser
from django.db import transaction
from django.db.models import F

from annotate.agreement import pairwise_agreement
from annotate.consensus import LabeledRanking, consensus_rankings
from annotate.models import Completion, Export, Project, Prompt, Ranking

from ..ml.config import ConfigError, RewardTrainingConfig
from ..ml.generate import GenerationConfig
from ..ml.ppo import PolicyTrainingConfig
from ..models import CompletionScore, ModelArtifact, TrainingJob
from .jobs import JobRefused, job_create
from .kinds import var_absolute

MAX_SCORE_ITEMS = 256  # per API request: scoring runs in the web process
SCORERS_KEPT = 2
JOB_PARAMS = ("model_name", "eval_file")  # kept on the job, not fields of the config


def _validate_config(config_class, params: dict, set_by_job: dict,
                     kept: tuple[str, ...] = JOB_PARAMS) -> None:
    """Refuse params that do not make a valid config once the job fills in `set_by_job`
    (paths and the like, which a request may not set); `kept` params are not config fields."""
    config = {k: v for k, v in params.items() if k not in kept}
    taken = set(config) & set(set_by_job)
    if taken:
        raise JobRefused(f"{', '.join(sorted(taken))}: set by the job, not by the request")
    try:
        config_class.from_dict({**config, **set_by_job})
    except ConfigError as exc:
        raise JobRefused(str(exc)) from None


def reward_job_create(*, project: Project, params: dict, base_model: str = "",
                      created_by: AbstractUser | None, export: Export | None = None,
                      dataset_path: str = "", base_artifact: ModelArtifact | None = None,
                      ) -> tuple[TrainingJob, bool]:
    """Validate a reward-model request and queue it; return (job, created)."""
    if (export is None) == (not dataset_path):
        raise JobRefused("Give exactly one dataset: an export of this project or a JSONL path.")
    if export is not None and (export.project_id != project.id
                               or export.status != Export.Status.SUCCEEDED):
        raise JobRefused(f"Export {export.id} is not a finished export of this project.")
    if base_artifact is not None:
        if base_artifact.project_id != project.id or base_artifact.kind != "reward":
            raise JobRefused(f"Model {base_artifact.id} is not a reward model of this project.")
        base_model = base_model or str(base_artifact)
    if not base_model:
        raise JobRefused("base_model: give a Hugging Face model name or a local path.")
    _validate_config(RewardTrainingConfig, params, {"base_model": base_model,
                                                    "train_file": "-", "output_dir": "-"})
    return job_create(project=project, kind=TrainingJob.Kind.REWARD, params=params,
                      base_model=base_model, created_by=created_by, export=export,
                      dataset_path=dataset_path, base_artifact=base_artifact)


def _policy_base(project: Project, base_model: str,
                 base_artifact: ModelArtifact | None) -> str:
    """The policy a job starts from: a registered policy of the project, or a name/path."""
    if base_artifact is not None:
        if base_artifact.project_id != project.id or base_artifact.kind != "policy":
            raise JobRefused(f"Model {base_artifact.id} is not a policy of this project.")
        base_model = base_model or str(base_artifact)
    if not base_model:
        raise JobRefused("policy: give a Hugging Face model name, a local path, or a policy "
                         "of this project.")
    return base_model


def policy_job_create(*, project: Project, params: dict, reward_artifact: ModelArtifact,
                      created_by: AbstractUser | None, base_model: str = "",
                      base_artifact: ModelArtifact | None = None, dataset_path: str = "",
                      ) -> tuple[TrainingJob, bool]:
    """Validate a PPO (or RLOO/GRPO) request against a registered reward model; queue it.

    The policy is a Hugging Face name or path, or a registered policy to go on from; the
    prompts are the project's (a tenth held out for evaluation) unless a JSONL file is given.
    """
    if reward_artifact.project_id != project.id or reward_artifact.kind != "reward":
        raise JobRefused(f"Model {reward_artifact.id} is not a reward model of this project.")
    base_model = _policy_base(project, base_model, base_artifact)
    _validate_config(PolicyTrainingConfig, params, {
        "policy": base_model, "reward_model": "-", "prompts_file": "-",
        "eval_prompts_file": None, "output_dir": "-"})
    if not dataset_path and not project.prompts.filter(gold_tiers__isnull=True).exists():
        raise JobRefused("The project has no prompts to train a policy on.")
    return job_create(project=project, kind=TrainingJob.Kind.PPO, params=params,
                      base_model=base_model, created_by=created_by, base_artifact=base_artifact,
                      reward_artifact=reward_artifact, dataset_path=dataset_path)


def generate_job_create(*, project: Project, params: dict, created_by: AbstractUser | None,
                        base_model: str = "", base_artifact: ModelArtifact | None = None,
                        dataset_path: str = "", dispatch: bool = True,
                        ) -> tuple[TrainingJob, bool]:
    """Queue a job in which a policy writes K completions (K: the project's) per prompt,
    imported as a new round. Prompts: the project's own, or a JSONL file."""
    base_model = _policy_base(project, base_model, base_artifact)
    if "k" in params and params["k"] != project.completions_per_prompt:
        raise JobRefused(f"k: this project takes {project.completions_per_prompt} completions "
                         "per prompt")
    _validate_config(GenerationConfig, params, {
        "policy": base_model, "prompts_file": "-", "output_file": "-", "model_name": ""},
        kept=("k",))
    return job_create(project=project, kind=TrainingJob.Kind.GENERATE, params=params,
                      base_model=base_model, created_by=created_by, base_artifact=base_artifact,
                      dataset_path=dataset_path, dispatch=dispatch)


def score_job_create(*, artifact: ModelArtifact, created_by: AbstractUser | None,
                     alpha: float = 1.0) -> tuple[TrainingJob, bool]:
    """Queue a job that scores every completion of the artifact's project."""
    if artifact.kind != ModelArtifact.Kind.REWARD:
        raise JobRefused("Only reward models score completions.")
    return job_create(project=artifact.project, kind=TrainingJob.Kind.SCORE,
                      params={"alpha": alpha}, base_model=str(artifact), created_by=created_by,
                      base_artifact=artifact)


# --- scoring on request -----------------------------------------------------------------------


_scorers: OrderedDict[str, object] = OrderedDict()
_scorers_lock = threading.Lock()


def _scorer_for(artifact: ModelArtifact):
    """A loaded scorer, kept for the next request (the last SCORERS_KEPT models)."""
    path = str(var_absolute(artifact.merged_path or artifact.path))
    if not Path(path).exists():  # deleted or moved: loading it would be a 500
        raise JobRefused(f"Model {artifact.id}'s files are missing "
                         f"({artifact.merged_path or artifact.path}).", 409)
    from ..ml.scoring import RewardScorer

    with _scorers_lock:
        if path in _scorers:
            _scorers.move_to_end(path)
            return _scorers[path]
        scorer = RewardScorer.load(path)
        _scorers[path] = scorer
        while len(_scorers) > SCORERS_KEPT:
            _scorers.popitem(last=False)
        return scorer


def model_score(artifact: ModelArtifact, items: list[tuple], alpha: float = 1.0) -> list[float]:
    """Score (prompt, response) pairs with a registered reward model, alpha times the reward."""
    if artifact.kind != ModelArtifact.Kind.REWARD:
        raise JobRefused("Only reward models score.")
    if not 1 <= len(items) <= MAX_SCORE_ITEMS:
        raise JobRefused(f"Send between 1 and {MAX_SCORE_ITEMS} items; for a whole project "
                         "start a scoring job.")
    scorer = _scorer_for(artifact)
    with _scorers_lock:  # one forward at a time per process: torch threads are shared
        return scorer.score(items, alpha=alpha)


# --- disagreement with the labelers -----------------------------------------------------------


@dataclass(frozen=True)
class Disagreement:
    prompt_id: int
    agreement: float  # pairwise agreement of the reward order with the labelers' consensus
    consensus: list[list[int]]
    rewards: dict[int, float]
    rankings: int
    prompt_snippet: str = ""
    consensus_order: str = ""  # "A > C = B > D": completions by their letter as imported
    reward_order: str = ""  # "C 1.23, A 0.80, ..."


def disagreements(artifact: ModelArtifact, limit: int = 50) -> list[Disagreement]:
    """Prompts where the reward model orders completions least like the labelers' consensus."""
    rewards: dict[int, dict[int, float]] = {}
    for prompt_id, completion_id, reward in CompletionScore.objects.filter(
            artifact=artifact).values_list("completion__prompt_id", "completion_id", "reward"):
        rewards.setdefault(prompt_id, {})[completion_id] = reward
    rankings = (Ranking.objects.filter(prompt__project=artifact.project,
                                       source=Ranking.Source.LABELER)
                .order_by("prompt_id").values_list("prompt_id", "labeler_id", "tiers"))
    labeled = [LabeledRanking(p, str(labeler), tiers) for p, labeler, tiers in rankings]
    found = []
    for consensus in consensus_rankings(labeled):
        scored = rewards.get(consensus.prompt_id)
        if not scored or len(scored) < 2:
            continue
        by_reward = [[c] for c in sorted(scored, key=scored.__getitem__, reverse=True)
                     if any(c in tier for tier in consensus.tiers)]
        found.append(Disagreement(consensus.prompt_id,
                                  pairwise_agreement(by_reward, consensus.tiers),
                                  consensus.tiers, scored, consensus.rankings))
    found.sort(key=lambda d: (d.agreement, d.prompt_id))
    return _described(found[:limit])


SNIPPET = 90


def _described(found: list[Disagreement]) -> list[Disagreement]:
    """Add what a person reads: the prompt's start, completions by letter A, B, C ..."""
    ids = [d.prompt_id for d in found]
    prompts = {pid: (text, messages) for pid, text, messages in
               Prompt.objects.filter(id__in=ids).values_list("id", "text", "messages")}
    letters = {cid: "ABCDEFGHI"[position] for cid, position in
               Completion.objects.filter(prompt_id__in=ids).values_list("id", "position")}
    described = []
    for d in found:
        text, messages = prompts[d.prompt_id]
        if messages:
            text = next((m["content"] for m in reversed(messages) if m["role"] == "user"), "")
        snippet = text if len(text) <= SNIPPET else text[:SNIPPET].rstrip() + "…"
        consensus = " > ".join(" = ".join(letters[c] for c in tier) for tier in d.consensus)
        by_reward = sorted(d.rewards.items(), key=lambda item: -item[1])
        rewards = ", ".join(f"{letters[c]} {value:.2f}" for c, value in by_reward)
        described.append(replace(d, prompt_snippet=snippet, consensus_order=consensus,
                                 reward_order=rewards))
    return described


def prompts_request_more_rankings(*, project: Project, prompt_ids: list[int],
                                  extra: int = 1) -> int:
    """Send prompts back to the labelers: each asks for `extra` more rankings."""
    with transaction.atomic():
        return Prompt.objects.filter(project=project, id__in=prompt_ids,
                                     gold_tiers__isnull=True).update(
            extra_rankings=F("extra_rankings") + extra)



