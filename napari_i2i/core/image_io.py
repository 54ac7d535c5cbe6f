"""Reading and writing image files: TIFF via tifffile, PNG/JPEG via Pillow, zarr stores via zarr.

Reading gives the array and RGB flag that the rules of
:mod:`napari_i2i.core.layer_data` expect, for inference and training alike:
PNG/JPEG colour is RGB; a TIFF is RGB when its photometric tag says so,
planar ``(…, 3, Y, X)`` or interleaved; its colours are then put on the last
axis, as napari has them. Other TIFF samples per pixel (``Y, X, S``) are
channels and go before ``Y, X``. :func:`image_header` gives the same shape
and flag (and the dtype) from the file's header alone, for checks before decoding.

Every read checks the header against a pixel limit before decoding
(:data:`~napari_i2i.core.constants.DEFAULT_MAX_PIXELS`); Pillow's own
decompression-bomb check and its warning are replaced by this one. Writing
goes to a temporary name in the output's folder, renamed when every file of
the call is complete: a failed or interrupted write leaves no partial file.

TIFFs over :data:`~napari_i2i.core.lazy_images.LAZY_ABOVE_PIXELS` and zarr /
OME-Zarr stores (``.zarr`` folders) are opened lazily
(:mod:`napari_i2i.core.lazy_images`), read window by window by the translation.
A TIFF's or store's pixel size is read with the image and written with the
result (TIFF resolution tags, OME-XML for ``.ome.tif``, OME-Zarr scale), and so
are its axis names and channel names (:mod:`napari_i2i.core.image_metadata`:
OME-XML axes and ``Channel`` names for ``.ome.tif``, OME-Zarr axes and ``omero``).
"""

from __future__ import annotations

import os
import shutil
import threading
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tifffile
from PIL import Image, UnidentifiedImageError

from napari_i2i.core.constants import DEFAULT_MAX_PIXELS, PILLOW_SUFFIXES, SUFFIXES, TIFF_SUFFIXES
from napari_i2i.core.errors import ImageFileError, TooManyPixelsError  # noqa: F401 (re-exported)
from napari_i2i.core.image_metadata import ImageMetadata, tiff_metadata
from napari_i2i.core.layer_data import ImageData, PixelSize
from napari_i2i.core.lazy_images import LAZY_ABOVE_PIXELS, open_tiff, open_zarr, tiff_pixel_size
from napari_i2i.core.stores import (  # noqa: F401 (output_files re-exported)
    file_suffix, is_store, output_files, save_pillow, tiff_keywords, write_ome_zarr,
)

__all__ = ["PILLOW_SUFFIXES", "SUFFIXES", "TIFF_SUFFIXES", "ImageFileError", "ImageHeader", "TooManyPixelsError",
           "check_writable", "image_header", "output_files", "read_header", "read_image", "write_image",
           "write_images"]

_PILLOW_GRAY = ("L", "I", "F")  # single-band modes after _pillow_mode ("I;16" and kin too)
_PILLOW_DTYPES = {"I": np.int32, "F": np.float32}  # others: uint8, and uint16 for "I;16…"
_DECODER_ERRORS = (OSError, ValueError, KeyError, UnidentifiedImageError, tifffile.TiffFileError)
_PILLOW_LIMIT = threading.Lock()  # guards Pillow's global MAX_IMAGE_PIXELS while we open a file


@dataclass(frozen=True)
class ImageHeader:
    """What a file's header says: the shape and RGB flag :func:`read_image` will give, and the dtype."""

    shape: tuple[int, ...]
    rgb: bool
    dtype: np.dtype

    @property
    def pixels(self) -> int:
        """Height × width × planes; the colours of an RGB pixel count once."""
        shape = self.shape[:-1] if self.rgb else self.shape
        return int(np.prod(shape, dtype=np.int64))


def megapixels(pixels: int) -> str:
    return f"{pixels / 1e6:.3g} megapixels"


def _checked_path(path: str | Path) -> Path:
    path = Path(path)
    if is_store(path):
        if not path.is_dir():
            raise ImageFileError(f"{path}: no such zarr store")
        return path
    if path.is_dir():
        raise ImageFileError(f"{path}: is a folder; give the image files in it (e.g. {path / '*.tif'})")
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


def _tiff_header(tif: tifffile.TiffFile) -> ImageHeader:
    source, target, rgb = _samples_move(tif)
    shape = list(tif.series[0].shape)
    shape.insert(target, shape.pop(source))
    return ImageHeader(tuple(shape), rgb, np.dtype(tif.series[0].dtype))


def _pillow_header(image: Image.Image) -> ImageHeader:
    mode = _pillow_mode(image) or image.mode
    width, height = image.size
    gray = mode in _PILLOW_GRAY or mode.startswith("I;")
    dtype = np.uint16 if mode.startswith("I;16") else _PILLOW_DTYPES.get(mode, np.uint8)
    shape = (height, width) if gray else (height, width, Image.getmodebands(mode))
    return ImageHeader(shape, not gray, np.dtype(dtype))


def _open_pillow(path: Path) -> Image.Image:
    """``Image.open`` (which reads the header only) without Pillow's bomb check and warning."""
    with _PILLOW_LIMIT:
        saved, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
        try:
            return Image.open(path)
        finally:
            Image.MAX_IMAGE_PIXELS = saved


def _within_limit(path: Path, header: ImageHeader, max_pixels: int | None) -> ImageHeader:
    if max_pixels is not None and header.pixels > max_pixels:
        size = "×".join(str(n) for n in (header.shape[:-1] if header.rgb else header.shape))
        raise TooManyPixelsError(
            f"{path}: {size} is {megapixels(header.pixels)}, over the limit of {megapixels(max_pixels)}"
        )
    return header


def image_header(path: str | Path, max_pixels: int | None = None) -> ImageHeader:
    """Shape, RGB flag and dtype of an image file from its header alone, as :func:`read_image`
    gives them; over ``max_pixels`` (None: no limit) it raises :class:`TooManyPixelsError`."""
    path = _checked_path(path)
    try:
        if is_store(path):
            image = open_zarr(path)
            header = ImageHeader(tuple(image.data.shape), False, np.dtype(image.data.dtype))
        elif _is_tiff(path):
            with tifffile.TiffFile(path) as tif:
                header = _tiff_header(tif)
        else:
            with _open_pillow(path) as image:
                header = _pillow_header(image)
    except _DECODER_ERRORS as error:
        raise ImageFileError(f"{path}: cannot read image: {error}") from None
    return _within_limit(path, header, max_pixels)


def read_header(path: str | Path) -> tuple[tuple[int, ...], bool]:
    """Shape and RGB flag of an image file from its header alone, as :func:`read_image` gives them."""
    header = image_header(path)
    return header.shape, header.rgb


def read_image(path: str | Path, max_pixels: int | None = DEFAULT_MAX_PIXELS,
               lazy: bool | None = None) -> ImageData:
    """An image file as :class:`ImageData`, colours or channels placed as the module says;
    refused from its header, before decoding, over ``max_pixels`` (None: no limit).
    ``lazy``: open a TIFF lazily (None: above LAZY_ABOVE_PIXELS); stores always are."""
    path = _checked_path(path)
    pixel_size = metadata = None
    try:
        if is_store(path):
            image = open_zarr(path)
            _within_limit(path, ImageHeader(tuple(image.data.shape), False, image.data.dtype), max_pixels)
            return image
        if _is_tiff(path):
            with tifffile.TiffFile(path) as tif:
                header = _within_limit(path, _tiff_header(tif), max_pixels)
                source, target, rgb = _samples_move(tif)
                if lazy or (lazy is None and header.pixels > LAZY_ABOVE_PIXELS):
                    return open_tiff(path, tif, (source, target), rgb)
                data = np.moveaxis(tif.asarray(), source, target)
                pixel_size, metadata = tiff_pixel_size(tif), tiff_metadata(tif, (source, target))
        else:
            with _open_pillow(path) as image:
                _within_limit(path, _pillow_header(image), max_pixels)
                mode = _pillow_mode(image)
                data = np.asarray(image.convert(mode) if mode else image)
            rgb = data.ndim == 3
    except _DECODER_ERRORS as error:
        raise ImageFileError(f"{path}: cannot read image: {error}") from None
    return ImageData(data=data, name=path.stem, rgb=rgb, pixel_size=pixel_size, image_metadata=metadata)


def check_writable(path: str | Path, dtype: np.dtype, rgb: bool) -> None:
    """Refuse data of ``dtype`` (RGB or not) that the file type of *path* cannot hold."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise ImageFileError(f"{path}: unsupported output type; use one of {sorted(SUFFIXES)}")
    if suffix in TIFF_SUFFIXES or is_store(path):
        return
    if suffix in {".jpg", ".jpeg"} and dtype != np.uint8:
        instead = "a .tif or .png" if dtype == np.uint16 and not rgb else "a .tif"
        raise ImageFileError(f"{path}: JPEG holds 8-bit images only, this output is {'RGB ' if rgb else ''}"
                             f"{dtype}; write {instead}")
    if dtype not in (np.uint8, np.uint16) or (rgb and dtype != np.uint8):
        raise ImageFileError(f"{path}: {'RGB ' if rgb else ''}{dtype} data does not fit {suffix}; write a .tif")


def _planes(path: Path, data: np.ndarray, rgb: bool) -> Iterator[tuple[Path, np.ndarray, bool]]:
    if path.suffix.lower() in TIFF_SUFFIXES or is_store(path):
        yield path, data, rgb
        return
    leading = data.shape[: data.ndim - (3 if rgb else 2)]
    for target, index in zip(output_files(path, leading), np.ndindex(*leading)):
        yield target, data[index], rgb


def _save(path: Path, data: np.ndarray, rgb: bool, pixel_size: PixelSize | None = None,
          metadata: ImageMetadata | None = None) -> None:
    if is_store(path):
        write_ome_zarr(path, data, rgb, pixel_size, metadata)
    elif path.suffix.lower() in TIFF_SUFFIXES:
        tifffile.imwrite(path, data, **tiff_keywords(path, data.shape, rgb, pixel_size, metadata))
    else:
        save_pillow(path, data)


@contextmanager
def _removed_on_failure(paths: list[Path]) -> Iterator[None]:
    try:
        yield
    except BaseException:  # also Ctrl-C: no half-written file stays behind
        for path in paths:
            if path.is_dir():  # a store
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
        raise


def write_images(items: Sequence[tuple[str | Path, np.ndarray, bool]],
                 pixel_sizes: Sequence[PixelSize | None] = (),
                 metadata: Sequence[ImageMetadata | None] = ()) -> list[Path]:
    """Write each ``(path, data, rgb)``; all files are written under temporary names first and
    renamed once every one is complete. Returns the files written (see :func:`output_files`).
    ``pixel_sizes`` and ``metadata`` (axes, channel names): per item, kept in TIFF and OME-Zarr
    outputs (missing or None: none)."""
    planned, kept = [], []
    for number, (path, data, rgb) in enumerate(items):
        check_writable(path, data.dtype, rgb)
        planes = list(_planes(Path(path), data, rgb))
        planned += planes
        keep = {"pixel_size": pixel_sizes[number] if number < len(pixel_sizes) else None,
                "metadata": metadata[number] if number < len(metadata) else None}
        kept += [{name: value for name, value in keep.items() if value is not None}] * len(planes)
    temporary = [target.with_name(f".{target.stem}.{uuid.uuid4().hex[:8]}.partial{file_suffix(target)}")
                 for target, _, _ in planned]
    with _removed_on_failure(temporary):
        for (target, plane, rgb), temp, keep in zip(planned, temporary, kept):
            target.parent.mkdir(parents=True, exist_ok=True)
            _save(temp, plane, rgb, **keep)  # nothing to keep: the plain call
        for (target, _, _), temp in zip(planned, temporary):
            if target.is_dir():  # a store being replaced (--overwrite)
                shutil.rmtree(target)
            os.replace(temp, target)
    return [target for target, _, _ in planned]


def write_image(path: str | Path, data: np.ndarray, rgb: bool) -> list[Path]:
    """Write *data*; PNG/JPEG hold one 2-D image, so stacks become one file per plane."""
    return write_images([(path, data, rgb)])
