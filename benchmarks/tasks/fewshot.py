"""Few-shot glyph task (FUNIT, issue 4): the same characters in many fonts, split by family.

Every chosen font is a class: its glyphs of ``A–Z a–z 0–9``, rendered as the
``glyphs`` task renders them (:func:`benchmarks.tasks.fonts.render_glyph`:
Pillow at ``round(0.6·tile)`` px, ink centred on a white tile, black ink,
8-bit gray). Fonts are grouped into *family groups*: a family (Pillow's
``getname()[0]``, e.g. ``Nimbus Sans``) together with its width/optical
variants and metric clones (Nimbus Sans, Nimbus Sans Narrow, FreeSans,
Liberation Sans (Narrow) are one group, "Helvetica"), see :data:`FAMILIES`.
Whole groups go to training or test, so no style (Bold, Italic, …) or clone
of a test family is ever seen in training.

Layout written by :func:`write_task`::

    DIR/train/<font>/uXXXX.png   training fonts (one folder = one class, for
                                 trainers.run.make_settings / train funit --classes)
    DIR/test/<font>/uXXXX.png    unseen fonts: every character (examples and targets)
    DIR/manifest.json            fonts (files, hashes, groups), split, characters, draws

Characters are split (seeded) into *example characters* (where the K example
glyphs of an unseen font come from) and *test characters* (translated from the
source font, a fixed training font, and scored against the unseen font's true
glyphs); the two sets are disjoint. For each unseen font there are ``draws``
seeded orderings of the example characters; K-shot uses the first K of a draw,
so the 1-shot example is one of the 5-shot examples.

Baselines (no training, no test targets used; ``fewshot_baselines.py``): the source
font's glyph, and the glyph of the training font closest in L1 to the unseen
font on the K example characters.

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

from .fonts import (GLYPH_MARGIN, GLYPH_SIZE_FRACTION, FontFace, discover_fonts, font_record, font_slug,
                    glyph_char, glyph_file, load_font, render_face)
from .task import MissingData, pixel_sha256, read_image, versions

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
    chars = _checked_characters(tile, chars, n_example_chars, draws, max_shots)
    faces, duplicates = discover_fonts(families)
    source_slug = font_slug(*source)
    by_slug = {face.slug: face for face in faces}
    if source_slug not in by_slug:
        package = families.get(source[0], ("", "the font's package"))[1]
        raise MissingData(f"source font {' '.join(source)} is not installed (apt-get install -y {package})")
    installed_groups = sorted({face.group for face in faces})
    train, test = _choose_groups(installed_groups, by_slug[source_slug].group, test_groups, n_test_groups,
                                 train_groups, seed)
    glyphs, excluded = _render_faces([face for face in faces if face.group in train or face.group in test],
                                     chars, tile)
    if source_slug not in glyphs:
        raise MissingData(f"source font {source_slug}: {excluded[source_slug]}")
    train_fonts = sorted(s for s in glyphs if by_slug[s].group in train)
    test_fonts = sorted(s for s in glyphs if by_slug[s].group in test)
    if not test_fonts:
        raise MissingData(f"no usable font in the test groups {', '.join(test)}")

    example_chars, test_chars = _split_characters(chars, n_example_chars, seed)
    draw_record = _draw_examples(test_fonts, example_chars, draws, max_shots, seed)
    used = {s: by_slug[s] for s in (*train_fonts, *test_fonts)}
    task = FewShotTask(tile, seed, chars, example_chars, test_chars, source_slug, train_fonts,
                       test_fonts, used, glyphs, draw_record)
    task.manifest = _manifest(task, {"train": train, "test": test, "installed": installed_groups},
                              max_shots, excluded, duplicates, families)
    return task


def _checked_characters(tile: int, chars: str, n_example_chars: int, draws: int, max_shots: int) -> str:
    """``chars`` without repeats, in order, once the sizes are known to fit together."""
    if tile < 16:
        raise ValueError("the few-shot glyph task needs --tile >= 16")
    chars = "".join(dict.fromkeys(chars))
    if not 1 <= max_shots <= n_example_chars < len(chars):
        raise ValueError(f"need 1 <= K ({max_shots}) <= example characters ({n_example_chars}) "
                         f"< characters ({len(chars)})")
    if draws < 1:
        raise ValueError("draws must be >= 1")
    return chars


def _render_faces(faces: Sequence[FontFace], chars: str,
                  tile: int) -> tuple[dict[str, dict[str, np.ndarray]], dict[str, dict]]:
    """``(glyphs per usable face, excluded faces with the characters they lack)``."""
    glyphs, excluded = {}, {}
    for face in faces:
        rendered, missing = render_face(face, chars, tile)
        if missing:
            excluded[face.slug] = {"file": str(face.path), "missing_or_too_big": "".join(missing)}
        else:
            glyphs[face.slug] = rendered
    return glyphs, excluded


def _split_characters(chars: str, n_example_chars: int, seed: int) -> tuple[str, str]:
    """``(example characters, test characters)``: a seeded, disjoint split, each in ``chars`` order."""
    order = np.random.default_rng([seed, _CHARS]).permutation(len(chars))
    chosen = set(order[:n_example_chars].tolist())
    return ("".join(c for i, c in enumerate(chars) if i in chosen),
            "".join(c for i, c in enumerate(chars) if i not in chosen))


def _draw_examples(test_fonts: Sequence[str], example_chars: str, draws: int, max_shots: int,
                   seed: int) -> dict[str, list[str]]:
    """Per unseen font, ``draws`` seeded orderings of the example characters (first ``max_shots``)."""
    record = {}
    for font in test_fonts:
        key = zlib.crc32(font.encode())  # a font's draws don't depend on which other fonts exist
        orders = [np.random.default_rng([seed, _DRAWS, key, d]).permutation(list(example_chars))
                  for d in range(draws)]
        record[font] = ["".join(order[:max_shots]) for order in orders]
    return record


def _manifest(task: FewShotTask, groups: Mapping[str, list[str]], max_shots: int, excluded: dict,
              duplicates: list[dict], families: Mapping[str, tuple[str, str]]) -> dict:
    """What ``manifest.json`` records: fonts with hashes, groups, split, characters, draws."""
    def record(face: FontFace) -> dict:
        font = load_font(face.path, task.tile)
        return {**font_record(face.path, font), "family": face.family, "style": face.style,
                "group": face.group, "package": face.package,
                "split": "train" if face.slug in task.train_fonts else "test",
                "glyphs_sha256": pixel_sha256(np.stack([task.glyphs[face.slug][c] for c in task.chars]))}

    def group_fonts(names: Sequence[str]) -> dict[str, list[str]]:
        return {g: [s for s in task.faces if task.faces[s].group == g] for g in names}

    return {
        "task": "fewshot", "format_version": FORMAT_VERSION, "tile": task.tile, "seed": task.seed,
        "versions": versions(),
        "rendering": f"Pillow ImageFont, size round({GLYPH_SIZE_FRACTION}*tile) px, anchor 'mm', ink "
                     f"bounding box centred (integer offsets), black ink on white, margin {GLYPH_MARGIN} "
                     "px (benchmarks.tasks.generate.render_glyph); a font lacking a real glyph (not "
                     ".notdef) of any character, or whose glyph doesn't fit, is left out",
        "characters": {"all": task.chars, "examples": task.example_chars, "test": task.test_chars},
        "source": task.source,
        "groups": {"train": group_fonts(groups["train"]), "test": group_fonts(groups["test"]),
                   "installed": groups["installed"]},
        "split": {"train": task.train_fonts, "test": task.test_fonts},
        "draws": {"shots": max_shots, "per_font": task.draws},
        "fonts": {s: record(task.faces[s]) for s in sorted(task.faces)},
        "excluded": excluded,
        "duplicates": duplicates,
        "families": {family: list(v) for family, v in families.items()},
        "counts": {"train_fonts": len(task.train_fonts), "test_fonts": len(task.test_fonts),
                   "train_images": len(task.train_fonts) * len(task.chars),
                   "test_images": len(task.test_fonts) * len(task.chars)},
    }


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
    return {sub.name: {glyph_char(p.name): read_image(p) for p in sorted(sub.glob("*.png"))}
            for sub in sorted(Path(folder).iterdir()) if sub.is_dir()}


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
