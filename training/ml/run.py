"""The training process: `python -m training.ml.run SPEC.json` (or under `accelerate launch`).

A worker starts one of these per job, so CUDA never lives in the worker itself and a
finished job gives all its memory back. SPEC.json says what to run, as the job kind's
declaration (training.kinds) wrote it:

    {"kind": "reward", "entry": "training.ml.reward:train_reward_model",
     "config_class": "training.ml.config:RewardTrainingConfig", "config": {...}}

`entry(config_class.from_dict(config), reporter)` runs; reports go to stdout as JSON lines
(progress.JsonLinesReporter), the last one {"event": "result"}. Exit codes: 0 done,
3 cancelled (SIGTERM), anything else failed (traceback on stderr, and one line
{"event": "error", "message": ...} that the job shows).
"""

import importlib
import json
import sys
from pathlib import Path

from .progress import Cancelled, JsonLinesReporter

EXIT_CANCELLED = 3
EXIT_FAILED = 1
ENTRY_PACKAGE = "training.ml."  # a spec may only name code of the training package


def load(reference: str):
    """The object a "module:name" reference names, inside training.ml only."""
    module, _, name = reference.partition(":")
    if not module.startswith(ENTRY_PACKAGE) or not name:
        raise ValueError(f"{reference!r} is not a training.ml reference")
    return getattr(importlib.import_module(module), name)


def run_spec(spec: dict, reporter) -> dict:
    config = load(spec["config_class"]).from_dict(spec["config"])
    return load(spec["entry"])(config, reporter)


def main(argv: list[str]) -> int:
    spec = json.loads(Path(argv[0]).read_text())
    reporter = _reporter()
    try:
        result = run_spec(spec, reporter)
    except Cancelled as stop:
        reporter.log(f"cancelled: {stop}")
        return EXIT_CANCELLED
    except Exception as exc:
        if hasattr(reporter, "error"):
            reporter.error(f"{type(exc).__name__}: {exc}")
        raise  # the traceback goes to stderr: the worker's log, for operators
    if hasattr(reporter, "result"):
        reporter.result(result)
    return 0


def _reporter():
    """Rank 0 reports; the other ranks of a multi-GPU run stay silent."""
    import os

    if int(os.environ.get("RANK", "0")) != 0:
        from .progress import RecordingReporter

        return RecordingReporter()
    return JsonLinesReporter()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
