"""Bradley-Terry log-strengths from pairwise scores. Pure Python: no Django, no numpy.

A game is (a, b, a's score, comparisons) between players a and b, numbered 0..size-1: a's
score is its wins plus half its ties (plus any virtual ones a caller adds as a prior), so b's
score is comparisons - a's score. The model says a beats b with probability
1 / (1 + exp(theta[b] - theta[a])); the fit maximises the likelihood with theta[0] fixed at 0.
"""

import math
from collections.abc import Sequence

Game = tuple[int, int, float, float]


def sigmoid(x: float) -> float:
    """Return 1 / (1 + exp(-x)) without overflow for large |x|."""
    if x >= 0:
        return 1 / (1 + math.exp(-x))
    return math.exp(x) / (1 + math.exp(x))


def fit_log_strengths(
    size: int, games: Sequence[Game], start: Sequence[float] | None = None
) -> list[float]:
    """Return the maximum-likelihood log-strengths, theta[0] = 0.

    Newton's method, halving any step that would lower the (concave) log-likelihood. From a
    nearby `start` (a bootstrap resample starting at the full data's fit) it converges in 2 or
    3 steps, where Hunter's MM iteration took about 30 sweeps: its linear rate made the
    bootstrap 10x slower. Raises ValueError when the fit is infinite or undefined.

    >>> [round(t, 4) for t in fit_log_strengths(2, [(0, 1, 1.0, 4.0)])]  # 1 win in 4
    [0.0, 1.0986]
    """
    _require_finite(size, games)
    theta = [value - start[0] for value in start] if start else [0.0] * size
    for _ in range(200):
        step = _newton_step(size, games, theta)
        before, scale = _log_likelihood(theta, games), 1.0
        while True:
            trial = [t + scale * s for t, s in zip(theta, step, strict=True)]
            if _log_likelihood(trial, games) >= before - 1e-12 * (1 + abs(before)):
                break
            if scale < 1e-9:
                break
            scale /= 2
        theta = trial
        if max(abs(scale * s) for s in step) < 1e-10:
            break
    return theta


def _newton_step(size: int, games: Sequence[Game], theta: list[float]) -> list[float]:
    gradient = [0.0] * size
    information = [[0.0] * size for _ in range(size)]  # minus the Hessian
    for a, b, score_a, comparisons in games:
        p = sigmoid(theta[a] - theta[b])
        gradient[a] += score_a - comparisons * p
        gradient[b] -= score_a - comparisons * p
        weight = comparisons * p * (1 - p)
        information[a][a] += weight
        information[b][b] += weight
        information[a][b] -= weight
        information[b][a] -= weight
    return [0.0, *_solve_symmetric([row[1:] for row in information[1:]], gradient[1:])]


def _log_likelihood(theta: list[float], games: Sequence[Game]) -> float:
    total = 0.0
    for a, b, score_a, comparisons in games:
        diff = theta[a] - theta[b]
        # score_a * diff - comparisons * log(1 + e^diff), written so e^diff cannot overflow
        softplus = max(diff, 0.0) + math.log1p(math.exp(-abs(diff)))
        total += score_a * diff - comparisons * softplus
    return total


def _solve_symmetric(matrix: list[list[float]], vector: list[float]) -> list[float]:
    """Solve matrix @ x = vector, matrix symmetric positive definite (Gauss, no pivoting)."""
    size = len(vector)
    rows = [[*row, value] for row, value in zip(matrix, vector, strict=True)]
    for k in range(size):
        for i in range(k + 1, size):
            factor = rows[i][k] / rows[k][k]
            for j in range(k, size + 1):
                rows[i][j] -= factor * rows[k][j]
    solution = [0.0] * size
    for k in reversed(range(size)):
        known = sum(rows[k][j] * solution[j] for j in range(k + 1, size))
        solution[k] = (rows[k][size] - known) / rows[k][k]
    return solution


def _require_finite(size: int, games: Sequence[Game]) -> None:
    """Refuse games where the fit runs off to infinity or is not pinned down.

    The maximum exists and is unique when every player reaches every other one through
    "scored against" links, and is reached back (Zermelo's condition).
    """
    scored_against: list[set[int]] = [set() for _ in range(size)]
    conceded_to: list[set[int]] = [set() for _ in range(size)]
    for a, b, score_a, comparisons in games:
        if score_a > 0:
            scored_against[a].add(b)
            conceded_to[b].add(a)
        if score_a < comparisons:
            scored_against[b].add(a)
            conceded_to[a].add(b)
    for links in (scored_against, conceded_to):
        reached, stack = {0}, [0]
        while stack:
            for nxt in links[stack.pop()] - reached:
                reached.add(nxt)
                stack.append(nxt)
        if len(reached) < size:
            raise ValueError(
                "the strengths are infinite or undefined: some players won (or lost) every "
                "comparison against the rest, or never met them"
            )
