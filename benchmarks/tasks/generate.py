"""Generate the quality-benchmark tasks: unpaired training halves + an exact paired test set.

Each task is a folder with four sub-folders of 8-bit PNG files and a manifest::

    TASK/train_a/   domain-A images from one set of sources
    TASK/train_b/   domain-B images from a *disjoint* set of sources (no pairs)
    TASK/test_a/    held-out domain-A inputs ...
    TASK/test_b/    ... and their exact domain-B targets, under the same file names
    TASK/manifest.json   parameters, sources (with pixel hashes), fonts, file lists

Tasks (all deterministic given ``--tile`` and ``--seed``):

``stain``
    Tiles of scikit-image's ``data.immunohistochemistry()`` (IHC: haematoxylin +
    DAB) and, when stardist's sample data is installed, its H&E sample
    ``histo.jpg``. A = the original RGB tile; B = :func:`stain_transform` of it,
    an H&E-like re-staining done in HED optical-density space (``stain.py``).
``fluo2bf``
    Tiles of stardist's ``img2d.tif`` (fluorescent nuclei). A = the normalised
    fluorescence (1 channel); B = a brightfield-like RGB rendering through
    Beer-Lambert absorption by haematoxylin (:func:`fluo_transform`, ``fluo2bf.py``).
``glyphs``
    One character per image, rendered with Pillow at a fixed size and centred
    on its ink. A = the character in font A (DejaVu Sans), B = the same
    character in font B (a serif font, see ``FONT_B_CANDIDATES``). The three
    splits use disjoint character sets (test characters are unseen in training; ``glyphs.py``).
``keep_change``
    IHC tiles; B re-stains only the DAB pixels (a colour-deconvolution mask, written to
    ``test_mask/``) and keeps every other pixel exactly (``keep_change.py``).
``digits``
    A shape change: scikit-learn's handwritten digits (8×8, upsampled) -> the same digit drawn
    in installed fonts; scored by a digit classifier (``digits.py``).

For ``stain`` and ``fluo2bf`` every source image is cut into a grid of
non-overlapping ``tile``-sized cells (the right/bottom remainder is dropped);
each cell goes to exactly one of train_a / train_b / test (seeded permutation
per source, ~40 % / 40 % / 20 %), so no pixel is shared between splits.

stardist is only a data source: its files are located with
``importlib.util.find_spec`` and never imported (importing it pulls TensorFlow).
Install it with ``pip install --no-deps stardist``.

    python -m benchmarks.tasks.generate {stain,fluo2bf,glyphs,all} --out DIR [--tile 64] [--seed 0]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Callable

from .fluo2bf import fluo2bf_task
from .fluo2bf import fluo_transform  # noqa: F401  (manifests name benchmarks.tasks.generate.fluo_transform)
from .fonts import render_glyph  # noqa: F401  (manifests name benchmarks.tasks.generate.render_glyph)
from .glyphs import FONT_B_CANDIDATES, glyphs_task
from .keep_change import keep_change_task
from .digits import digits_task
from .stain import stain_task
from .stain import stain_transform  # noqa: F401  (manifests name benchmarks.tasks.generate.stain_transform)
from .task import SPLITS, TEST_FRACTION, MissingData, Task, versions, write_task

FORMAT_VERSION = 1

TASKS: dict[str, Callable[..., Task]] = {"stain": stain_task, "fluo2bf": fluo2bf_task, "glyphs": glyphs_task,
                                         "keep_change": keep_change_task, "digits": digits_task}


def generate(name: str, tile: int = 64, seed: int = 0, **options) -> Task:
    """Build task ``name`` in memory (see :data:`TASKS`)."""
    if name not in TASKS:
        raise KeyError(f"unknown task {name!r}; choose from {sorted(TASKS)}")
    if tile < 8:
        raise ValueError("--tile must be >= 8 (SSIM uses a 7-pixel window)")
    task = TASKS[name](tile=tile, seed=seed, **options)
    task.manifest = {"task": name, "format_version": FORMAT_VERSION, "tile": tile, "seed": seed,
                     "test_fraction": TEST_FRACTION, "counts": task.counts(), "versions": versions(),
                     **task.manifest,
                     "files": {split: sorted(task.splits[split]) for split in SPLITS}}
    return task


def _folder_size(path: Path) -> tuple[int, int]:
    files = [p for p in path.rglob("*") if p.is_file()]
    return len(files), sum(p.stat().st_size for p in files)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.tasks.generate",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("task", choices=[*TASKS, "all"])
    parser.add_argument("--out", required=True, type=Path, help="folder; each task goes to OUT/TASK/")
    parser.add_argument("--tile", type=int, default=64, help="tile / glyph canvas side in pixels (default 64)")
    parser.add_argument("--seed", type=int, default=0, help="split seed (default 0)")
    parser.add_argument("--no-stardist-he", action="store_true",
                        help="stain: use only skimage's IHC image, not stardist's histo.jpg")
    parser.add_argument("--font-a", help="glyphs: font file for domain A (default DejaVu Sans)")
    parser.add_argument("--font-b", help="glyphs: font file for domain B (default: first of "
                        + ", ".join(f for f, _ in FONT_B_CANDIDATES) + ")")
    args = parser.parse_args(argv)

    names = list(TASKS) if args.task == "all" else [args.task]
    failed = []
    for name in names:
        options = {}
        if name == "stain":
            options["use_stardist"] = not args.no_stardist_he
        if name == "glyphs":
            options.update(font_a=args.font_a, font_b=args.font_b)
        start = time.perf_counter()
        try:
            task = generate(name, tile=args.tile, seed=args.seed, **options)
        except MissingData as error:
            print(f"{name}: FAILED: {error}", file=sys.stderr)
            failed.append(name)
            continue
        folder = write_task(task, args.out / name)
        n_files, n_bytes = _folder_size(folder)
        print(f"{task.describe()}; {n_files} files, {n_bytes / 1e6:.2f} MB -> {folder} "
              f"({time.perf_counter() - start:.1f} s)")
        if name == "stain":
            print("  sources: " + ", ".join(f"{k}: {v.get('origin', v.get('skipped'))}"
                                            for k, v in task.manifest["sources"].items()))
        if name == "glyphs":
            fonts = task.manifest["fonts"]
            print(f"  fonts: A = {fonts['a']['name']} ({fonts['a']['file']}), "
                  f"B = {fonts['b']['name']} ({fonts['b']['file']}); pool {task.manifest['pool_size']} characters")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
