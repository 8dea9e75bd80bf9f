"""Reads for the admin dashboard: labeler quality and project agreement, from the database.

Loads the project's labeler rankings once and hands them to the pure metrics in
annotate.agreement and annotate.consensus.
"""

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from statistics import median

from django.db.models import Count
from django.utils import timezone

from .agreement import (
    PositionRecord,
    gold_accuracy,
    krippendorff_alpha_ordinal,
    labeler_pair_taus,
    leave_one_out_agreement,
    pair_share_histogram,
    position_bias,
    position_bias_by_labeler,
)
from .consensus import LabeledRanking
from .models import Assignment, Project, Ranking


@dataclass
class LabelerQuality:
    user_id: int
    username: str
    rankings: int = 0
    skips: int = 0
    flagged_rankings: int = 0
    times_ms: list[int] = field(default_factory=list)
    gold_scores: list[float] = field(default_factory=list)
    loo_agreement: float | None = None
    loo_prompts: int = 0
    mean_tau: float | None = None
    first_shown_top_share: float | None = None
    expected_top_share: float | None = None
    below_gold_threshold: bool = False

    @property
    def skip_rate(self) -> float | None:
        seen = self.rankings + self.skips
        return self.skips / seen if seen else None

    @property
    def flag_rate(self) -> float | None:
        return self.flagged_rankings / self.rankings if self.rankings else None

    @property
    def median_seconds(self) -> float | None:
        return median(self.times_ms) / 1000 if self.times_ms else None

    @property
    def gold_accuracy(self) -> float | None:
        return sum(self.gold_scores) / len(self.gold_scores) if self.gold_scores else None


@dataclass
class ProjectQuality:
    labelers: list[LabelerQuality]
    alpha: float | None
    rankings: int
    pairs_voted: int  # pairs with at least two votes, split or not
    pair_agreement_histogram: list[int]  # agreement.PAIR_SHARE_BINS: split, then 0.5 to 1.0
    top_share_by_position: list[float]
    expected_top_share: float | None
    rankings_per_day: list[tuple[str, int]]
    throughput: "Throughput"


@dataclass
class Throughput:
    """Rankings per hour (a project younger than two days) or per day, oldest first."""

    unit: str  # "hour" or "day"
    buckets: list[tuple[datetime, int]]  # (start of the hour or day, rankings in it)


def project_quality(project: Project, days: int = 14) -> ProjectQuality:
    """Compute every dashboard metric of a project."""
    rows = list(
        Ranking.objects.filter(prompt__project=project, source=Ranking.Source.LABELER)
        .values_list("labeler_id", "labeler__username", "prompt_id", "tiers", "displayed_order",
                     "flags", "time_spent_ms", "prompt__gold_tiers", "prompt__gold_mode")
        .order_by("prompt_id", "labeler_id")
    )
    labelers: dict[str, LabelerQuality] = {}
    regular, positions = [], []
    for user_id, username, prompt_id, tiers, shown, flags, time_ms, gold, gold_mode in rows:
        quality = labelers.setdefault(username, LabelerQuality(user_id, username))
        quality.rankings += 1
        quality.flagged_rankings += bool(flags)
        if time_ms is not None:
            quality.times_ms.append(time_ms)
        if shown:
            positions.append(PositionRecord(username, shown, tiers))
        if gold is not None:
            quality.gold_scores.append(gold_accuracy(tiers, gold, mode=gold_mode))
        else:
            regular.append(LabeledRanking(prompt_id, username, tiers))
    _add_skips(project, labelers)
    _add_agreement(regular, labelers, project.gold_min_accuracy)
    _add_position_bias(positions, labelers)
    pair_shares = pair_share_histogram(regular, min_votes=2)
    bias = position_bias(positions)
    return ProjectQuality(
        labelers=sorted(labelers.values(), key=lambda q: q.username),
        alpha=krippendorff_alpha_ordinal(regular),
        rankings=len(rows),
        pairs_voted=sum(pair_shares),
        pair_agreement_histogram=pair_shares,
        top_share_by_position=bias.top_share_by_position,
        expected_top_share=bias.expected_share,
        rankings_per_day=_rankings_per_day(project, days),
        throughput=_throughput(project, days),
    )


def _add_skips(project: Project, labelers: dict[str, LabelerQuality]) -> None:
    skips = (
        Assignment.objects.filter(prompt__project=project, status=Assignment.Status.SKIPPED)
        .values_list("labeler_id", "labeler__username")
        .annotate(count=Count("id"))
    )
    for user_id, username, count in skips:
        labelers.setdefault(username, LabelerQuality(user_id, username)).skips = count


def _add_agreement(regular: list[LabeledRanking], labelers: dict[str, LabelerQuality],
                   gold_threshold: float) -> None:
    for username, summary in leave_one_out_agreement(regular).items():
        labelers[username].loo_agreement = summary.mean_agreement
        labelers[username].loo_prompts = summary.prompts
    tau_sums: dict[str, list[float]] = defaultdict(list)
    for (a, b), summary in labeler_pair_taus(regular).items():
        if summary.mean_tau is not None:
            tau_sums[a].append(summary.mean_tau)
            tau_sums[b].append(summary.mean_tau)
    for username, taus in tau_sums.items():
        labelers[username].mean_tau = sum(taus) / len(taus)
    for quality in labelers.values():
        accuracy = quality.gold_accuracy
        quality.below_gold_threshold = accuracy is not None and accuracy < gold_threshold


def _add_position_bias(positions: list[PositionRecord],
                       labelers: dict[str, LabelerQuality]) -> None:
    for username, bias in position_bias_by_labeler(positions).items():
        labelers[username].first_shown_top_share = bias.first_shown_top_share
        labelers[username].expected_top_share = bias.expected_share


def _rankings_per_day(project: Project, days: int) -> list[tuple[str, int]]:
    today = timezone.localdate()
    start = today - timedelta(days=days - 1)
    created = Ranking.objects.filter(
        prompt__project=project, source=Ranking.Source.LABELER, created_at__date__gte=start
    ).values_list("created_at", flat=True)
    per_day = Counter(timezone.localdate(moment) for moment in created)
    return [((start + timedelta(days=n)).strftime("%d"), per_day[start + timedelta(days=n)])
            for n in range(days)]


def _throughput(project: Project, days: int) -> Throughput:
    created = list(Ranking.objects.filter(
        prompt__project=project, source=Ranking.Source.LABELER,
        created_at__gte=timezone.now() - timedelta(days=days),
    ).values_list("created_at", flat=True))
    return throughput(created, timezone.localtime(), days=days)


def throughput(moments: list[datetime], now: datetime, *, days: int = 14) -> Throughput:
    """Bucket ranking times by hour when they all fall in the last 48 hours, else by day.

    A day's buckets start at local midnight; `now` carries the time zone.

    >>> from datetime import UTC
    >>> now = datetime(2026, 12, 5, 14, 30, tzinfo=UTC)
    >>> t = throughput([now - timedelta(hours=2), now - timedelta(hours=2, minutes=5)], now)
    >>> t.unit, len(t.buckets), t.buckets[-3][1]
    ('hour', 48, 2)
    >>> throughput([now - timedelta(days=3)], now).unit
    'day'
    """
    if all(now - moment <= timedelta(hours=48) for moment in moments):
        unit, step, count = "hour", timedelta(hours=1), 48
        last = now.replace(minute=0, second=0, microsecond=0)
    else:
        unit, step, count = "day", timedelta(days=1), days
        last = now.replace(hour=0, minute=0, second=0, microsecond=0)
    starts = [last - step * n for n in range(count - 1, -1, -1)]
    counts = Counter(
        (moment.astimezone(now.tzinfo) - starts[0]) // step for moment in moments
        if moment.astimezone(now.tzinfo) >= starts[0]
    )
    return Throughput(unit, [(start, counts[n]) for n, start in enumerate(starts)])


def flagged_labeler_ids(project: Project) -> set[int]:
    """Labelers whose mean gold accuracy is below the project's threshold."""
    scores: dict[int, list[float]] = defaultdict(list)
    gold_rankings = Ranking.objects.filter(
        prompt__project=project, source=Ranking.Source.LABELER, prompt__gold_tiers__isnull=False
    ).values_list("labeler_id", "tiers", "prompt__gold_tiers", "prompt__gold_mode")
    for user_id, tiers, reference, mode in gold_rankings:
        scores[user_id].append(gold_accuracy(tiers, reference, mode=mode))
    threshold = project.gold_min_accuracy
    return {user_id for user_id, s in scores.items() if sum(s) / len(s) < threshold}
