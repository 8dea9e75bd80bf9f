"""Human-judged progress across models: win rates and Bradley-Terry strengths from rankings.

Pure Python: no Django, no database, no numpy (it is not a declared dependency). The data
contract:

- in: rankings as (prompt_id, tiers) pairs, tiers best first (see annotate.ranking), several
  rankings of one prompt allowed (one per labeler; from consensus.LabeledRanking objects:
  `[(r.prompt_id, r.tiers) for r in rankings]`); `model_of` maps every ranked completion id to
  the name of the model that wrote it; optionally the name of the reference model;
- a comparison is a pair of completions of different models in one ranking: the one in the
  better tier wins, a shared tier is a tie, worth half a win to each side. Pairs of one model's
  completions say nothing about models and are ignored;
- out: WinRates, holding a ModelStanding per model (overall win rate, Bradley-Terry strength,
  the head-to-head against the reference) and a HeadToHead per ordered pair of models that met,
  each with a bootstrap percentile interval.

Bradley-Terry strengths are log-strengths fitted by maximum likelihood to all comparisons at
once (annotate.bradley_terry), the reference fixed at 0 (or, with no reference, the mean at 0),
so strength A - strength B is the log-odds that A beats B. `prior_ties` virtual ties are added
to each pair of models that met, which keeps a model that won every time finite and pulls a
pair seen a few times toward even; it weighs as much as `prior_ties` real comparisons.

The bootstrap resamples prompts with replacement: the comparisons in one ranking share
completions, and a prompt's rankings share the prompt, so prompts are the independent units.
An interval is None when there was no resample (resamples=0) or the statistic was undefined in
every resample (no comparison drawn); resamples where it is undefined are left out.
"""

import math
import random
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import repeat
from operator import mod

from .bradley_terry import fit_log_strengths, sigmoid

Tiers = Sequence[Sequence[int]]
Pair = tuple[int, int]  # (model index, higher model index)


@dataclass(frozen=True, slots=True)
class HeadToHead:
    model: str
    opponent: str
    comparisons: int  # pairs of a `model` completion and an `opponent` one in one ranking
    wins: int
    ties: int
    win_rate: float  # (wins + ties / 2) / comparisons
    win_rate_low: float | None  # the bootstrap interval of win_rate
    win_rate_high: float | None

    @property
    def losses(self) -> int:
        return self.comparisons - self.wins - self.ties


@dataclass(frozen=True, slots=True)
class ModelStanding:
    model: str
    comparisons: int  # against completions of every other model
    wins: int
    ties: int
    win_rate: float | None  # (wins + ties / 2) / comparisons; None without comparisons
    win_rate_low: float | None
    win_rate_high: float | None
    strength: float | None  # Bradley-Terry log-strength; None if not linked to the reference
    strength_low: float | None
    strength_high: float | None
    p_beats_reference: float | None  # BT-implied: sigmoid(strength); its interval is the
    # sigmoid of the strength's. None without a reference or a strength
    vs_reference: HeadToHead | None  # None for the reference and for a model never met it


@dataclass(frozen=True, slots=True)
class WinRates:
    reference: str | None
    prompts: int
    rankings: int
    resamples: int
    confidence: float  # of every interval, e.g. 0.95
    standings: tuple[ModelStanding, ...]  # strongest first; unlinked models last
    head_to_head: tuple[HeadToHead, ...]  # both orders of each pair that met, in standings order

    def standing(self, model: str) -> ModelStanding:
        for standing in self.standings:
            if standing.model == model:
                return standing
        raise ValueError(f"no model {model!r} in these rankings")

    def versus(self, model: str, opponent: str) -> HeadToHead | None:
        """Return `model`'s record against `opponent`, or None if they never met."""
        for record in self.head_to_head:
            if record.model == model and record.opponent == opponent:
                return record
        return None


def win_rates(
    rankings: Iterable[tuple[Hashable, Tiers]],
    model_of: Mapping[int, str],
    *,
    reference: str | None = None,
    resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
    prior_ties: float = 1.0,
) -> WinRates:
    """Return every model's win rates and Bradley-Terry strength, with bootstrap intervals.

    Models are those that wrote a ranked completion, plus the reference. A model whose
    comparisons never link it (through other models) to the reference has strength None; with
    no reference, strengths are centred on the largest linked group of models. Prompt ids must
    sort (database ids do): results do not depend on the order of `rankings`.
    `prior_ties=0` gives the plain maximum-likelihood fit and raises ValueError where it is
    infinite (a model that won, or lost, every comparison).

    >>> result = win_rates([(1, [[10], [11]]), (2, [[21], [20]]), (3, [[30], [31]])],
    ...                    {10: "policy", 20: "policy", 30: "policy",
    ...                     11: "ref", 21: "ref", 31: "ref"},
    ...                    reference="ref", resamples=0, prior_ties=0)
    >>> policy = result.standing("policy")
    >>> policy.wins, policy.comparisons, round(policy.strength, 4), round(math.log(2), 4)
    (2, 3, 0.6931, 0.6931)
    >>> summary_line(result, "policy")
    'policy beats ref 67% (3 comparisons)'
    """
    _check_options(resamples, confidence, prior_ties)
    models, tables, ranking_count = _count_comparisons(rankings, model_of, reference)
    pairs = sorted({pair for table in tables for pair in table})
    totals = {
        pair: [sum(t[pair][k] for t in tables if pair in t) for k in range(3)] for pair in pairs
    }
    ref_index = models.index(reference) if reference is not None else None
    linked = _linked_group(len(models), pairs, ref_index)
    fit = _StrengthFit(len(models), pairs, linked, ref_index, prior_ties)
    point = fit.solve(
        {pair: (2 * won + tied, won + lost + tied) for pair, (won, lost, tied) in totals.items()}
    )
    draws = _bootstrap(tables, pairs, fit, point, resamples, seed) if tables else []
    return _assemble(
        models, reference, totals, point, draws, confidence, len(tables), ranking_count, resamples
    )


def summary_line(result: WinRates, model: str) -> str:
    """Return one line on how `model` fares against the reference (or everyone, with none).

    E.g. "policy-r2 beats reference 62% (95% CI 51-71%, 48 comparisons)".
    """
    standing = result.standing(model)
    level = f"{round(result.confidence * 100)}% CI"
    if result.reference is None:
        if standing.win_rate is None:
            return f"{model} was never ranked against another model"
        return (
            f"{model} wins {standing.win_rate * 100:.0f}% of its comparisons"
            f"{_bracket(standing.win_rate_low, standing.win_rate_high, level, standing)}"
        )
    if model == result.reference:
        return f"{model} is the reference"
    record = standing.vs_reference
    if record is None:
        return f"{model} was never ranked against {result.reference}"
    return (
        f"{model} beats {result.reference} {record.win_rate * 100:.0f}%"
        f"{_bracket(record.win_rate_low, record.win_rate_high, level, record)}"
    )


def _bracket(
    low: float | None, high: float | None, level: str, counts: HeadToHead | ModelStanding
) -> str:
    n = counts.comparisons
    size = f"{n} comparison{'' if n == 1 else 's'}"
    if low is None or high is None:
        return f" ({size})"
    return f" ({level} {low * 100:.0f}-{high * 100:.0f}%, {size})"


def _check_options(resamples: int, confidence: float, prior_ties: float) -> None:
    if isinstance(resamples, bool) or not isinstance(resamples, int) or resamples < 0:
        raise ValueError("resamples must be a whole number, 0 or more")
    if not 0 < confidence < 1:
        raise ValueError("confidence must be between 0 and 1, e.g. 0.95")
    if not prior_ties >= 0 or math.isinf(prior_ties):
        raise ValueError("prior_ties must be a finite number, 0 or more")


# --- counting -------------------------------------------------------------------------------


def _count_comparisons(
    rankings: Iterable[tuple[Hashable, Tiers]], model_of: Mapping[int, str], reference: str | None
) -> tuple[list[str], list[dict[Pair, list[int]]], int]:
    """Return the models (sorted), one table per prompt (in prompt order) and the ranking count.

    A table maps (model a, model b), a < b, to [a's wins, b's wins, ties] in that prompt.
    """
    by_prompt: dict[Hashable, list[list[tuple[str, int]]]] = {}
    names: set[str] = set() if reference is None else {reference}
    ranking_count = 0
    for prompt_id, tiers in rankings:
        ranked, seen = [], set()
        for tier_index, tier in enumerate(tiers):
            for completion_id in tier:
                if completion_id not in model_of:
                    raise ValueError(f"prompt {prompt_id}: completion {completion_id} has no model")
                if completion_id in seen:
                    raise ValueError(f"prompt {prompt_id}: completion {completion_id} ranked twice")
                seen.add(completion_id)
                ranked.append((model_of[completion_id], tier_index))
        names.update(name for name, _ in ranked)
        by_prompt.setdefault(prompt_id, []).append(ranked)
        ranking_count += 1
    models = sorted(names)
    index = {name: n for n, name in enumerate(models)}
    tables = [_prompt_table(by_prompt[prompt_id], index) for prompt_id in sorted(by_prompt)]
    return models, tables, ranking_count


def _prompt_table(rankings: list[list[tuple[str, int]]], index: dict[str, int]):
    table: dict[Pair, list[int]] = {}
    for ranked in rankings:
        placed = sorted((index[name], tier_index) for name, tier_index in ranked)
        for n, (a, tier_a) in enumerate(placed):
            for b, tier_b in placed[n + 1 :]:
                if a != b:  # sorted, so a < b
                    outcome = 0 if tier_a < tier_b else 1 if tier_b < tier_a else 2
                    table.setdefault((a, b), [0, 0, 0])[outcome] += 1
    return table


def _linked_group(model_count: int, pairs: list[Pair], ref_index: int | None) -> list[int]:
    """Return the models linked by comparisons to the reference, else the largest such group."""
    neighbours: dict[int, set[int]] = {m: set() for m in range(model_count)}
    for a, b in pairs:
        neighbours[a].add(b)
        neighbours[b].add(a)
    groups, placed = [], set()
    for start in range(model_count):
        if start in placed:
            continue
        group, stack = {start}, [start]
        while stack:
            for nxt in neighbours[stack.pop()] - group:
                group.add(nxt)
                stack.append(nxt)
        placed |= group
        groups.append(sorted(group))
    if ref_index is not None:
        return next(group for group in groups if ref_index in group)
    linked = max(groups, key=len, default=[])
    return linked if len(linked) > 1 else []


# --- Bradley-Terry --------------------------------------------------------------------------


class _StrengthFit:
    """Fit the linked models' log-strengths to (doubled lower-index score, comparisons) counts.

    Every pair that met in the full data gets `prior_ties` virtual ties in every fit, so a
    resample that happens to draw no comparison of a pair still links its two models.
    """

    def __init__(self, model_count, pairs, linked, ref_index, prior_ties):
        self.model_count, self.linked, self.prior = model_count, linked, prior_ties
        position = {m: n for n, m in enumerate(linked)}
        self.pairs = [
            (pair, position[pair[0]], position[pair[1]]) for pair in pairs if pair[0] in position
        ]
        self.anchor = position.get(ref_index)  # None: centre on the mean

    def solve(self, counts: Mapping[Pair, tuple[int, int]], start=None) -> list[float | None]:
        """Return each model's log-strength, None outside the linked group."""
        strengths: list[float | None] = [None] * self.model_count
        if len(self.linked) == 1:  # the reference alone
            strengths[self.linked[0]] = 0.0
        if len(self.linked) < 2:
            return strengths
        games = []
        for pair, a, b in self.pairs:
            doubled_a, comparisons = counts.get(pair, (0, 0))
            games.append((a, b, (doubled_a + self.prior) / 2, comparisons + self.prior))
        try:
            theta = fit_log_strengths(
                len(self.linked), games, [start[m] for m in self.linked] if start else None
            )
        except ValueError:
            raise ValueError(
                "with prior_ties=0 some strengths are infinite: a model won (or lost) every "
                "comparison against the rest; use prior_ties > 0"
            ) from None
        centre = theta[self.anchor] if self.anchor is not None else sum(theta) / len(theta)
        for m, value in zip(self.linked, theta, strict=True):
            strengths[m] = value - centre
        return strengths


# --- bootstrap ------------------------------------------------------------------------------


def _bootstrap(tables, pairs, fit, point, resamples, seed):
    """Return, per resample of the prompts, the pair counts and the strengths fitted to them.

    Each prompt's counts are packed into one big integer, a fixed-width field per count, so
    that summing a resample is one C-level sum() however many model pairs there are. Measured
    with bench/winrates_speed.py (10,000 rankings of K = 4 from 4 models, 1000 resamples, one
    busy core): 2.0 s with one ranking per prompt, 0.5 s with 3 labelers on 3,333 prompts,
    0.2 s of it counting.
    """
    largest = max((sum(counts) for t in tables for counts in t.values()), default=0)
    width = (len(tables) * 2 * largest).bit_length() or 1
    mask = (1 << width) - 1
    packed = [
        sum(
            (2 * t[pair][0] + t[pair][2]) << (2 * k * width) | sum(t[pair]) << ((2 * k + 1) * width)
            for k, pair in enumerate(pairs)
            if pair in t
        )
        for t in tables
    ]
    rng, prompt_count = random.Random(seed), len(tables)
    draws = []
    for _ in range(resamples):
        # n prompt indices, each a 64-bit random number mod n (a bias below n / 2**64): all
        # C-level, 3x faster than rng.choices
        randoms = memoryview(rng.randbytes(8 * prompt_count)).cast("Q")
        picks = map(mod, randoms, repeat(prompt_count))
        total = sum(map(packed.__getitem__, picks))
        counts = {
            pair: ((total >> (2 * k * width)) & mask, (total >> ((2 * k + 1) * width)) & mask)
            for k, pair in enumerate(pairs)
        }
        draws.append((counts, fit.solve(counts, start=point)))
    return draws


def _interval(values: list[float], confidence: float) -> tuple[float | None, float | None]:
    """Return the percentile interval (linear interpolation, as numpy's default)."""
    if not values:
        return None, None
    values = sorted(values)
    tail = (1 - confidence) / 2
    return _quantile(values, tail), _quantile(values, 1 - tail)


def _quantile(ordered: list[float], q: float) -> float:
    position = q * (len(ordered) - 1)
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


# --- results --------------------------------------------------------------------------------


def _assemble(models, reference, totals, point, draws, confidence, prompts, rankings, resamples):
    records = {}
    for (a, b), (wins_a, wins_b, ties) in totals.items():
        for me, other, wins, flip in ((a, b, wins_a, False), (b, a, wins_b, True)):
            records[me, other] = _head_to_head(
                models, me, other, wins, ties, wins_a + wins_b + ties, draws, flip, confidence
            )
    standings = [
        _standing(models, m, reference, totals, point, records, draws, confidence)
        for m in range(len(models))
    ]
    standings.sort(
        key=lambda s: (
            s.strength is None,
            -(s.strength or 0.0),
            s.win_rate is None,
            -(s.win_rate or 0.0),
            s.model,
        )
    )
    order = {s.model: n for n, s in enumerate(standings)}
    head_to_head = sorted(records.values(), key=lambda r: (order[r.model], order[r.opponent]))
    return WinRates(
        reference, prompts, rankings, resamples, confidence, tuple(standings), tuple(head_to_head)
    )


def _head_to_head(models, me, other, wins, ties, comparisons, draws, flip, confidence):
    pair = (min(me, other), max(me, other))
    rates = []
    for counts, _ in draws:
        doubled_low, drawn = counts[pair]
        if drawn:
            rates.append(((2 * drawn - doubled_low) if flip else doubled_low) / (2 * drawn))
    low, high = _interval(rates, confidence)
    return HeadToHead(
        models[me],
        models[other],
        comparisons,
        wins,
        ties,
        (wins + ties / 2) / comparisons,
        low,
        high,
    )


def _standing(models, m, reference, totals, point, records, draws, confidence):
    mine = [(pair, pair[0] == m) for pair in totals if m in pair]
    wins = sum(totals[pair][0 if low else 1] for pair, low in mine)
    ties = sum(totals[pair][2] for pair, _ in mine)
    comparisons = sum(sum(totals[pair]) for pair, _ in mine)
    rates, strengths = [], []
    for counts, fitted in draws:
        doubled = sum(counts[p][0] if low else 2 * counts[p][1] - counts[p][0] for p, low in mine)
        drawn = sum(counts[pair][1] for pair, _ in mine)
        if drawn:
            rates.append(doubled / (2 * drawn))
        if fitted[m] is not None:
            strengths.append(fitted[m])
    strength = point[m]
    return ModelStanding(
        models[m],
        comparisons,
        wins,
        ties,
        (wins + ties / 2) / comparisons if comparisons else None,
        *_interval(rates, confidence),
        strength,
        *_interval(strengths, confidence),
        sigmoid(strength) if reference is not None and strength is not None else None,
        records.get((m, models.index(reference))) if reference is not None else None,
    )
