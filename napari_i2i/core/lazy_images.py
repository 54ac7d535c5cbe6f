"""Images too large to read whole: opened lazily, read window by window.

TIFF and OME-TIFF (pyramidal or not) open through tifffile's zarr interface
(``tifffile.imread(path, aszarr=True, level=…)``), OME-Zarr and plain zarr
arrays through zarr v3 and the OME-NGFF ``multiscales`` metadata; both become
dask arrays, so nothing is decoded until a window is read (zarr and dask are
imported only then: they take seconds to import). A TIFF opens this
way above :data:`LAZY_ABOVE_PIXELS`; smaller ones are read whole as before.
The first pyramid level of at most :data:`~napari_i2i.core.layer_data.RANGE_SAMPLES`
values (else the coarsest) becomes the image's ``overview``, which intensity percentiles are
estimated from (:mod:`napari_i2i.core.layer_data`).

:class:`LazyPlane` hands :func:`napari_i2i.core.tiling.translate_tiled` one
padded window at a time, with the same reflected or replicated border values
as padding the whole plane.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import tifffile
import torch

from napari_i2i.core.image_metadata import OME_UNITS, ImageMetadata, tiff_metadata, zarr_metadata
from napari_i2i.core.layer_data import (
    RANGE_SAMPLES, ImageData, PixelSize, PlaneLayout, iter_planes, normalised, spatial_index,
)
from napari_i2i.core.tiling import TilePlan, padded_indices

if TYPE_CHECKING:
    import zarr

__all__ = ["LAZY_ABOVE_PIXELS", "LazyPlane", "ZarrPyramid", "lazy_planes", "open_tiff", "open_zarr",
           "open_zarr_levels", "planes_of", "tiff_pixel_size"]

# TIFFs of more pixels than this (height × width × planes) are opened lazily: 4096².
LAZY_ABOVE_PIXELS = 2**24

# TIFF resolution units → micrometres per unit.
_MICROMETRES_PER = {tifffile.RESUNIT.CENTIMETER: 1e4, tifffile.RESUNIT.INCH: 25400.0,
                    tifffile.RESUNIT.MILLIMETER: 1e3, tifffile.RESUNIT.MICROMETER: 1.0}


def tiff_pixel_size(tif: tifffile.TiffFile) -> PixelSize | None:
    """The pixel size an OME-TIFF's metadata or a TIFF's resolution tags give (None: none)."""
    if tif.is_ome and tif.ome_metadata:
        image = tifffile.xml2dict(tif.ome_metadata)["OME"]["Image"]
        pixels = (image[0] if isinstance(image, list) else image)["Pixels"]
        if "PhysicalSizeX" in pixels and "PhysicalSizeY" in pixels:
            unit = OME_UNITS.get(pixels.get("PhysicalSizeXUnit", "µm"), "micrometer")
            return PixelSize(float(pixels["PhysicalSizeY"]), float(pixels["PhysicalSizeX"]), unit)
    page = tif.pages[0]
    per_unit = _MICROMETRES_PER.get(page.resolutionunit)
    x_resolution, y_resolution = page.resolution
    if per_unit is None or not (x_resolution > 0 and y_resolution > 0):
        return None
    return PixelSize(per_unit / y_resolution, per_unit / x_resolution)


def _coarse_level(levels: list) -> object | None:
    """The first pyramid level past the full one of at most RANGE_SAMPLES values, else the coarsest."""
    for level in levels[1:]:
        if np.prod(level.shape, dtype=np.int64) <= RANGE_SAMPLES:
            return level
    return levels[-1] if len(levels) > 1 else None


def open_tiff(path: Path, tif: tifffile.TiffFile, samples: tuple[int, int], rgb: bool) -> ImageData:
    """*path* (whose header *tif* was read) as a lazy image: a dask array per pyramid level,
    samples moved from ``samples[0]`` to ``samples[1]`` as :mod:`napari_i2i.core.image_io` does."""
    import dask.array as da
    import zarr

    levels = [da.moveaxis(da.from_zarr(zarr.open(tifffile.imread(path, aszarr=True, series=0, level=level),
                                                 mode="r")), *samples)
              for level in range(len(tif.series[0].levels))]
    return ImageData(data=levels[0], name=path.stem, rgb=rgb, overview=_coarse_level(levels),
                     pixel_size=tiff_pixel_size(tif), image_metadata=tiff_metadata(tif, samples))


def _ome_attributes(group: zarr.Group) -> dict:
    attributes = group.attrs.asdict()
    return attributes.get("ome", attributes)  # OME-NGFF 0.5, else 0.4


def _multiscales(group: zarr.Group) -> dict | None:
    found = _ome_attributes(group).get("multiscales")
    return found[0] if found else None


def _zarr_pixel_size(multiscales: dict) -> PixelSize | None:
    axes = [axis if isinstance(axis, dict) else {"name": axis} for axis in multiscales.get("axes", [])]
    transforms = multiscales["datasets"][0].get("coordinateTransformations", [])
    scale = next((t["scale"] for t in transforms if t.get("type") == "scale"), None)
    if scale is None or len(axes) != len(scale) or [a["name"] for a in axes[-2:]] != ["y", "x"]:
        return None
    if "unit" not in axes[-1]:  # a scale without a unit counts pixels (e.g. a store written without a size)
        return None
    return PixelSize(float(scale[-2]), float(scale[-1]), axes[-1]["unit"])


@dataclass(frozen=True)
class ZarrPyramid:
    """An OME-Zarr image's levels as dask arrays (full resolution first), axis names, pixel size,
    and axis types and channel names (None: a plain zarr array)."""

    levels: list
    axes: list[str]
    pixel_size: PixelSize | None
    metadata: ImageMetadata | None = None


def open_zarr_levels(path: Path) -> ZarrPyramid:
    """The levels of an OME-Zarr image (its multiscales' datasets), or a plain zarr array as one level
    (axes ``dim_0, …``); ValueError for a zarr group without multiscales metadata."""
    import dask.array as da
    import zarr

    root = zarr.open(path, mode="r")
    if isinstance(root, zarr.Array):
        return ZarrPyramid([da.from_zarr(root)], [f"dim_{k}" for k in range(root.ndim)], None)
    multiscales = _multiscales(root)
    if multiscales is None:
        raise ValueError(f"{path}: a zarr group without OME-NGFF multiscales metadata")
    levels = [da.from_zarr(root[dataset["path"]]) for dataset in multiscales["datasets"]]
    axes = [axis["name"] if isinstance(axis, dict) else axis for axis in multiscales.get("axes", [])]
    metadata = zarr_metadata(multiscales, _ome_attributes(root).get("omero"), levels[0].shape)
    return ZarrPyramid(levels, axes or [f"dim_{k}" for k in range(levels[0].ndim)],
                       _zarr_pixel_size(multiscales), metadata)


def _channels_before_yx(pyramid: ZarrPyramid) -> ZarrPyramid:
    """*pyramid* with an OME-NGFF channel axis that only space axes (Z) follow moved just before
    Y/X, where the image rules look for channels (``C, Z, Y, X`` → ``Z, C, Y, X``)."""
    import dask.array as da

    metadata = pyramid.metadata
    channel = None if metadata is None else metadata.channel_axis
    ndim = pyramid.levels[0].ndim
    if channel is None or channel >= ndim - 3 or any(axis.type != "space" for axis in metadata.axes[channel + 1 :]):
        return pyramid
    order = [*range(channel), *range(channel + 1, ndim - 2), channel, ndim - 2, ndim - 1]
    axes = tuple(metadata.axes[axis] for axis in order)
    return ZarrPyramid([da.transpose(level, order) for level in pyramid.levels], [axis.name for axis in axes],
                       pyramid.pixel_size, ImageMetadata(axes, metadata.channel_names))


def open_zarr(path: Path) -> ImageData:
    """An OME-Zarr image or a plain zarr array as a lazy image.

    OME-Zarr keeps channels before Y/X, so it is never RGB here: a 3-channel image
    is the channel axis of a 3-channel model. A channel axis before Z is moved after it
    (:func:`_channels_before_yx`); the written result goes back to OME-NGFF's order.
    """
    pyramid = _channels_before_yx(open_zarr_levels(path))
    return ImageData(data=pyramid.levels[0], name=path.name.split(".")[0], overview=_coarse_level(pyramid.levels),
                     pixel_size=pyramid.pixel_size, image_metadata=pyramid.metadata)


class LazyPlane:
    """One plane of a lazy image, read and normalised window by window (a tiling ``WindowSource``)."""

    def __init__(self, image: ImageData, plan: PlaneLayout, index: tuple[int, ...], model_channels: int) -> None:
        self._image, self._plan, self._index, self._channels = image, plan, index, model_channels
        rgb = plan.channel_axis == len(plan.shape) - 1
        self.shape = (1, model_channels, *(plan.shape[-3:-1] if rgb else plan.shape[-2:]))

    def window(self, tiles: TilePlan, rows: tuple[int, int], cols: tuple[int, int]) -> torch.Tensor:
        row_at, col_at = padded_indices(tiles, 0, *rows), padded_indices(tiles, 1, *cols)
        first_row, first_col = int(row_at.min()), int(col_at.min())
        read = slice(first_row, int(row_at.max()) + 1), slice(first_col, int(col_at.max()) + 1)
        block = np.asarray(self._image.data[self._index + spatial_index(self._plan, *read)])
        take = (row_at[:, None] - first_row, col_at[None, :] - first_col)
        rgb = self._plan.channel_axis == len(self._plan.shape) - 1
        return normalised(block[take] if rgb else block[(..., *take)], self._plan, self._channels)

    def crop(self, height: int, width: int) -> torch.Tensor:
        """The top-left ``height × width`` of the plane (at most its size), e.g. to time the model."""
        rows, cols = slice(0, height), slice(0, width)
        return normalised(np.asarray(self._image.data[self._index + spatial_index(self._plan, rows, cols)]),
                          self._plan, self._channels)

    def whole(self) -> torch.Tensor:
        """The whole plane in memory (for matched styles, which compare it with the references)."""
        return normalised(np.asarray(self._image.data[self._index]), self._plan, self._channels)


def lazy_planes(image: ImageData, plan: PlaneLayout, model_channels: int) -> Iterator[LazyPlane]:
    """Each 2-D plane of a lazy image, as :func:`napari_i2i.core.layer_data.iter_planes` orders them."""
    for index in np.ndindex(*plan.stack_shape):
        yield LazyPlane(image, plan, index, model_channels)


def planes_of(image: ImageData, plan: PlaneLayout, model_channels: int) -> Iterator[torch.Tensor | LazyPlane]:
    """The planes of *image* to translate: tensors, or :class:`LazyPlane` for a lazy image."""
    return lazy_planes(image, plan, model_channels) if image.lazy else iter_planes(image, plan, model_channels)
