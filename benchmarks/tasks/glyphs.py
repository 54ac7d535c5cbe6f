"""The ``glyphs`` task: A = a character in font A (DejaVu Sans), B = the same character
in font B (a serif font, see ``FONT_B_CANDIDATES``), 1 channel each.

The three splits use disjoint character sets, so test characters are unseen in training.
"""

from __future__ import annotations

import unicodedata
from pathlib import Path

import numpy as np

from .fonts import (GLYPH_MARGIN, GLYPH_SIZE_FRACTION, find_font, font_record, glyph_char, glyph_file,
                    load_font, notdef_glyph, real_glyph)
from .task import SPLITS, Task, split_indices

#: (file name, Debian package); the first one found is used.
FONT_A_CANDIDATES = (("DejaVuSans.ttf", "fonts-dejavu-core"),)
FONT_B_CANDIDATES = (
    ("NimbusRoman-Regular.otf", "fonts-urw-base35"),
    ("LiberationSerif-Regular.ttf", "fonts-liberation"),
    ("FreeSerif.ttf", "fonts-freefont-ttf"),
    ("DejaVuSerif.ttf", "fonts-dejavu-core"),
)
#: Code-point ranges drawn from: printable ASCII, Latin-1 + Latin Extended-A letters,
#: Greek capitals and small letters, basic Cyrillic.
GLYPH_RANGES = ((0x21, 0x7E), (0xC0, 0x17F), (0x391, 0x3C9), (0x410, 0x44F))


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
    idx_a, idx_b, idx_test = split_indices(len(chars), np.random.default_rng(seed))
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
