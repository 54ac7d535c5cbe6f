"""napari's reader for OME-Zarr and zarr stores (``*.zarr``, ``*.ome.zarr``): results open as
lazily loaded multiscale image layers.

The store is opened by :func:`napari_i2i.core.lazy_images.open_zarr_levels` (the same
reader ``napari-i2i translate`` uses), so napari reads only the chunks it displays.
The layer gets the pixel size and the spacing of other space and time axes (Z: ``scale``),
their units (when pint knows them) and the axis names (``axis_labels``: the input's, as
``napari-i2i translate`` carries them). A ``c``
axis of 3 or 4 ``uint8`` channels before Y/X with only space axes (Z) between (how
``napari-i2i`` writes RGB results) is moved last and shown as RGB. Another channel axis whose channels are all
named (OME-NGFF ``omero`` labels) is split into one layer per channel, named by its label
(napari's ``channel_axis``); unnamed channel axes stay sliders.
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


def _colour_axis(pyramid: ZarrPyramid) -> int | None:
    """The ``c`` axis of 3 or 4 ``uint8`` channels with only space axes after it (None: not RGB)."""
    metadata, level = pyramid.metadata, pyramid.levels[0]
    names = [] if metadata is None else [axis.name for axis in metadata.axes]
    if "c" not in names[:-2] or level.dtype != np.uint8:
        return None
    colours = names.index("c")
    spatial = all(axis.type == "space" for axis in metadata.axes[colours + 1 :])
    return colours if level.shape[colours] in (3, 4) and spatial else None


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
    levels = pyramid.levels
    axes = list(pyramid.axes) if len(pyramid.axes) == levels[0].ndim else [f"dim_{k}" for k in range(levels[0].ndim)]
    colours = _colour_axis(pyramid)
    rgb = colours is not None
    scale, units = _spacing(pyramid)
    if rgb:
        import dask.array as da

        levels = [da.moveaxis(level, colours, -1) for level in levels]
        axes, scale, units = ([*values[:colours], *values[colours + 1 :]] for values in (axes, scale, units))
    attributes: dict = {"name": path.name.split(".")[0], "rgb": rgb, "scale": tuple(scale),
                        "axis_labels": tuple(axes), "multiscale": len(levels) > 1}
    if any(unit != "pixel" for unit in units):
        attributes["units"] = tuple(units)
    metadata = pyramid.metadata
    if not rgb and metadata is not None and metadata.channel_names and metadata.channel_axis < len(axes) - 2:
        attributes = _split_by_channel(attributes, metadata.channel_axis, metadata.channel_names)
    return [(levels if len(levels) > 1 else levels[0], attributes, "image")]


def _spacing(pyramid: ZarrPyramid) -> tuple[list[float], list[str]]:
    """Per axis of the store, its scale (the pixel size for Y/X, a leading axis's spacing, else 1)
    and unit (``pixel`` where there is none, or pint does not know it)."""
    ndim, size = pyramid.levels[0].ndim, pyramid.pixel_size
    axes = pyramid.metadata.axes if pyramid.metadata is not None else ()
    scale, units = [1.0] * ndim, ["pixel"] * ndim
    for number, axis in enumerate(axes[:-2]):
        if axis.scale is not None:
            scale[number] = axis.scale
        if axis.unit is not None and _known_unit(axis.unit):
            units[number] = axis.unit
    if size is not None:
        scale[-2:] = [size.y, size.x]
        if _known_unit(size.unit):
            units[-2:] = [size.unit, size.unit]
    return scale, units


def _split_by_channel(attributes: dict, channel: int, names: tuple[str, ...]) -> dict:
    """*attributes* for one layer per channel (napari's ``channel_axis``), each named by its channel
    and with the per-axis values of the axes that remain."""
    def remaining(values: tuple) -> tuple:
        return tuple(value for axis, value in enumerate(values) if axis != channel)

    per_layer = {key: [remaining(attributes[key])] * len(names)
                 for key in ("scale", "axis_labels", "units") if key in attributes}
    return attributes | per_layer | {"channel_axis": channel, "name": list(names)}
