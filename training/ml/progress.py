"""How training code reports progress and learns that it must stop, without knowing who listens.

The trainers call `reporter.step(...)` after every optimiser step and stop when it returns
False. The Celery side reads these reports from the training process's stdout (JsonLinesReporter);
`--inline` prints them (ConsoleReporter); tests collect them (RecordingReporter).
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
