"""Results written band by band to disk: OME-Zarr stores, tiled TIFFs, PNG/JPEG planes.

A :class:`PendingOutput` is where :func:`napari_i2i.core.translate.run_translation`
writes one result (``outputs=``) without holding it in memory: a zarr array under a
temporary name next to the output. :meth:`PendingOutput.finish` completes it —
an OME-Zarr (``.zarr``, ``.ome.zarr``) gets its downsampled levels (2×2 means,
level after level, until the short side is at most :data:`PYRAMID_MIN_SIDE`)
and OME-NGFF 0.5 ``multiscales`` metadata (:func:`multiscales`: axes, pixel size and
unit as ``coordinateTransformations`` scale, and a Z axis's spacing; the result's axis
names and types, in OME-NGFF's order, and ``omero`` channel labels when it is given
them); a TIFF is written tile by tile from the store (``resolution`` tags, or for
``.ome.tif`` OME-XML with ``PhysicalSizeX/Y/Z``, the axes and ``Channel`` names), PNG/JPEG files
plane by plane — and renames it into place;
:meth:`PendingOutput.discard` removes it. A failed or cancelled job so leaves no
partial output.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import tifffile
from PIL import Image

from napari_i2i.core.constants import PILLOW_SUFFIXES, TIFF_SUFFIXES
from napari_i2i.core.image_metadata import Axis, ImageMetadata, ome_tiff_axes
from napari_i2i.core.layer_data import PixelSize

if TYPE_CHECKING:
    import zarr

__all__ = ["CHUNK", "PYRAMID_MIN_SIDE", "PendingOutput", "file_suffix", "is_ome_tiff", "is_store", "multiscales",
           "tiff_keywords", "write_ome_zarr"]

CHUNK = 512  # Y/X chunk side of written stores and tile side of written TIFFs (a multiple of 16)
PYRAMID_MIN_SIDE = 256  # OME-Zarr levels are added until the short side is at most this
# OME-NGFF's order of axis types: time, then channel or any other, then space.
_AXIS_RANKS = {"time": 0, "space": 2}
# PixelSize units → the abbreviations OME-XML uses.
OME_XML_UNITS = {"micrometer": "µm", "nanometer": "nm", "millimeter": "mm", "centimeter": "cm", "meter": "m"}


def is_store(path: str | Path) -> bool:
    """Whether *path* names a zarr store (``.zarr`` or ``.ome.zarr``)."""
    return Path(path).suffix.lower() == ".zarr"


def _partial(path: Path, suffix: str) -> Path:
    return path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.partial{suffix}")


def output_files(path: str | Path, leading_shape: tuple[int, ...]) -> list[Path]:
    """The files written for *path* of data whose planes lie along ``leading_shape``: PNG/JPEG
    hold one 2-D image, so a stack is one file per plane (``NAME_i_j.png``); a TIFF or a store
    holds it all."""
    path = Path(path)
    if path.suffix.lower() in TIFF_SUFFIXES or is_store(path) or not leading_shape:
        return [path]
    return [path.with_stem(path.stem + "".join(f"_{i}" for i in index)) for index in np.ndindex(*leading_shape)]


def save_pillow(path: Path, plane: np.ndarray) -> None:
    """One 2-D (or RGB) plane as a PNG, or a JPEG for ``.jpg``/``.jpeg``."""
    Image.fromarray(plane).save(path, format="JPEG" if path.suffix.lower() in {".jpg", ".jpeg"} else "PNG")


def is_ome_tiff(path: Path) -> bool:
    """Whether *path* names an OME-TIFF (``.ome.tif``, ``.ome.tiff``), written with OME-XML."""
    return path.name.lower().endswith((".ome.tif", ".ome.tiff"))


def file_suffix(path: Path) -> str:
    """The type of *path* as its temporary name keeps it: ``.ome.tif`` for an OME-TIFF, else the suffix."""
    return ".ome" + path.suffix if is_ome_tiff(path) else path.suffix


def _ome_xml(shape: tuple[int, ...], rgb: bool, pixel_size: PixelSize | None,
             metadata: ImageMetadata | None) -> dict:
    """tifffile's OME ``metadata``: axes, pixel size, and channel names along a ``C`` axis."""
    axes = ome_tiff_axes(metadata, len(shape), rgb)
    ome: dict = {"axes": axes}
    if pixel_size is not None:
        unit = OME_XML_UNITS.get(pixel_size.unit, pixel_size.unit)
        ome |= {"PhysicalSizeX": pixel_size.x, "PhysicalSizeY": pixel_size.y,
                "PhysicalSizeXUnit": unit, "PhysicalSizeYUnit": unit}
    z = axes.find("Z")
    if z >= 0 and metadata is not None and metadata.axes[z].scale is not None:
        ome["PhysicalSizeZ"] = metadata.axes[z].scale
        if metadata.axes[z].unit is not None:
            ome["PhysicalSizeZUnit"] = OME_XML_UNITS.get(metadata.axes[z].unit, metadata.axes[z].unit)
    channel = None if metadata is None else metadata.channel_axis
    if channel is not None and metadata.channel_names and axes[channel] == "C":
        ome["Channel"] = {"Name": list(metadata.channel_names)}
    return ome


def tiff_keywords(path: Path, shape: tuple[int, ...], rgb: bool, pixel_size: PixelSize | None,
                  metadata: ImageMetadata | None = None) -> dict:
    """``tifffile.imwrite`` keywords that keep the pixel size: OME-XML for ``.ome.tif(f)`` (with
    the axes and channel names of *metadata*), else resolution tags in micrometres."""
    keywords: dict = {"photometric": "rgb" if rgb else "minisblack"}
    if is_ome_tiff(path):
        return keywords | {"ome": True, "metadata": _ome_xml(shape, rgb, pixel_size, metadata)}
    if pixel_size is None:
        return keywords
    to_micrometres = {"nanometer": 1e-3, "micrometer": 1.0, "millimeter": 1e3, "centimeter": 1e4, "meter": 1e6}
    scale = to_micrometres.get(pixel_size.unit)
    if scale is None:
        return keywords
    return keywords | {"resolution": (1 / (pixel_size.x * scale), 1 / (pixel_size.y * scale)),
                       "resolutionunit": "MICROMETER"}


def multiscales(name: str, axes: Sequence[Axis], pixel_size: PixelSize | None, levels: int) -> dict:
    """OME-NGFF 0.5 ``multiscales`` of *levels* levels, each Y/X-halved from the one before, with
    *axes* in the store's order (Y/X last): Y/X scaled by the pixel size (and its unit), each
    leading axis by its :attr:`~napari_i2i.core.image_metadata.Axis.scale` (1 when unknown)."""
    unit = None if pixel_size is None else pixel_size.unit
    entries = []
    for number, axis in enumerate(axes):
        axis_unit = unit if number >= len(axes) - 2 else axis.unit
        entries.append({"name": axis.name} | ({"type": axis.type} if axis.type else {})
                       | ({"unit": axis_unit} if axis_unit else {}))
    leading = [1.0 if axis.scale is None else axis.scale for axis in axes[:-2]]
    size = (1.0, 1.0) if pixel_size is None else (pixel_size.y, pixel_size.x)
    datasets = [{"path": str(level), "coordinateTransformations": [
        {"type": "scale", "scale": leading + [size[0] * 2**level, size[1] * 2**level]}]} for level in range(levels)]
    return {"name": name, "axes": entries, "datasets": datasets}


def ordered_types(axes: Sequence[Axis]) -> list[Axis]:
    """*axes* less the types that would break OME-NGFF's order of types (time, then channel or
    other, then space): a time axis after another kind, a space axis before one (names stay)."""
    kept = []
    for number, axis in enumerate(axes):
        late_time = axis.type == "time" and any(other.type != "time" for other in axes[:number])
        early_space = axis.type == "space" and any(other.type != "space" for other in axes[number + 1 :])
        kept.append(Axis(axis.name, None, axis.scale, axis.unit) if late_time or early_space else axis)
    return kept


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
    (write only: ``array`` is the store). *metadata*: the result's axes and channel names, in
    its layout (None, or another number of axes: none kept). An OME-Zarr's axes are *metadata*'s,
    else ``dim_0, …, y, x`` and ``c`` for colours, in OME-NGFF's order of types (time, then
    channel or other, then space: colours so before Y/X), which its arrays' ``dimension_names``
    repeat; a TIFF's or PNG's temporary store keeps the result's layout.
    """

    def __init__(self, path: Path, shape: tuple[int, ...], dtype: np.dtype, rgb: bool,
                 pixel_size: PixelSize | None = None, metadata: ImageMetadata | None = None) -> None:
        import zarr  # here: it takes seconds to import

        self.path, self.shape, self.dtype, self.rgb = Path(path), tuple(shape), np.dtype(dtype), rgb
        self.pixel_size = pixel_size
        self.ndim = len(self.shape)
        self.metadata = metadata if metadata is not None and len(metadata.axes) == self.ndim else None
        # an OME-Zarr orders its axes by type (time, channel or other, space: colours before Y/X)
        ranks = [_AXIS_RANKS.get(axis.type, 1) for axis in self._result_axes()]
        self._order = sorted(range(self.ndim), key=ranks.__getitem__) if is_store(path) else list(range(self.ndim))
        self._store = _partial(self.path, ".zarr")
        stored = tuple(self.shape[axis] for axis in self._order)
        self._group = zarr.open_group(self._store, mode="w-") if is_store(path) else None
        chunks = _chunks(stored, len(stored) - (1 if rgb and not is_store(path) else 0))
        if self._group is not None:
            self.array = self._group.create_array("0", shape=stored, dtype=self.dtype, chunks=chunks, fill_value=0,
                                                  dimension_names=self._dimension_names())
        else:
            self.array = zarr.create_array(self._store, shape=stored, dtype=self.dtype, chunks=chunks, fill_value=0)

    def __setitem__(self, index: tuple, values: np.ndarray) -> None:
        """Assign *values* at *index* (one entry per result axis), in the store's axis order."""
        if self._order != sorted(self._order):
            kept = [axis for axis in range(self.ndim) if not isinstance(index[axis], (int, np.integer))]
            values = np.transpose(values, [kept.index(axis) for axis in self._order if axis in kept])
            index = tuple(index[axis] for axis in self._order)
        self.array[index] = values

    def finish(self) -> list[Path]:
        """Complete the output (pyramid and metadata, the TIFF, or the PNG/JPEG files) and rename
        it into place; returns the files written (:func:`output_files`)."""
        try:
            if self._group is None:
                return self._write_files()
            self._finish_store()
            _replace(self._store, self.path)
        except BaseException:
            self.discard()
            raise
        return [self.path]

    def _write_files(self) -> list[Path]:
        """The TIFF (tile by tile) or the PNG/JPEG files (plane by plane) from the temporary store,
        under temporary names renamed once all are complete."""
        leading = self.shape[: self.ndim - (3 if self.rgb else 2)]
        files = output_files(self.path, leading)
        written = [_partial(path, file_suffix(path)) for path in files]
        try:
            if self.path.suffix.lower() in PILLOW_SUFFIXES:
                for path, index in zip(written, np.ndindex(*leading)):
                    save_pillow(path, np.asarray(self.array[index]))
            else:
                _write_tiled_tiff(written[0], self.array, self.rgb, self.pixel_size, self.metadata)
            for path, temporary in zip(files, written):
                os.replace(temporary, path)
        finally:
            for temporary in written:
                temporary.unlink(missing_ok=True)
            shutil.rmtree(self._store, ignore_errors=True)
        return files

    def _finish_store(self) -> None:
        """The OME-Zarr's pyramid and its ``ome`` metadata."""
        _add_pyramid(self._group, self.dtype, self._dimension_names())
        ome = {"version": "0.5", "multiscales": [self._multiscales()]}
        if self.metadata is not None and self.metadata.channel_names:
            channel_axis = [axis.type for axis in self._stored_axes()].index("channel")
            ome["omero"] = _omero(self._group, self.metadata.channel_names, channel_axis)
        self._group.attrs["ome"] = ome

    def discard(self) -> None:
        """Remove what was written (a failed or cancelled job)."""
        shutil.rmtree(self._store, ignore_errors=True)

    def _result_axes(self) -> list[Axis]:
        """The result's axes: the metadata's, Y/X named so, else ``dim_0, …, y, x[, c]``."""
        colours = [Axis("c", "channel")] if self.rgb else []
        spatial = [Axis("y", "space"), Axis("x", "space")]
        if self.metadata is None:
            return [Axis(f"dim_{k}") for k in range(self.ndim - 2 - len(colours))] + spatial + colours
        return list(self.metadata.axes[: self.ndim - 2 - len(colours)]) + spatial + colours

    def _stored_axes(self) -> list[Axis]:
        """The store's axes, in its order (:attr:`_order` of the result's)."""
        axes = self._result_axes()
        return [axes[axis] for axis in self._order]

    def _dimension_names(self) -> list[str]:
        """The zarr v3 ``dimension_names`` of the store's arrays (OME-NGFF 0.5: its axes' names)."""
        return [axis.name for axis in self._stored_axes()]

    def _multiscales(self) -> dict:
        return multiscales(self.path.name.split(".")[0], self._stored_axes(), self.pixel_size,
                           len(list(self._group.array_keys())))


def _add_pyramid(group: zarr.Group, dtype: np.dtype, dimension_names: list[str]) -> None:
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
                                    chunks=_chunks(smaller.shape, ndim), fill_value=0, dimension_names=dimension_names)
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


def _omero(group: zarr.Group, names: tuple[str, ...], channel_axis: int) -> dict:
    """OME-NGFF ``omero`` metadata: the channels' labels, colours (red, green, blue for three, else
    white) and display windows (each channel's range in the coarsest level, within its dtype's)."""
    coarsest = np.asarray(group[str(len(list(group.array_keys())) - 1)])
    values = np.moveaxis(coarsest, channel_axis, 0).reshape(len(names), -1)
    colours = ("FF0000", "00FF00", "0000FF") if len(names) == 3 else ("FFFFFF",) * len(names)
    channels = []
    for name, colour, channel in zip(names, colours, values):
        low, high = float(channel.min()), float(channel.max())
        limits = np.iinfo(coarsest.dtype) if np.issubdtype(coarsest.dtype, np.integer) else None
        window = {"min": low if limits is None else float(limits.min), "start": low,
                  "max": high if limits is None else float(limits.max), "end": high}
        channels.append({"label": name, "color": colour, "active": True, "window": window})
    return {"channels": channels}


def _write_tiled_tiff(path: Path, array: zarr.Array, rgb: bool, pixel_size: PixelSize | None,
                      metadata: ImageMetadata | None) -> None:
    tifffile.imwrite(path, _tiles(array, rgb), shape=array.shape, dtype=array.dtype, tile=(CHUNK, CHUNK),
                     **tiff_keywords(path, array.shape, rgb, pixel_size, metadata))


def write_ome_zarr(path: Path, data: np.ndarray, rgb: bool, pixel_size: PixelSize | None = None,
                   metadata: ImageMetadata | None = None) -> None:
    """Write an array in memory as an OME-Zarr (the small-job path of ``image_io.write_images``)."""
    pending = PendingOutput(path, data.shape, data.dtype, rgb, pixel_size, metadata)
    try:
        pending[(slice(None),) * data.ndim] = data
    except BaseException:
        pending.discard()
        raise
    pending.finish()
