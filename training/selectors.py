"""Reads for training: every job and model is reached through its project's admin check.

A job or model of a project the user cannot see is a 404; of a project they only label, 403.
"""

import hashlib
from dataclasses import dataclass, replace

from django.core.cache import cache
from django.db.models import Count, Max, QuerySet, Sum
from django.http import Http404
from django.utils import timezone

from annotate import selectors as annotate_selectors
from annotate.agreement import pairwise_agreement
from annotate.charts import line_chart
from annotate.consensus import LabeledRanking, consensus_rankings
from annotate.models import Completion, Project, Prompt, Ranking
from annotate.winrates import HeadToHead, ModelStanding, summary_line
from config.errors import reason_line

from .kinds import JobKind
from .kinds.policy import evaluation_scope
from .models import CompletionScore, ModelArtifact, Round, TrainingJob


def _visible(queryset: QuerySet, user, object_id: int):
    found = queryset.select_related("project").filter(
        id=object_id, project__in=annotate_selectors.projects_visible_to(user)).first()
    if found is None:
        raise Http404("No such object.")
    annotate_selectors.project_get_administered(user, id=found.project_id)  # 403 for labelers
    return found


def job_get_for_admin(user, job_id: int) -> TrainingJob:
    return _visible(TrainingJob.objects.select_related("export", "base_artifact"), user, job_id)


def artifact_get_for_admin(user, artifact_id: int) -> ModelArtifact:
    return _visible(ModelArtifact.objects.select_related("job", "export"), user, artifact_id)


def round_get_for_admin(user, slug: str, number: int) -> Round:
    """A round of a project the user administers (its number counts within the project)."""
    project = annotate_selectors.project_get_administered(user, slug=slug)
    found = project.rounds.select_related("project").filter(number=number).first()
    if found is None:
        raise Http404("No such round.")
    return found


def jobs_for_admin(user, project: Project | None = None) -> QuerySet[TrainingJob]:
    jobs = TrainingJob.objects.filter(
        project__in=annotate_selectors.projects_administered_by(user))
    return jobs.filter(project=project) if project is not None else jobs


def artifacts_for_admin(user, project: Project | None = None) -> QuerySet[ModelArtifact]:
    artifacts = ModelArtifact.objects.filter(
        project__in=annotate_selectors.projects_administered_by(user))
    return artifacts.filter(project=project) if project is not None else artifacts


def job_output_artifact(job: TrainingJob) -> ModelArtifact | None:
    return job.artifacts.order_by("id").first()


def lineage(artifact: ModelArtifact) -> list[tuple[str, object]]:
    """What made this model, nearest first: its job, dataset, and the models before it."""
    chain: list[tuple[str, object]] = []
    seen = set()
    current = artifact
    while current is not None and current.id not in seen:
        seen.add(current.id)
        chain.append(("model", current))
        job = current.job
        if job is None:
            break
        chain.append(("job", job))
        if job.export is not None:
            chain.append(("dataset", job.export))
        if job.reward_artifact is not None:
            chain.append(("reward model", job.reward_artifact))
        current = job.base_artifact
    return chain


def job_metric_series(job: TrainingJob, names: tuple[str, ...]) -> dict[str, list[list[float]]]:
    """{name: [[step, value], ...]} from the job's metrics, the last attempt's value per step."""
    series: dict[str, dict[int, float]] = {name: {} for name in names}
    for point in job.metrics:
        for name in names:
            if isinstance(point.get(name), int | float):
                series[name][point["step"]] = point[name]
    return {name: sorted([step, value] for step, value in values.items())
            for name, values in series.items()}


@dataclass(frozen=True)
class RoundStep:
    """One step of a round as its page shows it."""

    part: str  # the plan's part: export, reward, policy, generate
    label: str
    status: str  # the export's or job's status; "waiting" before it exists
    seconds: float | None  # from start to end (or to now while it runs)
    error: str  # one line, on failure
    job_id: int | None


def round_to_go_on_from(project: Project) -> Round | None:
    """The round a new one goes on from (models, plan, algorithm): the newest that did not
    fail or get cancelled."""
    return (project.rounds.exclude(status__in=Round.ENDED_UNFINISHED)
            .order_by("-number").first())


def round_steps(round_: Round, now=None) -> list[RoundStep]:
    now = now or timezone.now()
    steps = []
    for part, field, label in Round.STEPS:
        work = getattr(round_, field)
        if work is None:
            steps.append(RoundStep(part, label, "waiting", None, "", None))
            continue
        seconds = None
        if work.started_at:
            seconds = ((work.finished_at or now) - work.started_at).total_seconds()
        steps.append(RoundStep(
            part, label, work.status, seconds,
            reason_line(work.error) if work.error and work.status == "failed" else "",
            work.id if field != "export" else None))
    return steps


def rounds_with_progress(project: Project) -> list[tuple[Round, dict, list[RoundStep]]]:
    """Each round with the ranking progress of the prompts it generated, and its steps."""
    found = []
    rounds = project.rounds.select_related(
        "export", "reward_job", "policy_job", "generation_job", "reward_artifact",
        "policy_artifact", "prompt_import").order_by("number")
    for round_ in rounds:
        progress = {"prompts": 0, "ranked": 0, "needed": 0}
        if round_.prompt_import_id:
            totals = round_.prompt_import.prompts.aggregate(prompts=Count("id"),
                                                            ranked=Sum("ranking_count"))
            progress = {"prompts": totals["prompts"], "ranked": totals["ranked"] or 0,
                        "needed": totals["prompts"] * project.labelers_per_prompt}
        found.append((round_, progress, round_steps(round_)))
    return found


@dataclass(frozen=True)
class RoundJudgment:
    """A round's policy as the labelers judged it against the reference (from the rankings of
    the round's mixed completions), beside the reward model's view of it."""

    number: int
    policy: str
    reference: str
    human: HeadToHead | None  # the policy against the reference; None until ranked
    summary: str  # one line, e.g. "policy v2 beats tiny/policy 62% (95% CI 51-71%, ...)"
    standings: tuple[ModelStanding, ...]  # every model of the round, strongest first
    reward_view: dict  # the policy's evaluation: policy_reward, reference_reward, win_rate, kl


def rounds_judged(rounds: list[Round]) -> list[RoundJudgment]:
    """Each round whose generation mixed the policy with a reference, judged by its rankings.
    Cached per round until its rankings change (the page reloads every few seconds)."""
    judged = []
    for round_ in rounds:
        job = round_.generation_job
        sources = {s["slot"]: s["model"] for s in (job.result.get("sources", []) if job else [])}
        if not round_.prompt_import_id or "base" not in sources or len(sources) < 2:
            continue
        reference = sources.get("reference") or sources.get("previous")
        rankings = Ranking.objects.filter(prompt__source_import_id=round_.prompt_import_id,
                                          source=Ranking.Source.LABELER,
                                          prompt__retired_at__isnull=True)
        state = rankings.aggregate(n=Count("id"), last=Max("updated_at"))
        changed = state["last"].timestamp() if state["last"] else 0
        key = (f"round-judged:{round_.id}:{state['n']}:{changed}:"
               f"{hashlib.sha256(reference.encode()).hexdigest()[:16]}")
        result = cache.get(key)
        if result is None:
            result = annotate_selectors.model_win_rates(
                round_.project, source_import_id=round_.prompt_import_id, reference=reference)
            cache.set(key, result, timeout=3600)
        if result is None:
            continue
        policy = sources["base"]
        known = {s.model for s in result.standings}
        judged.append(RoundJudgment(
            number=round_.number, policy=policy, reference=reference,
            human=result.versus(policy, reference) if policy in known else None,
            summary=(summary_line(result, policy) if policy in known
                     else f"{policy}: not ranked yet"),
            standings=result.standings,
            reward_view=(round_.policy_artifact.metrics.get("eval") or {})
            if round_.policy_artifact else {}))
    return judged


def judged_chart(judged: list[RoundJudgment]) -> str:
    """Win rate of each round's policy against the reference: the labelers' (with its
    interval) and the reward model's."""
    human = [j for j in judged if j.human is not None]
    series = {
        "labelers": [[j.number, j.human.win_rate] for j in human],
        "95% low": [[j.number, j.human.win_rate_low] for j in human
                    if j.human.win_rate_low is not None],
        "95% high": [[j.number, j.human.win_rate_high] for j in human
                     if j.human.win_rate_high is not None],
        "reward model": [[j.number, j.reward_view["win_rate"]] for j in judged
                         if j.reward_view.get("win_rate") is not None],
    }
    return line_chart(series, title="Win rate against the reference, by round",
                      value_format="{:.0%}")


def kind_initial(project: Project, kind: JobKind) -> dict:
    """What a new request of this kind starts from: the settings the project used last."""
    defaults = kind.defaults()
    last = (TrainingJob.objects.filter(project=project, kind=kind.name)
            .order_by("-created_at").values_list("params", flat=True).first()) or {}
    return defaults | {k: v for k, v in last.items() if k in defaults}


# --- a policy against its reference -----------------------------------------------------------


def policy_evaluation(artifact: ModelArtifact) -> dict | None:
    """A policy's evaluation as its page shows it: the numbers, what it was judged on in
    words, and each sample's prompt as chat turns [(role, content), ...] (none for text)."""
    evaluation = (artifact.metrics or {}).get("eval") if artifact.kind == "policy" else None
    if not evaluation or "win_rate" not in evaluation:
        return None
    samples = [{**row, "turns": prompt_turns(row.get("prompt"))}
               for row in evaluation.get("samples", [])]
    return {**evaluation, "scope": evaluation_scope(evaluation), "samples": samples}


def prompt_turns(prompt) -> list[tuple[str, str]]:
    """[(role, content), ...] of a chat prompt; [] for a text prompt.

    >>> prompt_turns([{"role": "user", "content": "Hi"}]), prompt_turns("Hi")
    ([('user', 'Hi')], [])
    """
    if not isinstance(prompt, list):
        return []
    return [(str(m.get("role", "")), str(m.get("content", ""))) for m in prompt
            if isinstance(m, dict)]


# --- where a reward model disagrees with the labelers ---------------------------------------


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
