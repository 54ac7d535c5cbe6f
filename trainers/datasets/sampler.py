"""Endless, reshuffled, exactly resumable indices for step-based training, whole or one rank's share."""

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

    With ``ranks`` > 1 (training in several processes) the stream is the same and each
    global batch of ``batch`` positions is cut into ``ranks`` consecutive shares of
    ``batch / ranks``: this sampler yields share ``rank`` of each. So the ranks' batches of
    iteration ``t`` together are the global batch a single process draws at ``t``, for any
    number of ranks; ``start`` is then a multiple of ``batch``.
    """

    def __init__(self, length: int, seed: int, start: int = 0, rank: int = 0, ranks: int = 1, batch: int = 1):
        if length < 1:
            raise ValueError("an InfiniteSampler needs length >= 1")
        if ranks > 1 and (batch % ranks or start % batch or not 0 <= rank < ranks):
            raise ValueError(f"rank {rank} of {ranks} cannot take an equal share of batches of {batch} from {start}")
        self.length, self.seed, self.start = length, seed, start
        self.rank, self.ranks, self.share = rank, ranks, batch // ranks if ranks > 1 else 1

    def __iter__(self) -> Iterator[int]:
        if self.ranks == 1:
            yield from self._stream()
            return
        share, ranks, rank = self.share, self.ranks, self.rank
        for position, index in enumerate(self._stream(), start=self.start):
            if (position // share) % ranks == rank:
                yield index

    def _stream(self) -> Iterator[int]:
        position = self.start
        while True:
            rounds, offset = divmod(position, self.length)
            order = np.random.default_rng([self.seed, SHUFFLE, rounds]).permutation(self.length)
            for i in order[offset:]:
                yield rounds * self.length + int(i)
            position = (rounds + 1) * self.length
