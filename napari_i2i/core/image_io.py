"""Reading and writing image files: TIFF via tifffile, PNG/JPEG via Pillow.

Reading gives the array and RGB flag that the rules of
:mod:`napari_i2i.core.layer_data` expect, for inference and training alike:
PNG/JPEG colour is RGB; a TIFF is RGB when its photometric tag says so,
planar ``(…, 3, Y, X)`` or interleaved; its colours are then put on the last
axis, as napari has them. Other TIFF samples per pixel (``Y, X, S``) are
channels and go before ``Y, X``. :func:`read_header` gives the same shape
and flag from the file's header alone, for checks before decoding.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tifffile
from PIL import Image, UnidentifiedImageError

from napari_i2i.core.layer_data import ImageData

TIFF_SUFFIXES = {".tif", ".tiff"}
PILLOW_SUFFIXES = {".png", ".jpg", ".jpeg"}
SUFFIXES = TIFF_SUFFIXES | PILLOW_SUFFIXES
_PILLOW_GRAY = ("L", "I", "F")  # single-band modes after _pillow_mode ("I;16" and kin too)
_DECODER_ERRORS = (OSError, ValueError, UnidentifiedImageError, tifffile.TiffFileError)


class ImageFileError(Exception):
    """An image file that cannot be read or written, with the file named."""


def _checked_path(path: str | Path) -> Path:
    path = Path(path)
    if path.suffix.lower() not in SUFFIXES:
        raise ImageFileError(f"{path}: unsupported image type; use one of {sorted(SUFFIXES)}")
    if not path.is_file():
        raise ImageFileError(f"{path}: no such file")
    return path


def _is_tiff(path: Path) -> bool:
    return path.suffix.lower() in TIFF_SUFFIXES


def _samples_move(tif: tifffile.TiffFile) -> tuple[int, int, bool]:
    """``(from, to)`` axes that put a TIFF's samples where the rules want them, and whether it is RGB."""
    series = tif.series[0]
    rgb = tif.pages[0].photometric == tifffile.PHOTOMETRIC.RGB
    if "S" not in series.axes:
        return 0, 0, rgb and series.shape[-1:] in ((3,), (4,))
    samples = series.axes.index("S")
    return samples, (len(series.shape) - 1 if rgb else len(series.shape) - 3), rgb


def _pillow_mode(image: Image.Image) -> str | None:
    """The mode a Pillow image is converted to before use (None: kept as it is)."""
    if image.mode in ("P", "PA", "CMYK", "YCbCr", "LAB", "HSV"):
        return "RGBA" if "A" in image.mode or "transparency" in image.info else "RGB"
    if image.mode in ("1", "LA"):
        return "L"
    return None


def read_header(path: str | Path) -> tuple[tuple[int, ...], bool]:
    """Shape and RGB flag of an image file from its header alone, as :func:`read_image` gives them."""
    path = _checked_path(path)
    try:
        if _is_tiff(path):
            with tifffile.TiffFile(path) as tif:
                source, target, rgb = _samples_move(tif)
                shape = list(tif.series[0].shape)
            shape.insert(target, shape.pop(source))
            return tuple(shape), rgb
        with Image.open(path) as image:
            mode = _pillow_mode(image) or image.mode
            width, height = image.size
    except _DECODER_ERRORS as error:
        raise ImageFileError(f"{path}: cannot read image: {error}") from None
    gray = mode in _PILLOW_GRAY or mode.startswith("I;")
    return ((height, width) if gray else (height, width, Image.getmodebands(mode))), not gray


def read_image(path: str | Path) -> ImageData:
    """An image file as :class:`ImageData`, colours or channels placed as the module says."""
    path = _checked_path(path)
    try:
        if _is_tiff(path):
            with tifffile.TiffFile(path) as tif:
                source, target, rgb = _samples_move(tif)
                data = np.moveaxis(tif.asarray(), source, target)
        else:
            with Image.open(path) as image:
                mode = _pillow_mode(image)
                data = np.asarray(image.convert(mode) if mode else image)
            rgb = data.ndim == 3
    except _DECODER_ERRORS as error:
        raise ImageFileError(f"{path}: cannot read image: {error}") from None
    return ImageData(data=data, name=path.stem, rgb=rgb)


def write_image(path: str | Path, data: np.ndarray, rgb: bool) -> list[Path]:
    """Write *data*; PNG/JPEG hold one 2-D image, so stacks become one file per plane."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise ImageFileError(f"{path}: unsupported output type; use one of {sorted(SUFFIXES)}")
    path.parent.mkdir(parents=True, exist_ok=True)
    if suffix in TIFF_SUFFIXES:
        tifffile.imwrite(path, data, photometric="rgb" if rgb else "minisblack")
        return [path]
    plane_ndim = 3 if rgb else 2
    leading = data.shape[: data.ndim - plane_ndim]
    if suffix in {".jpg", ".jpeg"} and data.dtype != np.uint8:
        raise ImageFileError(f"{path}: JPEG holds 8-bit images only; write a .tif or .png")
    if data.dtype not in (np.uint8, np.uint16) or (rgb and data.dtype != np.uint8):
        raise ImageFileError(
            f"{path}: {'RGB ' if rgb else ''}{data.dtype} data does not fit {suffix}; write a .tif"
        )
    written = []
    for index in np.ndindex(*leading):
        name = path if not leading else path.with_stem(path.stem + "".join(f"_{i}" for i in index))
        Image.fromarray(data[index]).save(name)
        written.append(name)
    return written
