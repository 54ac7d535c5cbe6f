"""Progress of ``napari-i2i train`` and ``translate`` on standard error: a bar on a terminal, plain
lines elsewhere (logs, CI, a front end's child process)."""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from napari_i2i.core.translate import Progress

PROGRESS_LINE_SECONDS = 10.0  # when standard error is no terminal: one progress line this often


class TrainingProgress:
    """Progress on standard error, from the first iteration on (a data error comes before any):
    a redrawn bar on a terminal, else (a log, CI, a front end's child process) one line every
    :data:`PROGRESS_LINE_SECONDS` and at the last iteration."""

    def __init__(self, description: str, total: int | None, off: bool) -> None:
        self.description, self.total, self.off = description, total, off
        self.stream = sys.stderr
        self.bar = None  # tqdm, on a terminal once training runs
        self.first: tuple[int, float] | None = None  # (iteration, time) of the first report
        self.last_line = 0.0

    def __enter__(self) -> TrainingProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.close()

    def __call__(self, iteration: int, losses: dict[str, float]) -> None:
        if self.off:
            return
        terms = {name: f"{value:.3g}" for name, value in losses.items()}
        if self.stream.isatty():
            self._redraw(iteration, terms)
        else:
            self._line(iteration, terms)

    def score(self, iteration: int, record: dict, warning: str | None) -> None:
        """The run score of a validation (``trainers.run_score``) on a line of its own, and the
        content check's warning when it failed; shown even without a progress display."""
        terms = ", ".join(f"{name.replace('_', ' ')} {value:.3f}" for name, value in record.items()
                          if name != "run_score" and isinstance(value, float))
        self._write(f"run score at iteration {iteration}: {record['run_score']:.3f} (higher is better; {terms})")
        if warning is not None:
            self._write(f"warning: {warning}")

    def _write(self, line: str) -> None:
        if self.bar is not None:  # above the bar, which is redrawn below
            self.bar.write(line, file=self.stream)
        else:
            print(line, file=self.stream, flush=True)

    def _redraw(self, iteration: int, terms: dict[str, str]) -> None:
        if self.bar is None:
            from tqdm import tqdm

            self.bar = tqdm(total=self.total, initial=iteration - 1, desc=self.description, unit="it",
                            file=self.stream)
        self.bar.n = iteration
        self.bar.set_postfix(terms, refresh=False)
        self.bar.refresh()

    def _line(self, iteration: int, terms: dict[str, str]) -> None:
        now = time.monotonic()
        if self.first is None:
            self.first = (iteration, now)
        elif now - self.last_line < PROGRESS_LINE_SECONDS and iteration != self.total:
            return
        self.last_line = now
        done, since = iteration - self.first[0], now - self.first[1]
        rate = f", {done / since:.3g} it/s" if done and since > 0 else ""
        losses = "".join(f", {name} {value}" for name, value in terms.items())
        print(f"{self.description}: iteration {iteration}/{self.total or '?'}{rate}{losses}", file=self.stream,
              flush=True)


class TranslationProgressLines:
    """Progress without a terminal: a line every :data:`PROGRESS_LINE_SECONDS`, one at the end."""

    def __init__(self) -> None:
        self._started = self._last = time.monotonic()

    def update(self, progress: Progress) -> None:
        if time.monotonic() - self._last >= PROGRESS_LINE_SECONDS:
            self._last = time.monotonic()
            print(f"translating: {progress.fraction:.0%} ({progress.message})", file=sys.stderr, flush=True)

    def close(self) -> None:
        print(f"translating: done in {time.monotonic() - self._started:.0f} s", file=sys.stderr, flush=True)
