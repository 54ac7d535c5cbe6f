"""Installed fonts and glyph rendering, shared by the ``glyphs`` task and the few-shot task.

A glyph is a character drawn with Pillow at ``round(0.6·tile)`` px, its ink
centred on a white ``tile``² canvas, black ink, 8-bit gray.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .task import MissingData

#: Where :func:`font_files` looks, in this order.
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
#: A code point no font maps: its rendering is the font's .notdef glyph.
_UNMAPPED = "\U0010fffd"
#: Font files that :func:`font_files` finds (Pillow's FreeType opens these at any size).
FONT_SUFFIXES = (".ttf", ".otf")


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
    """A face's folder name: family and style, spaces as underscores."""
    return "_".join(f"{family} {style}".split()).replace("/", "-")


def discover_fonts(families: Mapping[str, tuple[str, str]]) -> tuple[list[FontFace], list[dict]]:
    """Installed faces of ``families`` (family -> (group, package)), sorted by slug,
    and the files skipped as duplicates.

    A (family, style) found in several files (e.g. a font installed twice) is
    taken from the first file in :func:`font_files` order.
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
