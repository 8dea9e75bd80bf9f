"""Scoring on request: a registered reward model scores a few (prompt, response) pairs.

Bounded, so a request cannot hold a web worker: at most MAX_SCORE_ITEMS items and
SCORE_MAX_CHARS characters, each input cut to the model's max length (the response kept,
the prompt cut from the left; the answer says which were cut). A model is loaded by a
background thread, never in the request: a request waits SCORER_LOAD_WAIT_SECONDS at most,
then answers Unavailable (503, Retry-After) while it loads. Each process keeps the last
SCORERS_KEPT models warm; one forward runs at a time per process (torch's threads are shared).
"""

import logging
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings

from config.errors import Conflict, Invalid, Unavailable, reason_line

from ..kinds.base import var_absolute
from ..models import ModelArtifact

logger = logging.getLogger(__name__)

MAX_SCORE_ITEMS = 256
SCORE_MAX_CHARS = 400_000  # prompts and responses of one request together
SCORERS_KEPT = 2
RETRY_AFTER_S = 5

_scorers: OrderedDict[str, object] = OrderedDict()
_loading: dict[str, threading.Event] = {}
_failed: dict[str, str] = {}
_lock = threading.Lock()  # guards the three above
_forward = threading.Lock()  # one forward at a time per process


@dataclass(frozen=True)
class Scores:
    rewards: list[float]
    truncated: list[int]  # indexes of the items cut to the model's max length


def model_score(artifact: ModelArtifact, items: list[tuple], alpha: float = 1.0) -> Scores:
    """Score (prompt, response) pairs with a registered reward model, alpha times the reward."""
    if artifact.kind != ModelArtifact.Kind.REWARD:
        raise Invalid("Only reward models score.")
    if not 1 <= len(items) <= MAX_SCORE_ITEMS:
        raise Invalid(f"Send between 1 and {MAX_SCORE_ITEMS} items; for a whole project "
                      "start a scoring job.")
    chars = sum(_chars(prompt) + _chars(response) for prompt, response in items)
    if chars > SCORE_MAX_CHARS:
        raise Invalid(f"items: {chars:,} characters; a request takes at most "
                      f"{SCORE_MAX_CHARS:,} (for more, start a scoring job)")
    scorer = _warm_scorer(artifact)
    with _forward:
        rewards, cut = scorer.score_and_cut(items, alpha=alpha)
    return Scores(rewards, [index for index, was_cut in enumerate(cut) if was_cut])


def _chars(text) -> int:
    return len(text) if isinstance(text, str) else sum(len(m.get("content", "")) for m in text)


def _warm_scorer(artifact: ModelArtifact):
    """The loaded scorer of the model; start loading it in the background if it is not."""
    path = str(var_absolute(artifact.merged_path or artifact.path))
    if not Path(path).exists():  # deleted or moved: loading it would fail
        raise Conflict(f"Model {artifact.id}'s files are missing.")
    with _lock:
        if path in _scorers:
            _scorers.move_to_end(path)
            return _scorers[path]
        loaded = _loading.get(path)
        if loaded is None:
            loaded = _loading[path] = threading.Event()
            _failed.pop(path, None)
            threading.Thread(target=_load, args=(path, loaded), daemon=True,
                             name=f"scorer-load-{artifact.id}").start()
    loaded.wait(settings.SCORER_LOAD_WAIT_SECONDS)
    with _lock:
        if path in _scorers:
            return _scorers[path]
        if path in _failed:
            raise Conflict(f"Model {artifact.id} could not be loaded: {_failed[path]}")
    raise Unavailable(f"Model {artifact.id} is loading; try again in a few seconds.",
                      extra={"retry_after": RETRY_AFTER_S})


def _load(path: str, loaded: threading.Event) -> None:
    from ..ml.scoring import RewardScorer

    try:
        scorer = RewardScorer.load(path)
    except Exception as exc:
        logger.exception("loading the reward model in %s failed", path)
        with _lock:
            _failed[path] = reason_line(exc)
    else:
        with _lock:
            _scorers[path] = scorer
            while len(_scorers) > SCORERS_KEPT:
                _scorers.popitem(last=False)
    finally:
        with _lock:
            _loading.pop(path, None)
        loaded.set()
