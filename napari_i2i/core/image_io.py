"""Reading and writing image files for the CLI: TIFF via tifffile, PNG/JPEG via Pillow."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tifffile
from PIL import Image, UnidentifiedImageError

from napari_i2i.core.layer_data import ImageData

TIFF_SUFFIXES = {".tif", ".tiff"}
PILLOW_SUFFIXES = {".png", ".jpg", ".jpeg"}
SUFFIXES = TIFF_SUFFIXES | PILLOW_SUFFIXES


class ImageFileError(Exception):
    """An image file that cannot be read or written, with the file named."""


def read_image(path: str | Path) -> ImageData:
    """An image file as :class:`ImageData`; RGB when its last axis holds 3–4 colours."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise ImageFileError(f"{path}: unsupported image type; use one of {sorted(SUFFIXES)}")
    if not path.is_file():
        raise ImageFileError(f"{path}: no such file")
    try:
        if suffix in TIFF_SUFFIXES:
            with tifffile.TiffFile(path) as tif:
                data = tif.asarray()
                photometric = tif.pages[0].photometric
            rgb = data.ndim >= 3 and data.shape[-1] in (3, 4) and photometric == tifffile.PHOTOMETRIC.RGB
        else:
            with Image.open(path) as image:
                if image.mode in ("P", "PA", "CMYK", "YCbCr", "LAB", "HSV"):
                    image = image.convert("RGBA" if "A" in image.mode or "transparency" in image.info else "RGB")
                elif image.mode in ("1", "LA"):
                    image = image.convert("L")
                data = np.asarray(image)
            rgb = data.ndim == 3
    except (OSError, ValueError, UnidentifiedImageError, tifffile.TiffFileError) as error:
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
