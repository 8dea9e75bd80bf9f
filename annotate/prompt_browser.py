"""Reads for the prompt browser: a project's prompts found by text and state, and one prompt
with every ranking of it, their consensus and each pair's votes. For the project's admins
(the views check that), so labelers appear by username, as on the dashboard."""

from dataclasses import dataclass
from itertools import combinations
from string import ascii_uppercase

from django.db.models import Count, F, Q, QuerySet
from django.http import Http404
from django.utils import timezone

from .agreement import pairwise_agreement
from .consensus import LabeledRanking, consensus_rankings, tally_pairs
from .models import Assignment, Completion, Project, Prompt, Ranking
from .rendering import plain_preview

# What the state filter offers; every state but "retired" lists active prompts only.
PROMPT_STATES = {
    "all": "All active",
    "untouched": "Untouched",
    "in_progress": "In progress",
    "complete": "Complete",
    "gold": "Gold",
    "flagged": "Flagged",
    "skipped": "Skipped",
    "sent_back": "Sent back for more",
    "retired": "Retired",
}
MAX_QUERY = 200  # characters of a search; longer ones are cut


def prompts_browse(project: Project, *, query: str = "", state: str = "all",
                   now=None) -> QuerySet[Prompt]:
    """Return the project's prompts in `state` (see PROMPT_STATES; unknown: "all") whose text,
    chat messages, external id or a completion contain `query`, ignoring case; by id.

    Untouched: no ranking, no open lease and no skip. Complete: as many labeler rankings as
    the project's N plus those asked for since. In progress: neither. Flagged: a ranking flags
    a completion. Skipped: a labeler skipped it. Sent back: more rankings were asked for.
    """
    prompts = Prompt.objects.filter(project=project).order_by("id")
    prompts = _in_state(prompts, project, state, now or timezone.now())
    query = query.strip()[:MAX_QUERY]
    if query:
        in_completions = Completion.objects.filter(prompt__project=project,
                                                   text__icontains=query).values("prompt_id")
        prompts = prompts.filter(Q(text__icontains=query) | Q(messages__icontains=query)
                                 | Q(external_id__icontains=query) | Q(id__in=in_completions))
    return prompts


def _in_state(prompts: QuerySet[Prompt], project: Project, state: str, now) -> QuerySet[Prompt]:
    if state == "retired":
        return prompts.filter(retired_at__isnull=False)
    prompts = prompts.filter(retired_at__isnull=True)
    target = F("extra_rankings") + project.labelers_per_prompt
    touched = Assignment.objects.filter(prompt__project=project).exclude(
        status=Assignment.Status.LEASED, expires_at__lte=now).values("prompt_id")
    untouched = Q(ranking_count=0) & ~Q(id__in=touched)
    filters = {
        "untouched": untouched,
        "complete": Q(ranking_count__gte=target),
        "in_progress": Q(ranking_count__lt=target) & ~untouched,
        "gold": Q(gold_tiers__isnull=False),
        "flagged": Q(id__in=Ranking.objects.filter(prompt__project=project)
                     .exclude(flags={}).values("prompt_id")),
        "skipped": Q(id__in=Assignment.objects.filter(
            prompt__project=project, status=Assignment.Status.SKIPPED).values("prompt_id")),
        "sent_back": Q(extra_rankings__gt=0),
    }
    return prompts.filter(filters[state]) if state in filters else prompts


@dataclass(frozen=True)
class PromptRow:
    """A prompt as the browser lists it."""

    prompt: Prompt
    preview: str
    target: int  # labeler rankings wanted: N plus those asked for since
    flagged: int  # rankings that flag a completion
    skipped: int


def prompt_rows(project: Project, prompts: list[Prompt]) -> list[PromptRow]:
    """Return the rows of one page of the browser, with two counting queries for all of them."""
    ids = [prompt.id for prompt in prompts]
    flagged = dict(Ranking.objects.filter(prompt_id__in=ids).exclude(flags={})
                   .values_list("prompt_id").annotate(n=Count("id")))
    skipped = dict(Assignment.objects.filter(prompt_id__in=ids,
                                             status=Assignment.Status.SKIPPED)
                   .values_list("prompt_id").annotate(n=Count("id")))
    return [PromptRow(prompt, plain_preview(prompt.last_text),
                      project.labelers_per_prompt + prompt.extra_rankings,
                      flagged.get(prompt.id, 0), skipped.get(prompt.id, 0))
            for prompt in prompts]


def prompt_get(project: Project, prompt_id: int) -> Prompt:
    """One prompt of `project` (whose access the caller checked), or Http404."""
    prompt = Prompt.objects.filter(project=project, id=prompt_id).first()
    if prompt is None:
        raise Http404("No such prompt in this project.")
    return prompt


@dataclass(frozen=True)
class LabeledCompletion:
    label: str  # "A", "B", ... in the order imported
    completion: Completion


@dataclass(frozen=True)
class RankingRow:
    """One ranking of the prompt: who, the tiers as labels, and how far it follows the
    consensus (the share of pairs ordered the same way)."""

    ranking: Ranking
    labeler: str
    tiers: list[list[str]]
    flags: list[tuple[str, list[str]]]  # (completion label, flag names)
    agreement: float | None


@dataclass(frozen=True)
class PairRow:
    """One pair of completions: the labelers' votes on it, the winner and their share."""

    first: str
    second: str
    first_votes: float
    second_votes: float
    votes: int
    winner: str | None  # None: a split vote
    agreement: float  # the larger side's share, 0.5 for a split


@dataclass(frozen=True)
class PromptReview:
    prompt: Prompt
    completions: list[LabeledCompletion]
    rankings: list[RankingRow]
    consensus: list[list[str]] | None  # tiers of labels; None before any labeler ranked it
    gold: list[list[str]] | None  # the gold reference, in labels
    pairs: list[PairRow]
    skips: list[tuple[str, str]]  # (username, reason)
    open_leases: int


def prompt_review(project: Project, prompt: Prompt, now=None) -> PromptReview:
    """Return what the prompt's page shows: its completions, every ranking of it (labelers'
    and imported), the labelers' consensus by ranked pairs and the votes on each pair."""
    completions = list(prompt.completions.order_by("position"))
    label = {c.id: _label(n) for n, c in enumerate(completions)}
    rankings = list(prompt.rankings.select_related("labeler").order_by("source", "created_at"))
    labeled = [LabeledRanking(prompt.id, str(r.labeler_id), r.tiers) for r in rankings
               if r.source == Ranking.Source.LABELER]
    policy = project.consensus_tie_policy
    merged = consensus_rankings(labeled, policy)
    consensus = merged[0].tiers if merged else None
    tallies = tally_pairs(labeled, policy) if labeled else {}
    assignments = prompt.assignments.select_related("labeler")
    return PromptReview(
        prompt=prompt,
        completions=[LabeledCompletion(label[c.id], c) for c in completions],
        rankings=[_ranking_row(r, label, consensus) for r in rankings],
        consensus=_labels(consensus, label) if consensus else None,
        gold=_labels(prompt.gold_tiers, label) if prompt.is_gold else None,
        pairs=[_pair_row(a.id, b.id, tallies, label) for a, b in combinations(completions, 2)],
        skips=[(a.labeler.username, a.skip_reason) for a in assignments
               if a.status == Assignment.Status.SKIPPED],
        open_leases=sum(a.status == Assignment.Status.LEASED
                        and a.expires_at > (now or timezone.now()) for a in assignments),
    )


def _label(position: int) -> str:
    return ascii_uppercase[position] if position < len(ascii_uppercase) else str(position + 1)


def _labels(tiers, label: dict[int, str]) -> list[list[str]]:
    return [[label.get(i, str(i)) for i in tier] for tier in tiers]


def _ranking_row(ranking: Ranking, label: dict[int, str], consensus) -> RankingRow:
    name = ranking.labeler.username if ranking.labeler else "imported with the data"
    flags = [(label.get(int(key), key), names) for key, names in sorted(ranking.flags.items())]
    agreement = pairwise_agreement(ranking.tiers, consensus) if consensus else None
    return RankingRow(ranking, name, _labels(ranking.tiers, label), flags, agreement)


def _pair_row(low: int, high: int, tallies: dict, label: dict[int, str]) -> PairRow:
    first, second = sorted((low, high))
    tally = tallies.get((first, second))
    if tally is None or tally.votes == 0:
        return PairRow(label[first], label[second], 0, 0, 0, None, 0.5)
    total = tally.low_wins + tally.high_wins
    winner = (None if tally.low_wins == tally.high_wins
              else label[first] if tally.low_wins > tally.high_wins else label[second])
    share = max(tally.low_wins, tally.high_wins) / total if total else 0.5
    return PairRow(label[first], label[second], tally.low_wins, tally.high_wins, tally.votes,
                   winner, share)
