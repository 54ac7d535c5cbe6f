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
    an H&E-like re-staining done in HED optical-density space.
``fluo2bf``
    Tiles of stardist's ``img2d.tif`` (fluorescent nuclei). A = the normalised
    fluorescence (1 channel); B = a brightfield-like RGB rendering through
    Beer-Lambert absorption by haematoxylin (:func:`fluo_transform`).
``glyphs``
    One character per image, rendered with Pillow at a fixed size and centred
    on its ink. A = the character in font A (DejaVu Sans), B = the same
    character in font B (a serif font, see ``FONT_B_CANDIDATES``). The three
    splits use disjoint character sets (test characters are unseen in training).

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
import hashlib
import importlib.util
import json
import sys
import time
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from napari_i2i.frontends.sample_data import DAB_TO_EOSIN, H_SCALE, he_like_restain

SPLITS = ("train_a", "train_b", "test_a", "test_b")
FORMAT_VERSION = 1

#: Fraction of each source's cells (or of the character pool) held out for the paired test set.
TEST_FRACTION = 0.2

# --- stain: fixed re-staining in HED space (napari_i2i.frontends.sample_data) ------------------

# --- fluo2bf: Beer-Lambert absorption ---------------------------------------------------
#: Absorption strength: optical density at normalised fluorescence 1 is ``FLUO_K * vector``.
FLUO_K = 3.0
#: Percentiles of the whole source image mapped to 0 and 1 before clipping.
FLUO_PERCENTILES = (1.0, 99.8)

# --- glyphs ------------------------------------------------------------------------------
#: (file name, Debian package); the first one found is used.
FONT_A_CANDIDATES = (("DejaVuSans.ttf", "fonts-dejavu-core"),)
FONT_B_CANDIDATES = (
    ("NimbusRoman-Regular.otf", "fonts-urw-base35"),
    ("LiberationSerif-Regular.ttf", "fonts-liberation"),
    ("FreeSerif.ttf", "fonts-freefont-ttf"),
    ("DejaVuSerif.ttf", "fonts-dejavu-core"),
)
FONT_DIRS = (
    Path("/usr/share/fonts"),
    Path("/usr/local/share/fonts"),
    Path.home() / ".local/share/fonts",
    Path.home() / ".fonts",
)
#: Font size in pixels as a fraction of the tile side.
GLYPH_SIZE_FRACTION = 0.6
#: Minimum blank border (pixels) around a glyph's ink; glyphs that don't fit are dropped.
GLYPH_MARGIN = 2
#: Code-point ranges drawn from: printable ASCII, Latin-1 + Latin Extended-A letters,
#: Greek capitals and small letters, basic Cyrillic.
GLYPH_RANGES = ((0x21, 0x7E), (0xC0, 0x17F), (0x391, 0x3C9), (0x410, 0x44F))
#: A code point no font maps: its rendering is the font's .notdef glyph.
_UNMAPPED = "\U0010fffd"
#: Font files that :func:`font_files` finds (Pillow's FreeType opens these at any size).
FONT_SUFFIXES = (".ttf", ".otf")


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


# ------------------------------------------------------------------------------- helpers

def _to_uint8(x: np.ndarray) -> np.ndarray:
    return np.round(np.clip(x, 0.0, 1.0) * 255.0).astype(np.uint8)


def _pixel_sha256(array: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()


def _split_indices(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Seeded partition of ``range(n)`` into train_a, train_b, test (~40/40/20 %)."""
    if n < 3:
        raise ValueError(f"need at least 3 cells or characters to split, got {n}; use a smaller --tile")
    order = rng.permutation(n)
    n_test = max(1, int(round(TEST_FRACTION * n)))
    n_a = (n - n_test + 1) // 2
    return np.sort(order[:n_a]), np.sort(order[n_a:n - n_test]), np.sort(order[n - n_test:])


def _cells(shape: tuple[int, ...], tile: int) -> list[tuple[int, int]]:
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
        cells = _cells(image.shape, tile)
        idx_a, idx_b, idx_test = _split_indices(len(cells), rng)
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


def _versions() -> dict:
    import PIL
    import skimage
    from PIL import features

    return {"numpy": np.__version__, "scikit-image": skimage.__version__, "Pillow": PIL.__version__,
            "freetype2": features.version("freetype2")}


# ---------------------------------------------------------------------- stardist's data

def stardist_data_file(name: str) -> Path | None:
    """Path of ``stardist/data/images/NAME`` without importing stardist, or None."""
    spec = importlib.util.find_spec("stardist")  # top-level: finds, does not import
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        path = Path(location) / "data" / "images" / name
        if path.is_file():
            return path
    return None


def _require_stardist_file(name: str, task: str) -> Path:
    path = stardist_data_file(name)
    if path is None:
        raise MissingData(
            f"task {task!r} needs the sample image stardist/data/images/{name} from the "
            "'stardist' package, which is not installed. Install its data files without "
            "TensorFlow: `pip install --no-deps stardist` (only the data is used; stardist "
            "is never imported)."
        )
    return path


# ------------------------------------------------------------------------------- stain

def stain_transform(rgb: np.ndarray) -> np.ndarray:
    """The fixed IHC -> H&E-like re-staining (uint8 RGB in and out, pixel-wise).

    The package's own :func:`napari_i2i.frontends.sample_data.he_like_restain`, so the
    demo's style reference and this task's domain B are one transform.
    """
    return he_like_restain(rgb)


def stain_sources(use_stardist: bool = True) -> tuple[list[tuple[str, np.ndarray]], dict]:
    from skimage import data

    sources = [("ihc", data.immunohistochemistry())]
    record = {"ihc": {"origin": "skimage.data.immunohistochemistry()"}}
    path = stardist_data_file("histo.jpg") if use_stardist else None
    if path is not None:
        from PIL import Image

        with Image.open(path) as im:
            sources.append(("he", np.asarray(im.convert("RGB"))))
        record["he"] = {"origin": "stardist/data/images/histo.jpg"}
    else:
        record["he"] = {"skipped": "disabled" if not use_stardist else
                        "stardist not installed (pip install --no-deps stardist)"}
    for source, image in sources:
        record[source].update(shape=list(image.shape), pixel_sha256=_pixel_sha256(image))
    return sources, record


def stain_task(tile: int = 64, seed: int = 0, use_stardist: bool = True) -> Task:
    """Stain shift: A = IHC / H&E tile, B = :func:`stain_transform` of it."""
    sources, record = stain_sources(use_stardist)
    splits, cells = tiled_task(sources, stain_transform, lambda im: im, tile, seed)
    manifest = {
        "transform": {
            "function": "benchmarks.tasks.generate.stain_transform",
            "description": "HED space (skimage rgb2hed/hed2rgb): H'=h_scale*H, E'=E+dab_to_eosin*DAB, DAB'=0",
            "h_scale": H_SCALE, "dab_to_eosin": DAB_TO_EOSIN,
        },
        "sources": record, "cells": cells,
        "a": "original RGB tile", "b": "re-stained RGB tile",
    }
    return Task("stain", splits, manifest)


# ----------------------------------------------------------------------------- fluo2bf

def haematoxylin_od() -> np.ndarray:
    """Haematoxylin's RGB optical-density vector, ``skimage.color.rgb_from_hed[0]``."""
    from skimage.color import rgb_from_hed

    return np.asarray(rgb_from_hed[0], dtype=np.float64)  # (0.65, 0.70, 0.29)


def fluo_normalise(image: np.ndarray) -> np.ndarray:
    """Whole-image percentile normalisation to uint8 (this is domain A)."""
    lo, hi = np.percentile(image.astype(np.float64), FLUO_PERCENTILES)
    return _to_uint8((image.astype(np.float64) - lo) / (hi - lo))


def fluo_transform(a: np.ndarray) -> np.ndarray:
    """Brightfield-like RGB from normalised fluorescence (uint8 HxW in, uint8 HxWx3 out).

    Beer-Lambert: B = 255·exp(-``FLUO_K``·(a/255)·v) per channel, v = haematoxylin's
    OD vector :func:`haematoxylin_od`; background (a=0) is white, bright nuclei purple.
    """
    if a.dtype != np.uint8 or a.ndim != 2:
        raise ValueError(f"expected uint8 single-channel, got {a.dtype} {a.shape}")
    od = FLUO_K * (a.astype(np.float64) / 255.0)[..., None] * haematoxylin_od()
    return _to_uint8(np.exp(-od))


def fluo2bf_task(tile: int = 64, seed: int = 0) -> Task:
    """Fluorescence -> brightfield-like: A = 1-channel fluorescence, B = RGB absorption."""
    import tifffile

    path = _require_stardist_file("img2d.tif", "fluo2bf")
    raw = tifffile.imread(path)
    sources = [("nuclei", raw)]
    splits, cells = tiled_task(sources, fluo_transform, fluo_normalise, tile, seed)
    manifest = {
        "transform": {
            "function": "benchmarks.tasks.generate.fluo_transform",
            "description": "B = 255*exp(-k * (A/255) * v), v = skimage.color.rgb_from_hed[0]",
            "k": FLUO_K, "vector": haematoxylin_od().tolist(),
            "normalisation": f"A = uint8(255*clip((raw - p{FLUO_PERCENTILES[0]}) / "
                             f"(p{FLUO_PERCENTILES[1]} - p{FLUO_PERCENTILES[0]}), 0, 1)), whole image",
        },
        "sources": {"nuclei": {"origin": "stardist/data/images/img2d.tif", "shape": list(raw.shape),
                               "dtype": str(raw.dtype), "pixel_sha256": _pixel_sha256(raw)}},
        "cells": cells,
        "a": "normalised fluorescence, 1 channel", "b": "brightfield-like RGB",
    }
    return Task("fluo2bf", splits, manifest)


# ------------------------------------------------------------------------------ glyphs

def font_files(pattern: str = "*", suffixes: tuple[str, ...] = FONT_SUFFIXES) -> list[Path]:
    """Installed font files matching ``pattern`` under :data:`FONT_DIRS`, in directory
    order and sorted by path within each directory."""
    found = []
    for directory in FONT_DIRS:
        if directory.is_dir():
            found += sorted(p for p in directory.rglob(pattern) if p.suffix.lower() in suffixes)
    return found


def find_font(candidates: tuple[tuple[str, str], ...]) -> Path:
    """First installed font file among ``candidates`` (file name, Debian package)."""
    for file, _package in candidates:
        hits = font_files(file)
        if hits:
            return hits[0]
    wanted = ", ".join(f"{f} ({p})" for f, p in candidates)
    raise MissingData(f"none of these fonts is installed: {wanted}; e.g. `apt-get install -y "
                      f"{candidates[0][1]}`, or pass a font file with --font-a/--font-b")


def render_glyph(font, char: str, tile: int, margin: int = GLYPH_MARGIN) -> np.ndarray | None:
    """``char`` in ``font``, ink-centred on a ``tile``² white canvas (black ink, uint8).

    None if the character has no ink or its ink doesn't fit inside the margin.
    """
    from PIL import Image, ImageDraw

    size = 3 * tile
    canvas = Image.new("L", (size, size), 0)
    ImageDraw.Draw(canvas).text((size // 2, size // 2), char, font=font, fill=255, anchor="mm")
    ink = np.asarray(canvas)
    rows, cols = np.nonzero(ink)
    if rows.size == 0:
        return None
    top, bottom, left, right = rows.min(), rows.max() + 1, cols.min(), cols.max() + 1
    h, w = bottom - top, right - left
    if h > tile - 2 * margin or w > tile - 2 * margin:
        return None
    out = np.zeros((tile, tile), np.uint8)
    y, x = (tile - h) // 2, (tile - w) // 2
    out[y:y + h, x:x + w] = ink[top:bottom, left:right]
    return 255 - out


def glyph_file(char: str) -> str:
    return f"u{ord(char):04X}.png"


def glyph_char(file: str) -> str:
    return chr(int(Path(file).stem[1:], 16))


def load_font(path: Path | str, tile: int):
    from PIL import ImageFont

    return ImageFont.truetype(str(path), size=int(round(GLYPH_SIZE_FRACTION * tile)))


def notdef_glyph(font, tile: int) -> np.ndarray | None:
    """The font's .notdef glyph as :func:`render_glyph` draws it (None: no ink or too big)."""
    return render_glyph(font, _UNMAPPED, tile)


def real_glyph(font, char: str, tile: int, notdef: np.ndarray | None) -> np.ndarray | None:
    """:func:`render_glyph` of ``char``, or None when it has no ink, doesn't fit, or is the
    font's .notdef glyph (``notdef`` from :func:`notdef_glyph`): the font lacks the character."""
    image = render_glyph(font, char, tile)
    if image is None or (notdef is not None and np.array_equal(image, notdef)):
        return None
    return image


def font_record(path: Path | str, font) -> dict:
    """What a manifest says about a font: file, name, pixel size and the file's hash."""
    path = Path(path)
    return {"file": str(path), "name": " ".join(font.getname()), "size_px": font.size,
            "file_sha256": hashlib.sha256(path.read_bytes()).hexdigest()}


def glyph_pool(font_a, font_b, tile: int) -> tuple[list[str], dict[str, tuple[np.ndarray, np.ndarray]]]:
    """Characters both fonts really have (not .notdef), that fit, with unique images."""
    notdef_a, notdef_b = notdef_glyph(font_a, tile), notdef_glyph(font_b, tile)
    chars, images = [], {}
    seen_a, seen_b = set(), set()
    for lo, hi in GLYPH_RANGES:
        for code in range(lo, hi + 1):
            char = chr(code)
            if not unicodedata.category(char).startswith(("L", "N", "P", "S")):
                continue
            a, b = real_glyph(font_a, char, tile, notdef_a), real_glyph(font_b, char, tile, notdef_b)
            if a is None or b is None:
                continue
            # Look-alikes (Latin A, Greek Alpha, Cyrillic A) would put the same image in two splits.
            ka, kb = a.tobytes(), b.tobytes()
            if ka in seen_a or kb in seen_b:
                continue
            seen_a.add(ka)
            seen_b.add(kb)
            chars.append(char)
            images[char] = (a, b)
    return chars, images


def glyphs_task(tile: int = 64, seed: int = 0, font_a: str | Path | None = None,
                font_b: str | Path | None = None) -> Task:
    """Font A -> font B; train_a, train_b and test use disjoint character sets."""
    if tile < 16:
        raise ValueError("glyphs need --tile >= 16")
    path_a = Path(font_a) if font_a else find_font(FONT_A_CANDIDATES)
    path_b = Path(font_b) if font_b else find_font(FONT_B_CANDIDATES)
    fa, fb = load_font(path_a, tile), load_font(path_b, tile)
    if fa.getname() == fb.getname():
        raise ValueError(f"font A and font B are the same font: {fa.getname()}")
    chars, images = glyph_pool(fa, fb, tile)
    idx_a, idx_b, idx_test = _split_indices(len(chars), np.random.default_rng(seed))
    splits = {s: {} for s in SPLITS}
    for i in idx_a:
        splits["train_a"][glyph_file(chars[i])] = images[chars[i]][0]
    for i in idx_b:
        splits["train_b"][glyph_file(chars[i])] = images[chars[i]][1]
    for i in idx_test:
        splits["test_a"][glyph_file(chars[i])] = images[chars[i]][0]
        splits["test_b"][glyph_file(chars[i])] = images[chars[i]][1]

    manifest = {
        "fonts": {"a": font_record(path_a, fa), "b": font_record(path_b, fb)},
        "rendering": f"Pillow ImageFont, size round({GLYPH_SIZE_FRACTION}*tile) px, anchor 'mm', "
                     f"ink bounding box centred (integer offsets), black ink on white, margin "
                     f"{GLYPH_MARGIN} px; characters without a real glyph in both fonts, that "
                     "don't fit, or whose image duplicates another character's are dropped",
        "ranges": [[f"U+{lo:04X}", f"U+{hi:04X}"] for lo, hi in GLYPH_RANGES],
        "pool_size": len(chars),
        "characters": {split: "".join(glyph_char(f) for f in splits[split])
                       for split in ("train_a", "train_b", "test_a")},
        "a": "glyph in font A, 1 channel", "b": "same character in font B, 1 channel",
    }
    return Task("glyphs", splits, manifest)


# --------------------------------------------------------------------------- write/read

TASKS: dict[str, Callable[..., Task]] = {"stain": stain_task, "fluo2bf": fluo2bf_task, "glyphs": glyphs_task}


def generate(name: str, tile: int = 64, seed: int = 0, **options) -> Task:
    """Build task ``name`` in memory (see :data:`TASKS`)."""
    if name not in TASKS:
        raise KeyError(f"unknown task {name!r}; choose from {sorted(TASKS)}")
    if tile < 8:
        raise ValueError("--tile must be >= 8 (SSIM uses a 7-pixel window)")
    task = TASKS[name](tile=tile, seed=seed, **options)
    task.manifest = {"task": name, "format_version": FORMAT_VERSION, "tile": tile, "seed": seed,
                     "test_fraction": TEST_FRACTION, "counts": task.counts(), "versions": _versions(),
                     **task.manifest,
                     "files": {split: sorted(task.splits[split]) for split in SPLITS}}
    return task


def write_task(task: Task, out_dir: str | Path) -> Path:
    """Write ``task`` to ``out_dir`` (PNG files + manifest.json); returns the folder."""
    from PIL import Image

    out = Path(out_dir)
    for split in SPLITS:
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
    splits = {split: {p.name: read_image(p) for p in sorted((task_dir / split).glob("*.png"))}
              for split in SPLITS}
    return Task(manifest.get("task", task_dir.name), splits, manifest)


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
