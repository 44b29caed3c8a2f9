"""Training progress on stderr: a rich bar with step, loss, tokens/s and ETA on a terminal; plain lines otherwise.

Plain lines (a log file, a pipe, CI) come every `every` steps and at each validation and checkpoint, e.g.
`step 40/200  loss 1.8342  lr 1.00e-04  612 tok/s  eta 0:01:53`. tokens/s counts trained target tokens over
the recent steps' compute time (as mlx-lm reports it); the ETA is the remaining steps at the recent step time.
"""
from __future__ import annotations

import sys
from collections import deque
from datetime import timedelta

from tinygpt.trainer.loop import StepMetrics


def _eta(seconds: float) -> str:
    return str(timedelta(seconds=int(seconds)))


class TrainProgress:
    """A context manager; `step`, `validation` and `note` report to it."""

    def __init__(self, total: int, start: int = 0, *, every: int = 0, tty: bool | None = None):
        self.total, self.done = total, start
        self.every = every or max(1, total // 20)
        self.tty = sys.stderr.isatty() if tty is None else tty
        self.recent: deque[StepMetrics] = deque(maxlen=20)
        self._bar = self._task = None

    def __enter__(self):
        if self.tty:
            from rich.console import Console
            from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                                       TimeRemainingColumn)

            self._bar = Progress(TextColumn("train"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("loss {task.fields[loss]}  {task.fields[speed]} tok/s"),
                                 TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(),
                                 console=Console(stderr=True, highlight=False), transient=False)
            self._bar.__enter__()
            self._task = self._bar.add_task("train", total=self.total, completed=self.done, loss="-", speed="-")
        return self

    def __exit__(self, *exc):
        if self._bar is not None:
            self._bar.__exit__(*exc)
        return False

    @property
    def tokens_per_s(self) -> float:
        seconds = sum(m.seconds for m in self.recent)
        return sum(m.tokens for m in self.recent) / seconds if seconds > 0 else 0.0

    def _line(self, text: str) -> None:
        if self._bar is not None:
            self._bar.console.print(text, markup=False)
        else:
            sys.stderr.write(text + "\n")
            sys.stderr.flush()

    def step(self, m: StepMetrics) -> None:
        self.done = m.step
        self.recent.append(m)
        speed = self.tokens_per_s
        if self._bar is not None:
            self._bar.update(self._task, completed=m.step, loss=f"{m.loss:.4f}", speed=f"{speed:,.0f}")
            return
        if m.step % self.every == 0 or m.step == self.total:
            per_step = sum(x.seconds for x in self.recent) / len(self.recent)
            self._line(f"step {m.step}/{self.total}  loss {m.loss:.4f}  lr {m.learning_rate:.2e}  "
                       f"{speed:,.0f} tok/s  eta {_eta(per_step * (self.total - m.step))}")

    def validation(self, step: int, loss: float) -> None:
        self._line(f"step {step}/{self.total}  val_loss {loss:.4f}")

    def note(self, text: str) -> None:
        self._line(text)


class WorkProgress:
    """Progress of a long preparation (reading and tokenizing a corpus), counted in `unit`s (bytes): a rich bar
    with speed and ETA on a terminal; otherwise a line at every ~10% and at the end. A context manager."""

    def __init__(self, label: str, total: int, *, unit: str = "bytes", tty: bool | None = None):
        self.label, self.total, self.unit, self.done = label, max(total, 1), unit, 0
        self.tty = sys.stderr.isatty() if tty is None else tty
        self._bar = self._task = None
        self._next = self.total / 10

    def __enter__(self):
        if self.tty:
            from rich.console import Console
            from rich.progress import (BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn,
                                       TransferSpeedColumn)

            self._bar = Progress(TextColumn(self.label, markup=False), BarColumn(), DownloadColumn(),
                                 TransferSpeedColumn(), TextColumn("eta"), TimeRemainingColumn(),
                                 console=Console(stderr=True, highlight=False))
            self._bar.__enter__()
            self._task = self._bar.add_task(self.label, total=self.total)
        return self

    def __exit__(self, *exc):
        if self._bar is not None:
            self._bar.__exit__(*exc)
        elif exc[0] is None:
            self._line()
        return False

    def _line(self) -> None:
        sys.stderr.write(f"{self.label}: {self.done:,}/{self.total:,} {self.unit} ({100 * self.done // self.total}%)\n")
        sys.stderr.flush()

    def advance(self, n: int) -> None:
        self.done = min(self.done + n, self.total)
        if self._bar is not None:
            self._bar.update(self._task, completed=self.done)
        elif self.done >= self._next and self.done < self.total:
            self._line()
            while self._next <= self.done:
                self._next += self.total / 10
