"""Scoring on request: a registered reward model scores a few (prompt, response) pairs.

A loaded scorer is kept for the next request (the last SCORERS_KEPT models per process);
one forward runs at a time per process, as torch's threads are shared.
"""

import threading
from collections import OrderedDict
from pathlib import Path

from config.errors import Conflict, Invalid

from ..kinds.base import var_absolute
from ..models import ModelArtifact

MAX_SCORE_ITEMS = 256  # per API request: scoring runs in the web process
SCORERS_KEPT = 2

_scorers: OrderedDict[str, object] = OrderedDict()
_scorers_lock = threading.Lock()


def _scorer_for(artifact: ModelArtifact):
    path = str(var_absolute(artifact.merged_path or artifact.path))
    if not Path(path).exists():  # deleted or moved: loading it would be a 500
        raise Conflict(f"Model {artifact.id}'s files are missing.")
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
        raise Invalid("Only reward models score.")
    if not 1 <= len(items) <= MAX_SCORE_ITEMS:
        raise Invalid(f"Send between 1 and {MAX_SCORE_ITEMS} items; for a whole project "
                      "start a scoring job.")
    scorer = _scorer_for(artifact)
    with _scorers_lock:
        return scorer.score(items, alpha=alpha)
