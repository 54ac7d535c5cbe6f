"""Few-shot stain task (FUNIT): stain *looks* as classes, unseen looks at test time, exact truth.

A look is a re-staining of a tile in HED space: ``rgb2hed`` (the stain task's
colour deconvolution), then per-stain concentration scales, a fraction of DAB moved
into eosin, and back through a stain matrix whose three optical-density vectors are
skimage's ``rgb_from_hed`` rows, each perturbed and renormalised (:func:`apply_look`).
Look 0 is the unchanged tile (the source class); the others are drawn from the seed,
and :data:`N_TEST_LOOKS` of them are held out as unseen classes.

The cells of scikit-image's IHC image (``tile``², the stain task's grid) are split
(seeded) into *training* cells (every training look, one class folder each),
*reference* cells (where the K example tiles of an unseen look come from) and *test*
cells (translated from look 0 and scored against the same cell in the unseen look:
exact ground truth). Per unseen look, :data:`DRAWS` seeded orderings of the reference
cells; K-shot takes the first K, so the 1-shot example is one of the 5-shot examples.

Layout written by :func:`write_task`: ``DIR/train/<look>/<cell>.png`` (what
``napari-i2i train funit --classes`` takes) and ``DIR/manifest.json``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .task import cells_of, pixel_sha256

N_LOOKS = 10  # look 0 (unchanged) + 9 drawn
N_TEST_LOOKS = 3
DRAWS = 2
SHOTS = (1, 5)
#: Fractions of the cells used as reference and test cells; the rest train.
REFERENCE_FRACTION, TEST_FRACTION = 0.15, 0.15
SOURCE_LOOK = "look00"


@dataclass(frozen=True)
class Look:
    """Concentration scales (H, E, DAB), DAB moved to eosin, and the stain matrix (rows: OD vectors)."""

    scales: tuple[float, float, float]
    dab_to_eosin: float
    matrix: tuple[tuple[float, float, float], ...]

    def record(self) -> dict:
        return {"scales": list(self.scales), "dab_to_eosin": self.dab_to_eosin,
                "matrix": [list(row) for row in self.matrix]}


def identity_look() -> Look:
    from skimage.color import rgb_from_hed

    return Look((1.0, 1.0, 1.0), 0.0, tuple(tuple(float(v) for v in row) for row in rgb_from_hed))


def draw_look(rng: np.random.Generator) -> Look:
    """A random look: scales U(0.5, 1.8), DAB->eosin U(0, 1), OD vectors jittered by N(0, 0.15)."""
    from skimage.color import rgb_from_hed

    matrix = []
    for row in np.asarray(rgb_from_hed, np.float64):
        jittered = np.clip(row + rng.normal(0.0, 0.15, 3), 0.02, None)
        matrix.append(tuple(float(v) for v in jittered / np.linalg.norm(jittered)))
    scales = tuple(float(v) for v in rng.uniform(0.5, 1.8, 3))
    return Look(scales, float(rng.uniform(0.0, 1.0)), tuple(matrix))


def apply_look(rgb: np.ndarray, look: Look) -> np.ndarray:
    """``rgb`` (uint8) re-stained with ``look``; look 0 returns the tile unchanged."""
    from skimage.color import combine_stains, rgb2hed

    if look == identity_look():
        return rgb.copy()
    hed = rgb2hed(rgb)
    h, e, d = (hed[..., i] * s for i, s in enumerate(look.scales))
    out = np.stack([h, e + look.dab_to_eosin * d, (1.0 - look.dab_to_eosin) * d], axis=-1)
    rgb_from_look = np.asarray(look.matrix, np.float64)
    return np.round(np.clip(combine_stains(out, rgb_from_look), 0.0, 1.0) * 255.0).astype(np.uint8)


@dataclass
class FewShotStainTask:
    """``cells[name]``: the unchanged tiles; ``looks[name]``; cell and look splits; draws."""

    tile: int
    seed: int
    cells: dict[str, np.ndarray]
    looks: dict[str, Look]
    train_cells: list[str]
    reference_cells: list[str]
    test_cells: list[str]
    train_looks: list[str]
    test_looks: list[str]
    draws: dict[str, list[list[str]]]  # test look -> per draw, reference cells in draw order
    manifest: dict = field(default_factory=dict)

    def render(self, look: str, cell: str) -> np.ndarray:
        return apply_look(self.cells[cell], self.looks[look])

    def examples(self, look: str, draw: int, k: int) -> list[str]:
        cells = self.draws[look][draw]
        if not 1 <= k <= len(cells):
            raise ValueError(f"K={k}: the draws hold {len(cells)} reference cells")
        return cells[:k]


def fewshot_stain_task(tile: int = 32, seed: int = 0, max_shots: int = max(SHOTS)) -> FewShotStainTask:
    """Build the task in memory (deterministic given ``tile``, ``seed`` and scikit-image)."""
    from skimage import data

    image = data.immunohistochemistry()
    grid = cells_of(image.shape, tile)
    cells = {f"r{r:02d}c{c:02d}.png": np.ascontiguousarray(image[r * tile:(r + 1) * tile, c * tile:(c + 1) * tile])
             for r, c in grid}
    names = sorted(cells)
    rng = np.random.default_rng([seed, 41])
    order = [names[i] for i in rng.permutation(len(names))]
    n_ref = max(max_shots, int(round(REFERENCE_FRACTION * len(names))))
    n_test = max(1, int(round(TEST_FRACTION * len(names))))
    if n_ref + n_test >= len(names):
        raise ValueError(f"{len(names)} cells of {tile}² are too few for {max_shots}-shot; use a smaller --tile")
    reference, test, train = sorted(order[:n_ref]), sorted(order[n_ref:n_ref + n_test]), sorted(order[n_ref + n_test:])
    looks = {SOURCE_LOOK: identity_look(), **{f"look{i:02d}": draw_look(rng) for i in range(1, N_LOOKS)}}
    held = rng.choice(np.arange(1, N_LOOKS), N_TEST_LOOKS, replace=False)
    test_looks = sorted(f"look{int(i):02d}" for i in held)
    train_looks = sorted(set(looks) - set(test_looks))
    draws = {look: [[reference[int(i)] for i in np.random.default_rng([seed, 42, j, d]).permutation(len(reference))]
                    for d in range(DRAWS)] for j, look in enumerate(test_looks)}
    task = FewShotStainTask(tile, seed, cells, looks, train, reference, test, train_looks, test_looks, draws)
    task.manifest = {
        "task": "fewshot_stain", "tile": tile, "seed": seed,
        "source": {"origin": "skimage.data.immunohistochemistry()", "pixel_sha256": pixel_sha256(image)},
        "looks": {name: look.record() for name, look in looks.items()},
        "split": {"train_looks": train_looks, "test_looks": test_looks, "train_cells": train,
                  "reference_cells": reference, "test_cells": test},
        "draws": {look: [d[:max_shots] for d in per] for look, per in draws.items()},
        "source_look": SOURCE_LOOK,
    }
    return task


def write_task(task: FewShotStainTask, out_dir: str | Path) -> Path:
    """``OUT/train/<look>/<cell>.png`` for every training look and cell, and ``OUT/manifest.json``."""
    from PIL import Image

    out = Path(out_dir)
    for look in task.train_looks:
        folder = out / "train" / look
        folder.mkdir(parents=True, exist_ok=True)
        for cell in task.train_cells:
            Image.fromarray(task.render(look, cell)).save(folder / cell, format="PNG")
    (out / "manifest.json").write_text(json.dumps(task.manifest, indent=1, sort_keys=True) + "\n")
    return out
