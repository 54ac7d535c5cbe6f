"""Training data: image files as CHW float32 tensors in [-1, 1].

An image becomes tensors by the host's rules (``napari_i2i.core``, described
in ``docs/usage.md``), the same as at inference: every 2-D plane of a stack is
one training image; channels, conversions gray ↔ RGB and intensity scaling
are those of translation. Each dataset yields ``channels`` channels, given or
taken from its first readable image. Modules: :mod:`.sources` (files),
:mod:`.domain` (checks, sizes, cache), :mod:`.augment` (crop, flip, seeded
randomness), :mod:`.folders`, :mod:`.pairs` and :mod:`.sampler`.
"""

from napari_i2i.core.layer_data import MAX_CHANNELS

from trainers.datasets.domain import CACHE_BYTES
from trainers.datasets.folders import ClassFolders, ImageFolder
from trainers.datasets.pairs import PairedFolders, UnpairedDomains
from trainers.datasets.problems import DatasetError
from trainers.datasets.sampler import InfiniteSampler

__all__ = [
    "CACHE_BYTES",
    "MAX_CHANNELS",
    "ClassFolders",
    "DatasetError",
    "ImageFolder",
    "InfiniteSampler",
    "PairedFolders",
    "UnpairedDomains",
]
