"""The ``multidomain`` task: one tissue under three stain looks, exact ground truth for every pair.

Tiles of scikit-image's IHC image (``data.immunohistochemistry()``) in three domains, each a fixed
pixel-wise re-staining in HED space (:func:`napari_i2i.frontends.sample_data.he_like_restain`):
``ihc`` (the original), ``he`` (H&E-like: darker haematoxylin, DAB to eosin) and ``hema``
(haematoxylin only). Training cells are dealt out to the domains, each cell to one domain, so
training sees no pair; every test cell is given in all three domains, the ground truth of every
ordered pair of domains.

With ``look_spread`` s > 0 each domain holds a *range* of looks, as real labs' slides do: every
training tile gets its domain's re-staining with each stain amount that the look has (H, DAB
turned to eosin, DAB kept) times its own factor ``exp(u)``, ``u`` uniform in [−s, s]. The test
cells are in the domain's central look (their ground truth; for ``ihc`` the HED round trip of the
image, :func:`central_look`), and the reference each domain is translated with is its training
tile nearest that centre.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial

import numpy as np

from napari_i2i.frontends.sample_data import DAB_TO_EOSIN, H_SCALE, he_like_restain

from .task import cells_of, pixel_sha256

#: The stain amounts of each domain's central look (``he_like_restain``'s arguments).
LOOKS: dict[str, dict[str, float]] = {
    "ihc": {"h_scale": 1.0, "dab_to_eosin": 0.0, "dab_kept": 1.0},
    "he": {"h_scale": H_SCALE, "dab_to_eosin": DAB_TO_EOSIN, "dab_kept": 0.0},
    "hema": {"h_scale": 1.0, "dab_to_eosin": 0.0, "dab_kept": 0.0},
}
#: The central looks as functions; ``ihc``'s is the image itself (no round trip through HED).
DOMAINS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    name: (lambda rgb: rgb) if name == "ihc" else partial(he_like_restain, **look) for name, look in LOOKS.items()}
TEST_FRACTION = 0.25


@dataclass
class MultiDomainTask:
    """``train[domain][file]`` (disjoint cells per domain) and ``test[domain][file]`` (the same cells
    in every domain), uint8 RGB tiles; ``references[domain]``: the training file whose style the
    benchmark translates into that domain."""

    train: dict[str, dict[str, np.ndarray]]
    test: dict[str, dict[str, np.ndarray]]
    references: dict[str, str] = field(default_factory=dict)
    manifest: dict = field(default_factory=dict)

    def reference(self, domain: str) -> np.ndarray:
        """The tile whose style the benchmark translates into *domain*."""
        return self.train[domain][self.references[domain]]


def central_look(cell: np.ndarray, domain: str, spread: float) -> np.ndarray:
    """*cell* in *domain*'s central look. With a spread every look, the central ones too, goes
    through HED space, where even ``ihc``'s own amounts do not give the image back exactly
    (``rgb2hed`` clips negative concentrations: 7.5 grey levels on average on these tiles)."""
    return DOMAINS[domain](cell) if spread == 0 else he_like_restain(cell, **LOOKS[domain])


def spread_look(cell: np.ndarray, domain: str, spread: float, rng: np.random.Generator) -> tuple[np.ndarray, float]:
    """*cell* in a look of *domain* drawn around its central look; and how far from the centre
    (the largest ``|u|``)."""
    if spread == 0:
        return central_look(cell, domain, spread), 0.0
    amounts = {key: value * float(np.exp(rng.uniform(-spread, spread))) if value else 0.0
               for key, value in LOOKS[domain].items()}
    offset = max(abs(np.log(amounts[key] / value)) for key, value in LOOKS[domain].items() if value)
    return he_like_restain(cell, **amounts), float(offset)


def multidomain_task(tile: int = 64, seed: int = 0, look_spread: float = 0.0) -> MultiDomainTask:
    from skimage import data

    image = data.immunohistochemistry()
    cells = cells_of(image.shape, tile)
    order = np.random.default_rng(seed).permutation(len(cells))
    n_test = max(1, round(TEST_FRACTION * len(cells)))
    test_cells, train_cells = order[:n_test], order[n_test:]
    if len(train_cells) < len(DOMAINS):
        raise ValueError(f"{len(cells)} cells of {tile}² are too few for {len(DOMAINS)} domains; use a smaller tile")
    if look_spread < 0:
        raise ValueError(f"look_spread must be >= 0, got {look_spread}")
    names = list(DOMAINS)
    looks = np.random.default_rng([seed, 1])
    train = {name: {} for name in names}
    offsets = {name: {} for name in names}
    test = {name: {} for name in names}

    def crop(index: int) -> tuple[str, np.ndarray]:
        r, c = cells[index]
        return f"r{r:02d}c{c:02d}.png", np.ascontiguousarray(image[r * tile:(r + 1) * tile, c * tile:(c + 1) * tile])

    for position, index in enumerate(train_cells):  # dealt out: each training cell in one domain
        name = names[position % len(names)]
        file, cell = crop(int(index))
        train[name][file], offsets[name][file] = spread_look(cell, name, look_spread, looks)
    for index in test_cells:
        file, cell = crop(int(index))
        for name in names:
            test[name][file] = central_look(cell, name, look_spread)
    manifest = {"source": "skimage.data.immunohistochemistry()", "pixel_sha256": pixel_sha256(image),
                "tile": tile, "seed": seed, "look_spread": look_spread, "domains": {
                    "ihc": "original", "he": "he_like_restain defaults (H×1.5, DAB×0.5 → eosin)",
                    "hema": "he_like_restain(h_scale=1, dab_to_eosin=0): haematoxylin only"},
                "train": {name: len(tiles) for name, tiles in train.items()}, "test_cells": len(test_cells)}
    references = {name: min(offsets[name], key=offsets[name].get) for name in names}  # ties: the first
    return MultiDomainTask(train, test, references, manifest)
