"""Endless, reshuffled, exactly resumable indices for step-based training."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from torch.utils.data import Sampler

from trainers.datasets.augment import SHUFFLE


class InfiniteSampler(Sampler[int]):
    """Endless reshuffled indices for step-based training, exactly resumable.

    Pass ``p`` yields a fresh permutation of ``range(length)`` offset by
    ``p * length``, which this package's seeded datasets turn into image
    ``i % length`` with new crops. Position ``k`` of the stream depends only
    on ``(seed, k)``: resume after ``steps`` batches with
    ``start=steps * batch_size``.
    """

    def __init__(self, length: int, seed: int, start: int = 0):
        if length < 1:
            raise ValueError("an InfiniteSampler needs length >= 1")
        self.length, self.seed, self.start = length, seed, start

    def __iter__(self) -> Iterator[int]:
        position = self.start
        while True:
            rounds, offset = divmod(position, self.length)
            order = np.random.default_rng([self.seed, SHUFFLE, rounds]).permutation(self.length)
            for i in order[offset:]:
                yield rounds * self.length + int(i)
            position = (rounds + 1) * self.length
