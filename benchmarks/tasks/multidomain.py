"""The ``multidomain`` task: one tissue under three stain looks, exact ground truth for every pair.

Tiles of scikit-image's IHC image (``data.immunohistochemistry()``) in three domains, each a fixed
pixel-wise re-staining in HED space (:func:`napari_i2i.frontends.sample_data.he_like_restain`):
``ihc`` (the original), ``he`` (H&E-like: darker haematoxylin, DAB to eosin) and ``hema``
(haematoxylin only). Training cells are dealt out to the domains, each cell to one domain, so
training sees no pair; every test cell is given in all three domains, the ground truth of every
ordered pair of domains.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from napari_i2i.frontends.sample_data import he_like_restain

from .task import cells_of, pixel_sha256

DOMAINS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "ihc": lambda rgb: rgb,
    "he": he_like_restain,
    "hema": lambda rgb: he_like_restain(rgb, h_scale=1.0, dab_to_eosin=0.0),
}
TEST_FRACTION = 0.25


@dataclass
class MultiDomainTask:
    """``train[domain][file]`` (disjoint cells per domain) and ``test[domain][file]`` (the same cells
    in every domain), uint8 RGB tiles."""

    train: dict[str, dict[str, np.ndarray]]
    test: dict[str, dict[str, np.ndarray]]
    manifest: dict = field(default_factory=dict)


def multidomain_task(tile: int = 64, seed: int = 0) -> MultiDomainTask:
    from skimage import data

    image = data.immunohistochemistry()
    cells = cells_of(image.shape, tile)
    order = np.random.default_rng(seed).permutation(len(cells))
    n_test = max(1, round(TEST_FRACTION * len(cells)))
    test_cells, train_cells = order[:n_test], order[n_test:]
    if len(train_cells) < len(DOMAINS):
        raise ValueError(f"{len(cells)} cells of {tile}² are too few for {len(DOMAINS)} domains; use a smaller tile")
    names = list(DOMAINS)
    train = {name: {} for name in names}
    test = {name: {} for name in names}

    def crop(index: int) -> tuple[str, np.ndarray]:
        r, c = cells[index]
        return f"r{r:02d}c{c:02d}.png", np.ascontiguousarray(image[r * tile:(r + 1) * tile, c * tile:(c + 1) * tile])

    for position, index in enumerate(train_cells):  # dealt out: each training cell in one domain
        name = names[position % len(names)]
        file, cell = crop(int(index))
        train[name][file] = DOMAINS[name](cell)
    for index in test_cells:
        file, cell = crop(int(index))
        for name in names:
            test[name][file] = DOMAINS[name](cell)
    manifest = {"source": "skimage.data.immunohistochemistry()", "pixel_sha256": pixel_sha256(image),
                "tile": tile, "seed": seed, "domains": {
                    "ihc": "original", "he": "he_like_restain defaults (H×1.5, DAB×0.5 → eosin)",
                    "hema": "he_like_restain(h_scale=1, dab_to_eosin=0): haematoxylin only"},
                "train": {name: len(tiles) for name, tiles in train.items()}, "test_cells": len(test_cells)}
    return MultiDomainTask(train, test, manifest)
