"""Few-shot glyph task (FUNIT, issue 4): the same characters in many fonts, split by family.

Every chosen font is a class: its glyphs of ``A–Z a–z 0–9``, rendered as the
``glyphs`` task renders them (:func:`benchmarks.tasks.generate.render_glyph`:
Pillow at ``round(0.6·tile)`` px, ink centred on a white tile, black ink,
8-bit gray). Fonts are grouped into *family groups*: a family (Pillow's
``getname()[0]``, e.g. ``Nimbus Sans``) together with its width/optical
variants and metric clones (Nimbus Sans, Nimbus Sans Narrow, FreeSans,
Liberation Sans (Narrow) are one group, "Helvetica"), see :data:`FAMILIES`.
Whole groups go to training or test, so no style (Bold, Italic, …) or clone
of a test family is ever seen in training.

Layout written by :func:`write_task`::

    DIR/train/<font>/uXXXX.png   training fonts (one folder = one class, for
                                 trainers.run.make_class_settings / train funit --classes)
    DIR/test/<font>/uXXXX.png    unseen fonts: every character (examples and targets)
    DIR/manifest.json            fonts (files, hashes, groups), split, characters, draws

Characters are split (seeded) into *example characters* (where the K example
glyphs of an unseen font come from) and *test characters* (translated from the
source font, a fixed training font, and scored against the unseen font's true
glyphs); the two sets are disjoint. For each unseen font there are ``draws``
seeded orderings of the example characters; K-shot uses the first K of a draw,
so the 1-shot example is one of the 5-shot examples.

Baselines (no training, no test targets used): :func:`identity_prediction`
(the source font's glyph) and :func:`nearest_font` (the training font closest
in L1 to the unseen font on the K example characters; its glyph is the prediction).

    python -m benchmarks.tasks.fewshot --out DIR [--tile 32] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import shutil
import string
import sys
import time
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .generate import (
    GLYPH_MARGIN,
    GLYPH_SIZE_FRACTION,
    MissingData,
    _pixel_sha256,
    _versions,
    font_files,
    font_record,
    glyph_file,
    load_font,
    notdef_glyph,
    read_image,
    real_glyph,
)

FORMAT_VERSION = 1
CHARACTERS = string.ascii_uppercase + string.ascii_lowercase + string.digits
DEFAULT_TILE = 32
#: The font every test character is translated from (a training font): (family, style).
SOURCE_FONT = ("DejaVu Sans", "Book")
#: Characters whose glyphs may serve as K-shot examples; the rest are translated and scored.
N_EXAMPLE_CHARS = 16
#: Family groups held out for test when none are named (drawn with the seed).
N_TEST_GROUPS = 3
#: Seeded orderings of the example characters per unseen font.
DRAWS = 3
SHOTS = (1, 5)

#: Latin text families from Debian font packages: family (Pillow ``getname()[0]``) ->
#: (family group, package). A group is one design: a family, its width/optical variants
#: and its metric clones (mean L1 between the Regular faces at tile 32: 2.2–4.7 grey
#: levels inside a group; the closest pair across groups, Liberation Mono and DejaVu Sans
#: Mono, 4.8, two different monospaced designs). Symbol, dingbat, math and non-Latin
#: script fonts are not listed: they are never used.
FAMILIES: dict[str, tuple[str, str]] = {
    "DejaVu Sans": ("DejaVu Sans", "fonts-dejavu-core"),
    "DejaVu Sans Mono": ("DejaVu Sans", "fonts-dejavu-core"),
    "DejaVu Serif": ("DejaVu Serif", "fonts-dejavu-core"),
    "Nimbus Sans": ("Helvetica", "fonts-urw-base35"),
    "Nimbus Sans Narrow": ("Helvetica", "fonts-urw-base35"),
    "FreeSans": ("Helvetica", "fonts-freefont-ttf"),
    "Liberation Sans": ("Helvetica", "fonts-liberation"),
    "Liberation Sans Narrow": ("Helvetica", "fonts-liberation"),
    "Nimbus Roman": ("Times", "fonts-urw-base35"),
    "FreeSerif": ("Times", "fonts-freefont-ttf"),
    "Liberation Serif": ("Times", "fonts-liberation"),
    "Nimbus Mono PS": ("Courier", "fonts-urw-base35"),
    "FreeMono": ("Courier", "fonts-freefont-ttf"),
    "Liberation Mono": ("Liberation Mono", "fonts-liberation"),
    "C059": ("Century Schoolbook", "fonts-urw-base35"),
    "P052": ("Palatino", "fonts-urw-base35"),
    "URW Bookman": ("Bookman", "fonts-urw-base35"),
    "URW Gothic": ("Avant Garde", "fonts-urw-base35"),
    "Z003": ("Zapf Chancery", "fonts-urw-base35"),
    "Noto Sans": ("Noto Sans", "fonts-noto-core"),
    "Noto Sans Display": ("Noto Sans", "fonts-noto-core"),
    "Noto Serif": ("Noto Serif", "fonts-noto-core"),
    "Noto Serif Display": ("Noto Serif", "fonts-noto-core"),
}

# Random streams of their own (numpy SeedSequence keys after the seed).
_TEST_GROUPS, _CHARS, _DRAWS = 11, 12, 13


@dataclass(frozen=True)
class FontFace:
    """One installed font file of a listed family."""

    slug: str  # folder name: "Nimbus_Sans_Bold_Italic"
    family: str
    style: str
    group: str
    package: str
    path: Path


def font_slug(family: str, style: str) -> str:
    return "_".join(f"{family} {style}".split()).replace("/", "-")


def discover_fonts(families: Mapping[str, tuple[str, str]] = FAMILIES) -> tuple[list[FontFace], list[dict]]:
    """Installed faces of ``families``, sorted by slug, and the files skipped as duplicates.

    A (family, style) found in several files (e.g. a font installed twice) is
    taken from the first file in :func:`~benchmarks.tasks.generate.font_files` order.
    """
    from PIL import ImageFont

    faces: dict[str, FontFace] = {}
    duplicates = []
    for path in font_files():
        try:
            family, style = ImageFont.truetype(str(path), size=16).getname()
        except OSError:
            continue
        if family not in families:
            continue
        slug = font_slug(family, style)
        if slug in faces:
            duplicates.append({"file": str(path), "font": slug, "kept": str(faces[slug].path)})
            continue
        group, package = families[family]
        faces[slug] = FontFace(slug, family, style, group, package, path)
    return [faces[s] for s in sorted(faces)], duplicates


def render_face(face: FontFace, chars: str, tile: int) -> tuple[dict[str, np.ndarray], list[str]]:
    """``(glyphs, missing)``: each character with a real glyph that fits, and the others."""
    font = load_font(face.path, tile)
    notdef = notdef_glyph(font, tile)
    glyphs, missing = {}, []
    for char in chars:
        image = real_glyph(font, char, tile, notdef)
        if image is None:
            missing.append(char)
        else:
            glyphs[char] = image
    return glyphs, missing


@dataclass
class FewShotTask:
    """Glyphs of every chosen font plus the split; ``glyphs[font][char]`` is a uint8 tile."""

    tile: int
    seed: int
    chars: str  # every character, in CHARACTERS order
    example_chars: str  # K-shot examples come from these ...
    test_chars: str  # ... and these are translated and scored (disjoint)
    source: str  # the source font's slug (a training font)
    train_fonts: list[str]
    test_fonts: list[str]
    faces: dict[str, FontFace]
    glyphs: dict[str, dict[str, np.ndarray]]
    draws: dict[str, list[str]]  # test font -> per draw, example characters in draw order
    manifest: dict = field(default_factory=dict)

    def examples(self, font: str, draw: int, k: int) -> str:
        """The ``k`` example characters of draw ``draw`` for unseen font ``font``."""
        chars = self.draws[font][draw]
        if not 1 <= k <= len(chars):
            raise ValueError(f"K={k}: the draws hold {len(chars)} example characters")
        return chars[:k]

    def describe(self) -> str:
        groups = lambda fonts: sorted({self.faces[f].group for f in fonts})  # noqa: E731
        return (f"fewshot: {len(self.train_fonts)} training fonts ({len(groups(self.train_fonts))} family "
                f"groups), {len(self.test_fonts)} unseen fonts ({', '.join(groups(self.test_fonts))}); "
                f"{len(self.chars)} characters: {len(self.example_chars)} example, "
                f"{len(self.test_chars)} test; source {self.source}; tile {self.tile}")


def _choose_groups(available: Sequence[str], source_group: str, test_groups: Sequence[str] | None,
                   n_test_groups: int, train_groups: Sequence[str] | None,
                   seed: int) -> tuple[list[str], list[str]]:
    """``(training groups, test groups)``, each sorted."""
    available = sorted(available)
    for names, what in ((test_groups, "test"), (train_groups, "training")):
        unknown = sorted(set(names or ()) - set(available))
        if unknown:
            raise ValueError(f"{what} family groups not installed or unknown: {', '.join(unknown)}; "
                             f"the installed groups are {', '.join(available)}")
    candidates = [g for g in available if g != source_group and g not in (train_groups or ())]
    if test_groups:
        if source_group in test_groups:
            raise ValueError(f"the source font's group {source_group!r} cannot be a test group")
        test = sorted(set(test_groups))
    else:
        if not 0 < n_test_groups <= len(candidates):
            raise ValueError(f"cannot hold out {n_test_groups} family groups: {len(candidates)} are "
                             "available (the source font's group and named training groups stay "
                             "in training)")
        drawn = np.random.default_rng([seed, _TEST_GROUPS]).choice(len(candidates), n_test_groups,
                                                                  replace=False)
        test = sorted(candidates[int(i)] for i in drawn)
    if train_groups:
        train = sorted(set(train_groups) | {source_group})
        overlap = sorted(set(train) & set(test))
        if overlap:
            raise ValueError(f"family groups both in training and test: {', '.join(overlap)}")
    else:
        train = [g for g in available if g not in test]
    return train, test


def build_task(
    tile: int = DEFAULT_TILE,
    seed: int = 0,
    test_groups: Sequence[str] | None = None,
    n_test_groups: int = N_TEST_GROUPS,
    train_groups: Sequence[str] | None = None,
    chars: str = CHARACTERS,
    n_example_chars: int = N_EXAMPLE_CHARS,
    draws: int = DRAWS,
    max_shots: int = max(SHOTS),
    source: tuple[str, str] = SOURCE_FONT,
    families: Mapping[str, tuple[str, str]] = FAMILIES,
) -> FewShotTask:
    """Render, split and record the task (deterministic given the arguments and the fonts).

    ``test_groups``: family groups to hold out (default: ``n_test_groups`` drawn
    with ``seed`` among the installed groups other than the source font's).
    ``train_groups``: training groups (default: every other installed group;
    the source font's group is always included). A font that lacks a real
    glyph of any of ``chars`` or whose glyph doesn't fit the tile is left out
    (the manifest lists it).
    """
    if tile < 16:
        raise ValueError("the few-shot glyph task needs --tile >= 16")
    chars = "".join(dict.fromkeys(chars))  # unique, in order
    if not 1 <= max_shots <= n_example_chars < len(chars):
        raise ValueError(f"need 1 <= K ({max_shots}) <= example characters ({n_example_chars}) "
                         f"< characters ({len(chars)})")
    if draws < 1:
        raise ValueError("draws must be >= 1")
    faces, duplicates = discover_fonts(families)
    source_slug = font_slug(*source)
    by_slug = {face.slug: face for face in faces}
    if source_slug not in by_slug:
        family = source[0]
        package = families.get(family, ("", "the font's package"))[1]
        raise MissingData(f"source font {' '.join(source)} is not installed (apt-get install -y {package})")
    source_group = by_slug[source_slug].group
    installed_groups = sorted({face.group for face in faces})
    train, test = _choose_groups(installed_groups, source_group, test_groups, n_test_groups,
                                 train_groups, seed)

    glyphs, excluded = {}, {}
    for face in faces:
        if face.group not in train and face.group not in test:
            continue
        rendered, missing = render_face(face, chars, tile)
        if missing:
            excluded[face.slug] = {"file": str(face.path), "missing_or_too_big": "".join(missing)}
            continue
        glyphs[face.slug] = rendered
    if source_slug not in glyphs:
        raise MissingData(f"source font {source_slug}: {excluded[source_slug]}")
    train_fonts = sorted(s for s in glyphs if by_slug[s].group in train)
    test_fonts = sorted(s for s in glyphs if by_slug[s].group in test)
    if not test_fonts:
        raise MissingData(f"no usable font in the test groups {', '.join(test)}")

    order = np.random.default_rng([seed, _CHARS]).permutation(len(chars))
    chosen = set(order[:n_example_chars].tolist())
    example_chars = "".join(c for i, c in enumerate(chars) if i in chosen)
    test_chars = "".join(c for i, c in enumerate(chars) if i not in chosen)
    draw_record = {}
    for font in test_fonts:
        key = zlib.crc32(font.encode())  # a font's draws don't depend on which other fonts exist
        orders = [np.random.default_rng([seed, _DRAWS, key, d]).permutation(list(example_chars))
                  for d in range(draws)]
        draw_record[font] = ["".join(order[:max_shots]) for order in orders]

    used = {s: by_slug[s] for s in (*train_fonts, *test_fonts)}
    task = FewShotTask(tile, seed, chars, example_chars, test_chars, source_slug, train_fonts,
                       test_fonts, used, glyphs, draw_record)

    def record(face: FontFace) -> dict:
        font = load_font(face.path, tile)
        return {**font_record(face.path, font), "family": face.family, "style": face.style,
                "group": face.group, "package": face.package,
                "split": "train" if face.slug in train_fonts else "test",
                "glyphs_sha256": _pixel_sha256(np.stack([glyphs[face.slug][c] for c in chars]))}

    group_fonts = lambda names: {g: [s for s in used if used[s].group == g] for g in names}  # noqa: E731
    task.manifest = {
        "task": "fewshot", "format_version": FORMAT_VERSION, "tile": tile, "seed": seed,
        "versions": _versions(),
        "rendering": f"Pillow ImageFont, size round({GLYPH_SIZE_FRACTION}*tile) px, anchor 'mm', ink "
                     f"bounding box centred (integer offsets), black ink on white, margin {GLYPH_MARGIN} "
                     "px (benchmarks.tasks.generate.render_glyph); a font lacking a real glyph (not "
                     ".notdef) of any character, or whose glyph doesn't fit, is left out",
        "characters": {"all": chars, "examples": example_chars, "test": test_chars},
        "source": source_slug,
        "groups": {"train": group_fonts(train), "test": group_fonts(test),
                   "installed": installed_groups},
        "split": {"train": train_fonts, "test": test_fonts},
        "draws": {"shots": max_shots, "per_font": draw_record},
        "fonts": {s: record(used[s]) for s in sorted(used)},
        "excluded": excluded,
        "duplicates": duplicates,
        "families": {family: list(v) for family, v in families.items()},
        "counts": {"train_fonts": len(train_fonts), "test_fonts": len(test_fonts),
                   "train_images": len(train_fonts) * len(chars),
                   "test_images": len(test_fonts) * len(chars)},
    }
    return task


# --------------------------------------------------------------------------- write/read

def _write_fonts(folder: Path, fonts: Sequence[str], glyphs: Mapping[str, Mapping[str, np.ndarray]]) -> None:
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    for stale in sorted(p for p in folder.iterdir() if p.is_dir() and p.name not in fonts):
        if any(not f.name.endswith(".png") for f in stale.iterdir()):
            raise FileExistsError(f"{stale}: not a font folder of this task (files other than PNG)")
        shutil.rmtree(stale)  # a class folder left from another configuration would be a class
    for font in fonts:
        sub = folder / font
        sub.mkdir(exist_ok=True)
        wanted = {glyph_file(c) for c in glyphs[font]}
        for stale in sub.glob("*.png"):
            if stale.name not in wanted:
                stale.unlink()
        for char, array in sorted(glyphs[font].items()):
            Image.fromarray(array).save(sub / glyph_file(char), format="PNG")


def write_task(task: FewShotTask, out_dir: str | Path) -> Path:
    """``OUT/train/<font>/``, ``OUT/test/<font>/`` (8-bit PNG) and ``OUT/manifest.json``."""
    out = Path(out_dir)
    _write_fonts(out / "train", task.train_fonts, task.glyphs)
    _write_fonts(out / "test", task.test_fonts, task.glyphs)
    (out / "manifest.json").write_text(json.dumps(task.manifest, indent=1, sort_keys=True,
                                                  ensure_ascii=False) + "\n", encoding="utf-8")
    return out


def read_glyphs(folder: str | Path) -> dict[str, dict[str, np.ndarray]]:
    """``{font: {char: image}}`` from a ``train/`` or ``test/`` folder written by :func:`write_task`."""
    from .generate import glyph_char

    return {sub.name: {glyph_char(p.name): read_image(p) for p in sorted(sub.glob("*.png"))}
            for sub in sorted(Path(folder).iterdir()) if sub.is_dir()}


# ---------------------------------------------------------------------------- baselines

def mean_l1(a: Mapping[str, np.ndarray], b: Mapping[str, np.ndarray], chars: str) -> float:
    """Mean absolute grey-level difference over ``chars`` of two fonts' glyphs."""
    return float(np.mean([np.abs(a[c].astype(np.float64) - b[c].astype(np.float64)).mean() for c in chars]))


def nearest_font(examples: Mapping[str, np.ndarray],
                 candidates: Mapping[str, Mapping[str, np.ndarray]]) -> str:
    """The candidate font whose glyphs of the example characters are closest in mean L1
    to ``examples`` (``{char: glyph}``); ties go to the first name in sorted order."""
    if not examples:
        raise ValueError("the nearest-font baseline needs at least one example glyph")
    chars = "".join(examples)
    distances = {name: mean_l1(examples, candidates[name], chars) for name in sorted(candidates)}
    return min(distances, key=distances.get)


def identity_prediction(task: FewShotTask) -> dict[str, np.ndarray]:
    """The source font's glyphs of the test characters."""
    return {c: task.glyphs[task.source][c] for c in task.test_chars}


def nearest_font_prediction(task: FewShotTask, font: str, draw: int,
                            k: int) -> tuple[str, dict[str, np.ndarray]]:
    """``(chosen training font, its glyphs of the test characters)`` for unseen ``font``'s K-shot draw."""
    examples = {c: task.glyphs[font][c] for c in task.examples(font, draw, k)}
    chosen = nearest_font(examples, {f: task.glyphs[f] for f in task.train_fonts})
    return chosen, {c: task.glyphs[chosen][c] for c in task.test_chars}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.tasks.fewshot",
                                     description=__doc__.split("\n\n")[0])
    add_task_arguments(parser)
    parser.add_argument("--out", required=True, type=Path)
    args = parser.parse_args(argv)
    start = time.perf_counter()
    try:
        task = task_from_arguments(args)
    except MissingData as error:
        print(f"fewshot: FAILED: {error}", file=sys.stderr)
        return 1
    folder = write_task(task, args.out)
    print(f"{task.describe()} -> {folder} ({time.perf_counter() - start:.1f} s)")
    return 0


def add_task_arguments(parser: argparse.ArgumentParser) -> None:
    """The task's options, shared with ``python -m benchmarks.fewshot``."""
    parser.add_argument("--tile", type=int, default=DEFAULT_TILE,
                        help=f"glyph tile side (default {DEFAULT_TILE})")
    parser.add_argument("--seed", type=int, default=0, help="split / draw seed (default 0)")
    parser.add_argument("--test-groups", nargs="+", metavar="GROUP",
                        help="family groups to hold out (default: --n-test-groups drawn with the seed)")
    parser.add_argument("--n-test-groups", type=int, default=N_TEST_GROUPS,
                        help="number of held-out family groups when none are named "
                             f"(default {N_TEST_GROUPS})")
    parser.add_argument("--train-groups", nargs="+", metavar="GROUP",
                        help="training family groups (default: all others; the source font's is always in)")
    parser.add_argument("--chars", default=CHARACTERS, help="characters (default A-Z a-z 0-9)")
    parser.add_argument("--example-chars", type=int, default=N_EXAMPLE_CHARS,
                        help=f"characters K-shot examples are drawn from (default {N_EXAMPLE_CHARS})")
    parser.add_argument("--draws", type=int, default=DRAWS,
                        help=f"seeded example draws per unseen font (default {DRAWS})")


def task_from_arguments(args: argparse.Namespace, max_shots: int = max(SHOTS)) -> FewShotTask:
    return build_task(tile=args.tile, seed=args.seed, test_groups=args.test_groups,
                      n_test_groups=args.n_test_groups, train_groups=args.train_groups, chars=args.chars,
                      n_example_chars=args.example_chars, draws=args.draws, max_shots=max_shots)


if __name__ == "__main__":
    sys.exit(main())
