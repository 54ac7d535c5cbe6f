"""What every quality-benchmark task shares: the in-memory task, the seeded split of
tiles into train_a / train_b / test, and the task folder on disk (PNG files + manifest)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

SPLITS = ("train_a", "train_b", "test_a", "test_b")
#: Optional splits a task may add: ``test_mask`` (keep_change: 255 where a pixel must change, 0 where it must stay).
EXTRA_SPLITS = ("test_mask",)

#: Fraction of each source's cells (or of the character pool) held out for the paired test set.
TEST_FRACTION = 0.2


class MissingData(RuntimeError):
    """A package that provides source data is not installed."""


@dataclass
class Task:
    """A generated task: ``splits[split][file name] = uint8 array`` plus its manifest."""

    name: str
    splits: dict[str, dict[str, np.ndarray]]
    manifest: dict = field(default_factory=dict)

    def counts(self) -> dict[str, int]:
        return {split: len(self.splits[split]) for split in SPLITS}

    def describe(self) -> str:
        c = self.counts()
        shapes = []
        for split in ("test_a", "test_b"):
            first = next(iter(self.splits[split].values()))
            shapes.append("×".join(map(str, first.shape)) + f" {first.dtype}")
        return (f"{self.name}: train_a {c['train_a']}, train_b {c['train_b']}, "
                f"test pairs {c['test_a']}; A {shapes[0]}, B {shapes[1]}")


def to_uint8(x: np.ndarray) -> np.ndarray:
    """[0, 1] floats to 8 bits, clipped and rounded."""
    return np.round(np.clip(x, 0.0, 1.0) * 255.0).astype(np.uint8)


def pixel_sha256(array: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()


def split_indices(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Seeded partition of ``range(n)`` into train_a, train_b, test (~40/40/20 %)."""
    if n < 3:
        raise ValueError(f"need at least 3 cells or characters to split, got {n}; use a smaller --tile")
    order = rng.permutation(n)
    n_test = max(1, int(round(TEST_FRACTION * n)))
    n_a = (n - n_test + 1) // 2
    return np.sort(order[:n_a]), np.sort(order[n_a:n - n_test]), np.sort(order[n - n_test:])


def cells_of(shape: tuple[int, ...], tile: int) -> list[tuple[int, int]]:
    """(row, column) of every whole tile-sized cell; the right/bottom remainder is dropped."""
    rows, cols = shape[0] // tile, shape[1] // tile
    return [(r, c) for r in range(rows) for c in range(cols)]


def tiled_task(sources: list[tuple[str, np.ndarray]], transform: Callable,
                prepare: Callable, tile: int, seed: int) -> tuple[dict, dict]:
    """Cut each (prepared) source into cells and split them; B = transform(A) per tile."""
    rng = np.random.default_rng(seed)
    splits: dict[str, dict[str, np.ndarray]] = {s: {} for s in SPLITS}
    cell_record = {}
    for source, image in sources:
        image = prepare(image)
        cells = cells_of(image.shape, tile)
        idx_a, idx_b, idx_test = split_indices(len(cells), rng)
        cell_record[source] = {"grid": [image.shape[0] // tile, image.shape[1] // tile]}
        for split_name, indices in (("train_a", idx_a), ("train_b", idx_b), ("test", idx_test)):
            cell_record[source][split_name] = [list(cells[i]) for i in indices]
            for i in indices:
                r, c = cells[i]
                a = np.ascontiguousarray(image[r * tile:(r + 1) * tile, c * tile:(c + 1) * tile])
                file = f"{source}_r{r:02d}c{c:02d}.png"
                if split_name == "train_a":
                    splits["train_a"][file] = a
                elif split_name == "train_b":
                    splits["train_b"][file] = transform(a)
                else:
                    splits["test_a"][file] = a
                    splits["test_b"][file] = transform(a)
    return splits, cell_record


def versions() -> dict:
    """Library versions a manifest records: results compare only for the same ones."""
    import PIL
    import skimage
    from PIL import features

    return {"numpy": np.__version__, "scikit-image": skimage.__version__, "Pillow": PIL.__version__,
            "freetype2": features.version("freetype2")}


def write_task(task: Task, out_dir: str | Path) -> Path:
    """Write ``task`` to ``out_dir`` (PNG files + manifest.json); returns the folder."""
    from PIL import Image

    out = Path(out_dir)
    for split in (*SPLITS, *(s for s in EXTRA_SPLITS if s in task.splits)):
        folder = out / split
        folder.mkdir(parents=True, exist_ok=True)
        for stale in folder.glob("*.png"):
            if stale.name not in task.splits[split]:
                stale.unlink()
        for file, array in sorted(task.splits[split].items()):
            Image.fromarray(array).save(folder / file, format="PNG")
    (out / "manifest.json").write_text(json.dumps(task.manifest, indent=1, sort_keys=True,
                                                  ensure_ascii=False) + "\n", encoding="utf-8")
    return out


def read_image(path: str | Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        if im.mode not in ("L", "RGB"):
            im = im.convert("RGB" if im.mode in ("RGBA", "P", "CMYK") else "L")
        return np.asarray(im)


def load_task(task_dir: str | Path) -> Task:
    """Read a task written by :func:`write_task`."""
    task_dir = Path(task_dir)
    manifest_path = task_dir / "manifest.json"
    manifest = json.loads(manifest_path.read_text(encoding="utf-8")) if manifest_path.is_file() else {}
    present = (*SPLITS, *(s for s in EXTRA_SPLITS if (task_dir / s).is_dir()))
    splits = {split: {p.name: read_image(p) for p in sorted((task_dir / split).glob("*.png"))}
              for split in present}
    return Task(manifest.get("task", task_dir.name), splits, manifest)
