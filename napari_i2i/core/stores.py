"""Results written band by band to disk: OME-Zarr stores and tiled TIFFs.

A :class:`PendingOutput` is where :func:`napari_i2i.core.translate.run_translation`
writes one result (``outputs=``) without holding it in memory: a zarr array under a
temporary name next to the output. :meth:`PendingOutput.finish` completes it —
an OME-Zarr (``.zarr``, ``.ome.zarr``) gets its downsampled levels (2×2 means,
level after level, until the short side is at most :data:`PYRAMID_MIN_SIDE`)
and OME-NGFF 0.5 ``multiscales`` metadata (axes, pixel size and unit as
``coordinateTransformations`` scale); a TIFF is written tile by tile from the
store (``resolution`` tags, or OME-XML ``PhysicalSizeX/Y`` for ``.ome.tif``) — and
renames it into place; :meth:`PendingOutput.discard` removes it. A failed or
cancelled job so leaves no partial output.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import tifffile

from napari_i2i.core.layer_data import PixelSize

if TYPE_CHECKING:
    import zarr

__all__ = ["CHUNK", "PYRAMID_MIN_SIDE", "PendingOutput", "is_store", "tiff_keywords", "write_ome_zarr"]

CHUNK = 512  # Y/X chunk side of written stores and tile side of written TIFFs (a multiple of 16)
PYRAMID_MIN_SIDE = 256  # OME-Zarr levels are added until the short side is at most this
# OME-Zarr axis types of known axis names (others get none).
AXIS_TYPES = {"t": "time", "c": "channel", "z": "space", "y": "space", "x": "space"}
# PixelSize units → the abbreviations OME-XML uses.
OME_XML_UNITS = {"micrometer": "µm", "nanometer": "nm", "millimeter": "mm", "centimeter": "cm", "meter": "m"}


def is_store(path: str | Path) -> bool:
    """Whether *path* names a zarr store (``.zarr`` or ``.ome.zarr``)."""
    return Path(path).suffix.lower() == ".zarr"


def _partial(path: Path, suffix: str) -> Path:
    return path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.partial{suffix}")


def tiff_keywords(path: Path, shape: tuple[int, ...], rgb: bool, pixel_size: PixelSize | None) -> dict:
    """``tifffile.imwrite`` keywords that keep the pixel size: OME-XML for ``.ome.tif(f)``,
    else resolution tags in micrometres."""
    keywords: dict = {"photometric": "rgb" if rgb else "minisblack"}
    if pixel_size is None:
        return keywords
    if path.name.lower().endswith((".ome.tif", ".ome.tiff")):
        unit = OME_XML_UNITS.get(pixel_size.unit, pixel_size.unit)
        spatial = "YXS" if rgb else "YX"
        axes = "Q" * (len(shape) - len(spatial)) + spatial
        return keywords | {"ome": True, "metadata": {
            "axes": axes, "PhysicalSizeX": pixel_size.x, "PhysicalSizeY": pixel_size.y,
            "PhysicalSizeXUnit": unit, "PhysicalSizeYUnit": unit}}
    to_micrometres = {"nanometer": 1e-3, "micrometer": 1.0, "millimeter": 1e3, "centimeter": 1e4, "meter": 1e6}
    scale = to_micrometres.get(pixel_size.unit)
    if scale is None:
        return keywords
    return keywords | {"resolution": (1 / (pixel_size.x * scale), 1 / (pixel_size.y * scale)),
                       "resolutionunit": "MICROMETER"}


def _chunks(shape: tuple[int, ...], spatial_end: int) -> tuple[int, ...]:
    """One plane per chunk along leading axes, CHUNK² along Y/X (at ``spatial_end - 2``, ``- 1``)."""
    chunks = [1] * len(shape)
    chunks[spatial_end - 2 :] = shape[spatial_end - 2 :]
    chunks[spatial_end - 2] = min(CHUNK, shape[spatial_end - 2])
    chunks[spatial_end - 1] = min(CHUNK, shape[spatial_end - 1])
    return tuple(chunks)


class PendingOutput:
    """One result of ``shape`` (as :func:`~napari_i2i.core.layer_data.to_image_array` lays it out:
    RGB colours last) being written to *path*; assign bands with ``pending[index] = values``
    (write only: ``array`` is the store, colours before Y/X in an OME-Zarr, whose axes are
    ``dim_0, …, [c,] y, x``).
    """

    def __init__(self, path: Path, shape: tuple[int, ...], dtype: np.dtype, rgb: bool,
                 pixel_size: PixelSize | None = None) -> None:
        import zarr  # here: it takes seconds to import

        self.path, self.shape, self.dtype, self.rgb = Path(path), tuple(shape), np.dtype(dtype), rgb
        self.pixel_size = pixel_size
        self.ndim = len(self.shape)
        self._channels_first = rgb and is_store(path)  # OME-NGFF puts channels before Y/X
        self._store = _partial(self.path, ".zarr")
        stored = self._stored_shape(self.shape)
        self._group = zarr.open_group(self._store, mode="w-") if is_store(path) else None
        chunks = _chunks(stored, len(stored) - (1 if rgb and not self._channels_first else 0))
        create = self._group.create_array if self._group is not None else None
        self.array = (create("0", shape=stored, dtype=self.dtype, chunks=chunks, fill_value=0) if create
                      else zarr.create_array(self._store, shape=stored, dtype=self.dtype, chunks=chunks,
                                             fill_value=0))

    def _stored_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        return (*shape[:-3], shape[-1], *shape[-3:-1]) if self._channels_first else shape

    def __setitem__(self, index: tuple, values: np.ndarray) -> None:
        if self._channels_first:  # (…, rows, cols, colours) → (…, colours, rows, cols)
            index, values = (*index[:-3], index[-1], *index[-3:-1]), np.moveaxis(values, -1, -3)
        self.array[index] = values

    def finish(self) -> Path:
        """Complete the output (pyramid and metadata, or the TIFF) and rename it into place."""
        try:
            if self._group is not None:
                _add_pyramid(self._group, self.dtype)
                self._group.attrs["ome"] = {"version": "0.5", "multiscales": [self._multiscales()]}
                _replace(self._store, self.path)
            else:
                written = _partial(self.path, self.path.suffix)
                try:
                    _write_tiled_tiff(written, self.array, self.rgb, self.pixel_size)
                    os.replace(written, self.path)
                finally:
                    written.unlink(missing_ok=True)
                    shutil.rmtree(self._store, ignore_errors=True)
        except BaseException:
            self.discard()
            raise
        return self.path

    def discard(self) -> None:
        """Remove what was written (a failed or cancelled job)."""
        shutil.rmtree(self._store, ignore_errors=True)

    def _multiscales(self) -> dict:
        ndim = self.array.ndim
        leading = ndim - 2 - self._channels_first
        names = [f"dim_{k}" for k in range(leading)] + ["c"] * self._channels_first + ["y", "x"]
        unit = None if self.pixel_size is None else self.pixel_size.unit
        axes = []
        for name in names:
            axis = {"name": name} | ({"type": AXIS_TYPES[name]} if name in AXIS_TYPES else {})
            axes.append(axis | ({"unit": unit} if unit and name in ("y", "x") else {}))
        size = (1.0, 1.0) if self.pixel_size is None else (self.pixel_size.y, self.pixel_size.x)
        datasets = [{"path": str(level), "coordinateTransformations": [
            {"type": "scale", "scale": [1.0] * (ndim - 2) + [size[0] * 2**level, size[1] * 2**level]}]}
            for level in range(len(list(self._group.array_keys())))]
        return {"name": self.path.name.split(".")[0], "axes": axes, "datasets": datasets}


def _add_pyramid(group: zarr.Group, dtype: np.dtype) -> None:
    """Levels 1, 2, … as 2×2 means of the level before, computed chunk by chunk."""
    import dask.array as da

    level = 0
    while min(group[str(level)].shape[-2:]) > PYRAMID_MIN_SIDE:
        previous = da.from_zarr(group[str(level)])
        ndim = previous.ndim
        smaller = da.coarsen(np.mean, previous.astype(np.float64), {ndim - 2: 2, ndim - 1: 2}, trim_excess=True)
        if np.issubdtype(dtype, np.integer):
            smaller = da.rint(smaller)
        smaller = smaller.astype(dtype)
        level += 1
        target = group.create_array(str(level), shape=smaller.shape, dtype=dtype,
                                    chunks=_chunks(smaller.shape, ndim), fill_value=0)
        da.store(smaller.rechunk(target.chunks), target, lock=False)


def _replace(temporary: Path, path: Path) -> None:
    """Move *temporary* to *path*, replacing a store or file there (``--overwrite`` was checked)."""
    if path.is_dir():
        aside = _partial(path, ".old")
        os.replace(path, aside)
        os.replace(temporary, path)
        shutil.rmtree(aside, ignore_errors=True)
    else:
        os.replace(temporary, path)


def _tiles(array: zarr.Array, rgb: bool) -> Iterator[np.ndarray]:
    """The tiles of every page, row by row, as tifffile's tile iterator wants them."""
    spatial = array.shape[-3:-1] if rgb else array.shape[-2:]
    leading = array.shape[: array.ndim - (3 if rgb else 2)]
    for page in np.ndindex(*leading):
        for top in range(0, spatial[0], CHUNK):
            for left in range(0, spatial[1], CHUNK):
                yield np.asarray(array[page + (slice(top, top + CHUNK), slice(left, left + CHUNK))])


def _write_tiled_tiff(path: Path, array: zarr.Array, rgb: bool, pixel_size: PixelSize | None) -> None:
    tifffile.imwrite(path, _tiles(array, rgb), shape=array.shape, dtype=array.dtype, tile=(CHUNK, CHUNK),
                     **tiff_keywords(path, array.shape, rgb, pixel_size))


def write_ome_zarr(path: Path, data: np.ndarray, rgb: bool, pixel_size: PixelSize | None = None) -> None:
    """Write an array in memory as an OME-Zarr (the small-job path of ``image_io.write_images``)."""
    pending = PendingOutput(path, data.shape, data.dtype, rgb, pixel_size)
    try:
        pending[(slice(None),) * data.ndim] = data
    except BaseException:
        pending.discard()
        raise
    pending.finish()
