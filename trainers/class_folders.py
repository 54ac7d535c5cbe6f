"""Class-folder data for few-shot training (FUNIT): held-out classes and the training subset.

FUNIT is evaluated on classes it never saw in training. :func:`split_classes`
chooses them (a number, drawn with the run's seed, or names);
:class:`ClassSubset` serves the other classes of a
:class:`~trainers.datasets.ClassFolders` with labels renumbered ``0 … n−1``
(the discriminator has one output per training class); :class:`ClassPairs`
makes training items: a content image and an independent class image, and on
request a class mate of the content image (another image of its class).
"""

from __future__ import annotations

import operator
from collections.abc import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from trainers.datasets import ClassFolders, DatasetError

_HOLDOUT, _PAIRING, _CLASSMATE = 101, 102, 103  # random streams of their own, apart from trainers.datasets'


def split_classes(
    classes: Sequence[str], holdout: int | Sequence[str] | None, seed: int = 0
) -> tuple[list[str], list[str]]:
    """``(training, held_out)`` class names, each in the order of ``classes``.

    ``holdout``: ``None`` or 0 holds none out; a number ``N`` holds out ``N``
    classes drawn with ``seed`` (the same ones for the same seed and classes);
    names hold out exactly those. At least one class must stay for training.
    """
    classes = list(classes)
    if holdout is None or (isinstance(holdout, int) and not isinstance(holdout, bool) and holdout == 0):
        return classes, []
    if isinstance(holdout, int) and not isinstance(holdout, bool):
        if not 0 < holdout < len(classes):
            raise ValueError(
                f"cannot hold out {holdout} of {len(classes)} classes: at least one must stay for training"
            )
        drawn = np.random.default_rng([seed, _HOLDOUT]).choice(len(classes), holdout, replace=False)
        held = {classes[int(i)] for i in drawn}
    elif isinstance(holdout, str):
        raise TypeError("holdout takes a number of classes or a list of class names, not one string")
    else:
        held = set(holdout)
        unknown = sorted(held - set(classes))
        if unknown:
            raise ValueError(
                f"held-out classes not found: {', '.join(unknown)}; the classes are {', '.join(classes)}"
            )
        if len(held) == len(classes):
            raise ValueError("cannot hold out every class: at least one must stay for training")
    return [c for c in classes if c not in held], [c for c in classes if c in held]


class ClassSubset(Dataset):
    """The images of some classes of a :class:`ClassFolders`, labels ``0 … len(classes)−1``
    in the order of ``classes``. Items are ``(image, label)``; indices past ``len``
    wrap around with new crops, as the underlying dataset's do."""

    def __init__(self, dataset: ClassFolders, classes: Sequence[str]):
        unknown = sorted(set(classes) - set(dataset.classes))
        if unknown:
            raise ValueError(f"no such classes: {', '.join(unknown)}")
        if not classes:
            raise ValueError("a class subset needs at least one class")
        self.dataset = dataset
        self.classes = list(classes)
        label_of = {dataset.classes.index(name): label for label, name in enumerate(self.classes)}
        self.indices = [i for i, label in enumerate(dataset.labels) if label in label_of]
        self.labels = [label_of[dataset.labels[i]] for i in self.indices]
        if not self.indices:
            raise DatasetError(f"no images in the classes {', '.join(self.classes)}")
        self.members = [[p for p, label in enumerate(self.labels) if label == k] for k in range(len(self.classes))]

    @property
    def channels(self) -> int:
        return self.dataset.channels

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        index = operator.index(index)
        if index < 0:
            raise IndexError(f"index {index} is negative")
        rounds, position = divmod(index, len(self.indices))
        # an index of its own per (round, image): the underlying dataset draws a new crop for it
        image, _ = self.dataset[self.indices[position] + rounds * len(self.dataset)]
        return image, self.labels[position]


class ClassPairs(Dataset):
    """FUNIT training items ``((x, class of x), (y, class of y))``: item ``index`` takes
    ``classes[index]`` as the content image and an independent random image as the
    class example (of any class, its own included, as in the published training).

    ``classmates``: items get a third pair, ``(m, class of x)``, another image of x's class
    (x itself only in a class of one image), for an identity term through a class code
    that is not x's own."""

    def __init__(self, classes: ClassSubset, seed: int = 0, classmates: bool = False):
        self.classes, self.seed, self.classmates = classes, seed, classmates

    def __len__(self) -> int:
        return len(self.classes)

    def __getitem__(self, index: int) -> tuple[tuple[torch.Tensor, int], ...]:
        index = operator.index(index)
        if index < 0:
            raise IndexError(f"index {index} is negative")
        count = len(self.classes)
        rounds, position = divmod(index, count)
        draw = int(np.random.default_rng([self.seed, _PAIRING, index]).integers(count))
        # Subset indices of their own (content: even rounds, examples: odd), so every image
        # served is a crop of its own and item `index` depends on (seed, index) alone.
        content = self.classes[position + count * 2 * rounds]
        example = self.classes[draw + count * (2 * index + 1)]
        if not self.classmates:
            return content, example
        mates = [p for p in self.classes.members[self.classes.labels[position]] if p != position] or [position]
        mate = mates[int(np.random.default_rng([self.seed, _CLASSMATE, index]).integers(len(mates)))]
        # the examples' round: a crop of its own unless the example is this very mate
        return content, example, self.classes[mate + count * (2 * index + 1)]
