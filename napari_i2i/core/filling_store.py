"""An OME-Zarr result that a viewer shows while the job writes it.

:class:`napari_i2i.core.stores.PendingOutput` writes under a temporary name and
builds the pyramid at the end, so nothing can be shown before the job is done. A
:class:`FillingStore` is written where it stays, with every pyramid level (the
same levels as ``PendingOutput``'s: halved until the short side is at most
:data:`~napari_i2i.core.stores.PYRAMID_MIN_SIDE`) and its OME-NGFF 0.5
``multiscales`` metadata created first (the result's axis names, types and spacing
and its pixel size, as ``PendingOutput`` writes them; the axes stay in the result's
order, RGB colours before Y/X, so a type out of OME-NGFF's order is left out, see
:func:`~napari_i2i.core.stores.ordered_types`); unwritten chunks read as the fill value
0. Each band written to level 0 also fills the rows of the coarser levels it
completes (2×2 means of the level before, integers rounded), so a zoomed-out view
fills in with the job and the store is complete when the last band is written.
Bands of a plane must arrive top to bottom, as
:func:`napari_i2i.core.tiling.translate_tiled` hands them.

:meth:`FillingStore.levels` are the levels in the result's layout (RGB colours
last) and read the store at every index, so a viewer that re-reads them sees the
latest bands (a dask array would be cached by its chunk keys and go on showing
the fill value).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from napari_i2i.core.image_metadata import Axis, ImageMetadata
from napari_i2i.core.layer_data import PixelSize
from napari_i2i.core.stores import CHUNK, PYRAMID_MIN_SIDE, multiscales, ordered_types

__all__ = ["FillingStore", "StoreLevel"]


def _level_shapes(shape: tuple[int, ...]) -> list[tuple[int, ...]]:
    """Level 0 and each 2×2-halved level after it while the short side exceeds PYRAMID_MIN_SIDE."""
    shapes = [shape]
    while min(shapes[-1][-2:]) > PYRAMID_MIN_SIDE:
        shapes.append((*shape[:-2], shapes[-1][-2] // 2, shapes[-1][-1] // 2))
    return shapes


def _plane_key(index: tuple) -> tuple:
    """A hashable name for the plane a band's leading index selects (slices are not hashable)."""
    return tuple((part.start, part.stop, part.step) if isinstance(part, slice) else int(part) for part in index)


class FillingStore:
    """A result of ``shape`` (laid out as :func:`~napari_i2i.core.layer_data.to_image_array` does:
    RGB colours last) written band by band into a new OME-Zarr at *path*, pyramid included;
    assign bands with ``store[index] = values``, as ``run_translation(..., outputs=...)`` does.
    *metadata*: the result's axes in its layout (None, or another number of axes: ``dim_0, …``)."""

    def __init__(self, path: Path, shape: tuple[int, ...], dtype: np.dtype, rgb: bool,
                 pixel_size: PixelSize | None = None, metadata: ImageMetadata | None = None) -> None:
        import zarr  # here: it takes seconds to import

        self.path, self.shape, self.dtype, self.rgb = Path(path), tuple(shape), np.dtype(dtype), rgb
        self.ndim = len(self.shape)
        stored = (*shape[:-3], shape[-1], *shape[-3:-1]) if rgb else self.shape  # OME-NGFF: channels before Y/X
        axes = self._stored_axes(metadata)
        group = zarr.open_group(self.path, mode="w-")
        try:
            self._arrays = [
                group.create_array(str(number), shape=level, dtype=self.dtype, fill_value=0,
                                   chunks=(1,) * (len(level) - 2) + (min(CHUNK, level[-2]), min(CHUNK, level[-1])),
                                   dimension_names=[axis.name for axis in axes])
                for number, level in enumerate(_level_shapes(stored))]
            group.attrs["ome"] = {"version": "0.5", "multiscales": [
                multiscales(self.path.name.split(".")[0], axes, pixel_size, len(self._arrays))]}
        except BaseException:
            self.discard()
            raise
        self._rows_done: dict[tuple, list[int]] = {}  # per plane, the rows finished at each level
        self.bands_written = 0  # read by the main thread to know when to redraw

    def _stored_axes(self, metadata: ImageMetadata | None) -> list[Axis]:
        """The store's axes: the result's (*metadata*'s, else ``dim_0, …``), colours before Y/X."""
        leading = self.ndim - 2 - self.rgb
        if metadata is None or len(metadata.axes) != self.ndim:
            axes = [Axis(f"dim_{k}") for k in range(leading)]
        else:
            axes = list(metadata.axes[:leading])
        colours = [Axis("c", "channel")] if self.rgb else []
        return ordered_types(axes + colours + [Axis("y", "space"), Axis("x", "space")])

    def levels(self) -> list[StoreLevel]:
        """Every pyramid level, full resolution first, as array-likes in the result's layout."""
        return [StoreLevel(array, self.rgb) for array in self._arrays]

    def __setitem__(self, index: tuple, values: np.ndarray) -> None:
        if self.rgb:  # (…, rows, cols, colours) → (…, colours, rows, cols)
            index, values = (*index[:-3], index[-1], *index[-3:-1]), np.moveaxis(values, -1, -3)
        leading, rows = index[:-2], index[-2]
        done = self._rows_done.setdefault(_plane_key(leading), [0] * len(self._arrays))
        if rows.start != done[0]:
            raise ValueError(f"{self.path.name}: bands of a plane must be written top to bottom "
                             f"(rows from {rows.start}, expected {done[0]})")
        self._arrays[0][index] = values
        done[0] = rows.stop
        for number in range(1, len(self._arrays)):
            self._fill_rows(number, leading, done)
        self.bands_written += 1

    def _fill_rows(self, number: int, leading: tuple, done: list[int]) -> None:
        """Level *number*'s rows of this plane whose source rows in the level before are now written."""
        target = self._arrays[number]
        ready = min(done[number - 1] // 2, target.shape[-2])
        if ready <= done[number]:
            return
        rows = slice(done[number], ready)
        for left in range(0, target.shape[-1], CHUNK):  # a chunk column at a time: float64 copies stay small
            right = min(left + CHUNK, target.shape[-1])
            finer = np.asarray(self._arrays[number - 1][(*leading, slice(2 * rows.start, 2 * rows.stop),
                                                         slice(2 * left, 2 * right))], dtype=np.float64)
            means = finer.reshape(*finer.shape[:-2], ready - rows.start, 2, right - left, 2).mean(axis=(-3, -1))
            if np.issubdtype(self.dtype, np.integer):
                means = np.rint(means)
            target[(*leading, rows, slice(left, right))] = means.astype(self.dtype)
        done[number] = ready

    def discard(self) -> None:
        """Remove the store (a failed or cancelled job)."""
        shutil.rmtree(self.path, ignore_errors=True)


class StoreLevel:
    """One level of a :class:`FillingStore` as an array-like in the result's layout (RGB colours last),
    read from the store at every index."""

    def __init__(self, array, rgb: bool) -> None:
        self._array, self._rgb = array, rgb
        stored = tuple(array.shape)
        self.shape = (*stored[:-3], *stored[-2:], stored[-3]) if rgb else stored
        self.dtype, self.ndim = array.dtype, len(stored)
        self.size = int(np.prod(self.shape, dtype=np.int64))

    def __getitem__(self, index) -> np.ndarray:
        if not self._rgb:
            return np.asarray(self._array[index])
        index = _full_index(index, self.ndim)
        values = np.asarray(self._array[(*index[:-3], index[-1], *index[-3:-1])])
        if isinstance(index[-1], (int, np.integer)):  # one colour: no colour axis to move back
            return values
        colour_axis = sum(not isinstance(part, (int, np.integer)) for part in index[:-3])
        return np.moveaxis(values, colour_axis, -1)

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        values = self[(slice(None),) * self.ndim]
        return values if dtype is None else values.astype(dtype)


def _full_index(index, ndim: int) -> tuple:
    """*index* (basic indexing: ints, slices, one Ellipsis) as one entry per axis."""
    index = index if isinstance(index, tuple) else (index,)
    if any(part is Ellipsis for part in index):
        at = next(k for k, part in enumerate(index) if part is Ellipsis)
        index = index[:at] + (slice(None),) * (ndim - len(index) + 1) + index[at + 1 :]
    return index + (slice(None),) * (ndim - len(index))
