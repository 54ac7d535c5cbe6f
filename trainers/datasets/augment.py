"""Random crop and flip, and the seeded random streams that make every item repeatable.

With ``seed`` set, everything random about item ``index`` comes from
``(seed, index)`` alone, so any item can be remade exactly (resume) whatever
the DataLoader workers. Indices past ``len`` wrap around and draw new crops:
:class:`~trainers.datasets.InfiniteSampler` uses this to reshuffle each pass.
Without ``seed``, draws come from torch's global RNG, which DataLoader seeds
per worker.
"""

from __future__ import annotations

import operator
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

# One random stream per purpose, so a single seed can serve a whole run.
AUGMENT, PAIRING, SAMPLING, SHUFFLE = range(4)


@dataclass(frozen=True)
class Augment:
    """Random crop and horizontal flip, the same for all images passed together (pairs stay aligned)."""

    size: tuple[int, int] | None
    flip: bool

    def __call__(self, images: Sequence[torch.Tensor], rng: np.random.Generator) -> list[torch.Tensor]:
        height, width = images[0].shape[-2:]
        crop_height, crop_width = self.size or (height, width)
        top = int(rng.integers(height - crop_height + 1))
        left = int(rng.integers(width - crop_width + 1))
        flipped = rng.random() < 0.5 and self.flip  # always drawn: flip on/off keeps the same crops
        pieces = [image[:, top : top + crop_height, left : left + crop_width] for image in images]
        return [piece.flip(-1) if flipped else piece.clone() for piece in pieces]  # never the cache itself


def crop_size(size: int | tuple[int, int] | None) -> tuple[int, int] | None:
    if size is None:
        return None
    crop = (size, size) if isinstance(size, int) else tuple(size)
    if len(crop) != 2 or min(crop) < 1:
        raise ValueError(f"size must be a positive int or (height, width), not {size!r}")
    return crop


def check_resize(resize: int | None, crop: tuple[int, int] | None) -> None:
    if resize is not None and (resize < 1 or (crop is not None and resize < max(crop))):
        raise ValueError(f"the resize to {resize} pixels (--resize, or `resize` in a config file) must be at "
                         f"least the crop size {crop} (--size)")


def rng(seed: int | None, *key: int) -> np.random.Generator:
    """From ``(seed, key)`` alone when seeded, so an item can be remade exactly; else from torch's RNG."""
    if seed is None:
        return np.random.default_rng(int(torch.randint(2**62, ())))
    return np.random.default_rng([seed, *key])


def checked_index(index: int) -> int:
    index = operator.index(index)
    if index < 0:
        raise IndexError(f"index {index} is negative")
    return index
