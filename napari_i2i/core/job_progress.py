"""Driving a translation job's generator: to the end without progress, or with its progress
thinned out for a front end's main thread."""

from __future__ import annotations

import time
from collections.abc import Callable, Generator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from napari_i2i.core.translate import Progress, TranslationResult


def run_to_completion(steps: Generator[Progress, None, list[TranslationResult]]) -> list[TranslationResult]:
    """Drive :func:`run_translation` without reporting progress."""
    while True:
        try:
            next(steps)
        except StopIteration as finished:
            return finished.value


# Progress reports a front end's main thread gets at most this often (seconds): each one is a
# queued Qt signal and a redraw, and tiny tiles would otherwise send hundreds per second.
PROGRESS_INTERVAL = 0.1


def throttled(steps: Generator[Progress, None, list[TranslationResult]], interval: float = PROGRESS_INTERVAL,
              clock: Callable[[], float] = time.monotonic) -> Generator[Progress, None, list[TranslationResult]]:
    """*steps* passing on notices and at most one other :class:`Progress` per *interval*.

    A thread worker checks for Cancel at each yield, so Cancel waits at most one
    *interval* longer (plus the tile under way).
    """
    last = -float("inf")
    while True:
        try:
            progress = next(steps)
        except StopIteration as finished:
            return finished.value
        if progress.notice:
            yield progress
        elif (now := clock()) - last >= interval:
            last = now
            yield progress
