"""napari's reader for OME-Zarr and zarr stores (``*.zarr``, ``*.ome.zarr``): results open as
lazily loaded multiscale image layers.

The store is opened by :func:`napari_i2i.core.lazy_images.open_zarr_levels` (the same
reader ``napari-i2i translate`` uses), so napari reads only the chunks it displays.
The layer gets the pixel size (``scale``), its unit (when pint knows it) and the axis
names. A ``c`` axis of 3 or 4 ``uint8`` channels just before Y/X (how ``napari-i2i``
writes RGB results) is moved last and shown as RGB; other channel axes stay sliders.
A path this reader cannot open (not a zarr store, a zarr group without OME-NGFF
multiscales, fewer than two axes) gives None, so napari tries its other readers.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from napari_i2i.core.lazy_images import ZarrPyramid, open_zarr_levels

__all__ = ["get_reader", "read_zarr"]

LayerData = tuple[object, dict, str]


def get_reader(path: str | list[str]) -> Callable[[str], list[LayerData]] | None:
    """npe2 ``get_reader``: :func:`read_zarr` for one zarr store, else None."""
    if isinstance(path, list):
        if len(path) != 1:
            return None
        path = path[0]
    return read_zarr if Path(path).suffix.lower() == ".zarr" else None


def _is_rgb(pyramid: ZarrPyramid) -> bool:
    level = pyramid.levels[0]
    return (len(pyramid.axes) >= 3 and pyramid.axes[-3] == "c" and level.shape[-3] in (3, 4)
            and level.dtype == np.uint8)


def _known_unit(unit: str) -> bool:
    """Whether napari (pint) understands *unit*; an unknown one is left out rather than failing the layer."""
    import pint

    try:
        pint.get_application_registry().Unit(unit)
    except (pint.errors.UndefinedUnitError, ValueError, TypeError):
        return False
    return True


def read_zarr(path: str | list[str]) -> list[LayerData] | None:
    """One image layer (multiscale when the store has more than one level), or None when
    *path* is no zarr image this plugin can open."""
    path = Path(path[0] if isinstance(path, list) else path)
    try:
        pyramid = open_zarr_levels(path)
    except (ValueError, OSError, KeyError):
        return None
    if pyramid.levels[0].ndim < 2:
        return None
    rgb = _is_rgb(pyramid)
    levels = pyramid.levels
    axes = list(pyramid.axes) if len(pyramid.axes) == levels[0].ndim else [f"dim_{k}" for k in range(levels[0].ndim)]
    if rgb:
        import dask.array as da

        levels, axes = [da.moveaxis(level, -3, -1) for level in levels], axes[:-3] + axes[-2:]
    layer_ndim = len(axes)  # without an RGB layer's colour axis, as napari counts
    size = pyramid.pixel_size
    scale = (1.0,) * (layer_ndim - 2) + ((1.0, 1.0) if size is None else (size.y, size.x))
    attributes: dict = {"name": path.name.split(".")[0], "rgb": rgb, "scale": scale, "axis_labels": tuple(axes),
                        "multiscale": len(levels) > 1}
    if size is not None and _known_unit(size.unit):
        attributes["units"] = ("pixel",) * (layer_ndim - 2) + (size.unit, size.unit)
    return [(levels if len(levels) > 1 else levels[0], attributes, "image")]
