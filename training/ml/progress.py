"""How training code reports progress and learns that it must stop, without knowing who listens.

The trainers call `reporter.step(...)` after every optimiser step and stop when it returns
False. The Celery side reads these reports from the training process's stdout (JsonLinesReporter);
`--inline` prints them (ConsoleReporter); tests collect them (RecordingReporter).
eta_seconds() turns the finish times of the steps into the time left, for the job's page.
"""

import json
import os
import signal
import sys
import time
from typing import Any, Protocol, TextIO


class Cancelled(Exception):
    """The run was asked to stop; nothing after the last checkpoint is kept."""


class Reporter(Protocol):
    def step(self, step: int, total: int, metrics: dict[str, float]) -> bool:
        """Record a finished step; return False to stop the run."""

    def log(self, message: str) -> None: ...

    def checkpoint(self, step: int, path: str) -> None: ...


class RecordingReporter:
    """Keep every report in memory; stop after `stop_after` steps if given (for tests)."""

    def __init__(self, stop_after: int | None = None):
        self.steps: list[tuple[int, int, dict[str, float]]] = []
        self.messages: list[str] = []
        self.checkpoints: list[tuple[int, str]] = []
        self.stop_after = stop_after

    def step(self, step: int, total: int, metrics: dict[str, float]) -> bool:
        self.steps.append((step, total, dict(metrics)))
        return self.stop_after is None or len(self.steps) < self.stop_after

    def log(self, message: str) -> None:
        self.messages.append(message)

    def checkpoint(self, step: int, path: str) -> None:
        self.checkpoints.append((step, path))


class ConsoleReporter:
    """Print a line every `every` steps, for runs in the foreground."""

    def __init__(self, out: TextIO = sys.stdout, every: int = 10):
        self.out, self.every = out, every

    def step(self, step: int, total: int, metrics: dict[str, float]) -> bool:
        if step == 1 or step % self.every == 0 or step == total:
            shown = "  ".join(f"{k} {v:.4g}" for k, v in sorted(metrics.items()))
            print(f"step {step}/{total}  {shown}", file=self.out, flush=True)
        return True

    def log(self, message: str) -> None:
        print(message, file=self.out, flush=True)

    def checkpoint(self, step: int, path: str) -> None:
        print(f"checkpoint at step {step}: {path}", file=self.out, flush=True)


class JsonLinesReporter:
    """Write reports as JSON lines for the worker that started this process.

    The worker stops a run with SIGTERM: the handler only sets a flag, so the step that is
    running finishes and the trainer stops at its end. A run whose parent died stops too.
    """

    def __init__(self, out: TextIO = sys.stdout):
        self.out = out
        self.stop_requested = False
        self.parent = os.getppid()
        signal.signal(signal.SIGTERM, self._on_term)

    def _on_term(self, signum, frame) -> None:
        self.stop_requested = True

    def _emit(self, event: str, **fields: Any) -> None:
        self.out.write(json.dumps({"event": event, "time": time.time(), **fields}) + "\n")
        self.out.flush()

    def step(self, step: int, total: int, metrics: dict[str, float]) -> bool:
        self._emit("step", step=step, total=total, metrics=metrics)
        return not self.stop_requested and os.getppid() == self.parent

    def log(self, message: str) -> None:
        self._emit("log", message=message)

    def checkpoint(self, step: int, path: str) -> None:
        self._emit("checkpoint", step=step, path=path)

    def result(self, result: dict[str, Any]) -> None:
        self._emit("result", result=result)

    def error(self, message: str) -> None:
        """The run failed: one line for the job's reason (the traceback goes to stderr)."""
        self._emit("error", message=message)


def seconds_per_step(finished: list[tuple[int, float]],
                     first_step_seconds: float | None = None) -> float | None:
    """The measured time of one step, from the finish times of the completed steps.

    `finished` holds (step, unix time it finished) of the steps this run has completed, in
    order. Two or more: the time between the first and the last over the steps between them
    (so loading the models is not counted as a step). One: the step's own duration if the
    trainer reported it, else None: nothing is measured yet.

    >>> seconds_per_step([(1, 100.0), (2, 110.0), (3, 130.0)])
    15.0
    >>> seconds_per_step([(1, 100.0)]), seconds_per_step([(1, 100.0)], 12.5)
    (None, 12.5)
    """
    if len(finished) >= 2:
        (first, started), (last, ended) = finished[0], finished[-1]
        if last > first and ended >= started:
            return (ended - started) / (last - first)
        return None
    if finished and first_step_seconds and first_step_seconds > 0:
        return first_step_seconds
    return None


def eta_seconds(finished: list[tuple[int, float]], total: int, now: float,
                first_step_seconds: float | None = None) -> float | None:
    """Seconds left: the measured time per step times the steps left, counted down while
    the next step runs, never below the whole steps after it. None until a step's time is
    measured (show "estimating", not a number).

    Only completed steps move the estimate, so it never climbs while a step runs: it falls
    with `now` and stops at the floor if the step is slower than the ones before.

    >>> eta_seconds([(1, 100.0), (2, 110.0)], total=5, now=110.0)  # 3 steps of 10 s
    30.0
    >>> eta_seconds([(1, 100.0), (2, 110.0)], total=5, now=114.0)
    26.0
    >>> eta_seconds([(1, 100.0), (2, 110.0)], total=5, now=200.0)  # a slow step: the floor
    20.0
    >>> eta_seconds([], total=5, now=0.0) is None
    True
    """
    per_step = seconds_per_step(finished, first_step_seconds)
    if per_step is None or not total:
        return None
    left = max(total - finished[-1][0], 0)
    if not left:
        return 0.0
    running_for = max(now - finished[-1][1], 0.0)
    return max(per_step * left - running_for, per_step * (left - 1))


def trainer_callback(reporter: Reporter, metrics_of, checkpoint_path: str):
    """The one bridge from a transformers Trainer (TRL's included) to a Reporter.

    `metrics_of(logs)` turns a Trainer log into step metrics, or None for a log that is not
    a training step's. A Reporter that asks to stop sets `stopped` and ends training at the
    end of the step; each save is reported as a checkpoint at `checkpoint_path`.
    """
    from transformers import TrainerCallback

    class Bridge(TrainerCallback):
        stopped = False

        def on_log(self, args, state, control, logs=None, **kwargs):
            metrics = metrics_of(logs or {})
            if metrics is not None and not reporter.step(state.global_step, state.max_steps,
                                                         metrics):
                self.stopped = control.should_training_stop = True

        def on_save(self, args, state, control, **kwargs):
            reporter.checkpoint(state.global_step, checkpoint_path)

    return Bridge()


def quiet(trainer) -> None:
    """Our reporter logs each step: drop Trainer's own printing to stdout."""
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    for callback in (PrinterCallback, ProgressCallback):
        trainer.remove_callback(callback)
