"""Axis names, types and spacing and channel names of an image, read from OME-TIFF / OME-Zarr
(or a napari layer) and written with the result.

An :class:`ImageMetadata` describes every axis of an image as
:class:`~napari_i2i.core.layer_data.ImageData` lays it out (RGB colours last). It is read
with the libraries: a TIFF's axes from tifffile's ``series.axes``, an OME-TIFF's channel
names from its OME-XML through ``tifffile.xml2dict``; an OME-Zarr's axes from its
``multiscales`` and channel names from ``omero.channels[*].label``. The spacing of a leading
space or time axis (Z: OME-XML ``PhysicalSizeZ``, an OME-Zarr's ``scale`` and axis ``unit``)
is :attr:`Axis.scale` and :attr:`Axis.unit`; Y/X's is the image's
:class:`~napari_i2i.core.layer_data.PixelSize`. :func:`layer_metadata` describes a napari
layer from its axis labels, scale and units.
:func:`translated_metadata` maps it onto a translation's result along the result's axis
map (:func:`napari_i2i.core.layer_data.output_axes`): an axis taken from the source keeps
its name and type (a new samples axis is ``sample``); the channel names stay where the
result's channel axis is the source's with the same length, and an RGB result keeps the
names of the 3 channels the model took; an RGB result whose colours are new is labelled
``R, G, B``; a channel axis of another length gets no names.
:func:`ome_tiff_axes` spells the axes as OME-TIFF letters for tifffile's ``ome=True``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import tifffile

__all__ = ["OME_TIFF_LEADING", "OME_UNITS", "RGB_NAMES", "Axis", "ImageMetadata", "layer_metadata", "ome_tiff_axes",
           "tiff_metadata", "translated_metadata", "zarr_metadata"]

RGB_NAMES = ("R", "G", "B")
# TIFF axis letters (tifffile's series.axes) → OME-NGFF name and type; S holds samples (colours).
_TIFF_AXES = {"T": ("t", "time"), "Z": ("z", "space"), "C": ("c", "channel"), "S": ("c", "channel"),
              "Y": ("y", "space"), "X": ("x", "space")}
# OME-TIFF letters for axes OME names no dimension of (tifffile writes them as "modulo" dimensions).
_OTHER_LETTERS = "QAPRHE"
OME_TIFF_LEADING = 6  # tifffile writes OME-TIFFs of at most 8 axes (9 with RGB samples)
# Unit names as OME-XML writes them → OME-NGFF (UDUNITS) names.
OME_UNITS = {"µm": "micrometer", "um": "micrometer", "nm": "nanometer", "mm": "millimeter", "cm": "centimeter",
             "m": "meter", "Å": "angstrom"}
# Axis types whose spacing is kept (a channel axis has none).
_SPACED_TYPES = ("space", "time")


@dataclass(frozen=True)
class Axis:
    """One axis: an OME-NGFF name (``t``, ``z``, ``c``, ``y``, ``x`` or the file's own) and type."""

    name: str
    type: str | None = None  # "time", "space", "channel", another OME-NGFF type, or None (unknown)
    scale: float | None = None  # spacing along a leading space or time axis (None: unknown)
    unit: str | None = None  # the spacing's OME-NGFF (UDUNITS) unit, e.g. "micrometer" (None: none)


@dataclass(frozen=True)
class ImageMetadata:
    """Every axis of an image, and the names along its channel axis (empty: none known)."""

    axes: tuple[Axis, ...]
    channel_names: tuple[str, ...] = ()

    @property
    def channel_axis(self) -> int | None:
        """The first axis of type ``channel``, which :attr:`channel_names` name (None: none)."""
        return next((k for k, axis in enumerate(self.axes) if axis.type == "channel"), None)


def _unique(axes: Sequence[Axis]) -> tuple[Axis, ...]:
    """*axes* with a repeated name made unique (``z``, ``z_1``), as OME-NGFF requires."""
    seen: set[str] = set()
    unique = []
    for axis in axes:
        name, number = axis.name, 0
        while name in seen:
            number += 1
            name = f"{axis.name}_{number}"
        seen.add(name)
        unique.append(replace(axis, name=name))
    return tuple(unique)


def _named(axes: tuple[Axis, ...], shape: Sequence[int], names: Sequence[str]) -> ImageMetadata:
    """The record, with *names* kept only where they name every element of the channel axis."""
    metadata = ImageMetadata(_unique(axes))
    channel = metadata.channel_axis
    if channel is None or len(names) != shape[channel]:
        return metadata
    return ImageMetadata(metadata.axes, tuple(str(name) for name in names))


def tiff_metadata(tif: tifffile.TiffFile, samples: tuple[int, int]) -> ImageMetadata:
    """The axes of a TIFF's first series, its samples moved from ``samples[0]`` to ``samples[1]``
    as :mod:`napari_i2i.core.image_io` moves them, and an OME-TIFF's channel names."""
    series = tif.series[0]
    letters = list(series.axes)
    letters.insert(samples[1], letters.pop(samples[0]))
    shape = list(series.shape)
    shape.insert(samples[1], shape.pop(samples[0]))
    axes = tuple(Axis(*_TIFF_AXES.get(letter, (f"dim_{k}", None))) for k, letter in enumerate(letters))
    names: list[str] = []
    if tif.is_ome and tif.ome_metadata:
        image = tifffile.xml2dict(tif.ome_metadata)["OME"]["Image"]
        pixels = (image[0] if isinstance(image, list) else image)["Pixels"]
        if "PhysicalSizeZ" in pixels and "Z" in letters[:-2]:
            z = letters.index("Z")
            unit = OME_UNITS.get(pixels.get("PhysicalSizeZUnit", "µm"), "micrometer")
            axes = (*axes[:z], replace(axes[z], scale=float(pixels["PhysicalSizeZ"]), unit=unit), *axes[z + 1 :])
        channels = pixels.get("Channel", [])
        channels = channels if isinstance(channels, list) else [channels]
        names = [channel.get("Name") for channel in channels]
        names = names if all(isinstance(name, str) for name in names) else []
    return _named(axes, shape, names)


def zarr_metadata(multiscales: dict, omero: dict | None, shape: Sequence[int]) -> ImageMetadata:
    """The axes of an OME-Zarr's ``multiscales`` (names and types; OME-NGFF 0.3 gives names only)
    and its ``omero`` channel labels, for an image of *shape*."""
    given = [axis if isinstance(axis, dict) else {"name": axis} for axis in multiscales.get("axes", [])]
    if len(given) != len(shape):
        given = [{"name": f"dim_{k}"} for k in range(len(shape))]
    transforms = (multiscales.get("datasets") or [{}])[0].get("coordinateTransformations", [])
    scale = next((t["scale"] for t in transforms if t.get("type") == "scale"), None)
    scale = scale if scale is not None and len(scale) == len(given) else [None] * len(given)
    axes = []
    for number, (axis, spacing) in enumerate(zip(given, scale)):
        kind = axis.get("type") or _TIFF_AXES.get(str(axis["name"]).upper(), (None, None))[1]
        spaced = (kind in _SPACED_TYPES and number < len(given) - 2 and spacing is not None
                  and (float(spacing) != 1.0 or "unit" in axis))  # 1 without a unit: a default
        axes.append(Axis(str(axis["name"]), kind, float(spacing) if spaced else None,
                         axis.get("unit") if spaced else None))
    labels = [channel.get("label") for channel in (omero or {}).get("channels", [])]
    return _named(tuple(axes), shape, labels if all(isinstance(label, str) for label in labels) else [])


def layer_metadata(labels: Sequence[str], scale: Sequence[float], units: Sequence[str], rgb: bool) -> ImageMetadata:
    """The axes of a napari layer (RGB colours last, after its own axes) from its ``axis_labels``
    (napari's defaults ``-3, -2, -1`` become ``dim_k``), ``scale`` and ``units`` (``pixel``: none);
    Y/X are ``y``, ``x`` (their spacing is the layer's pixel size)."""
    ndim = len(labels)
    axes = []
    for number, (label, spacing, unit) in enumerate(zip(labels[:-2], scale, units)):
        name = f"dim_{number}" if label == str(number - ndim) else str(label)
        kind = _TIFF_AXES.get(name.upper(), (None, None))[1]
        spaced = kind in _SPACED_TYPES and (spacing != 1.0 or unit != "pixel")
        axes.append(Axis(name, kind, float(spacing) if spaced else None,
                         str(unit) if spaced and unit != "pixel" else None))
    axes += [Axis("y", "space"), Axis("x", "space")] + ([Axis("c", "channel")] if rgb else [])
    return ImageMetadata(_unique(axes))


def translated_metadata(source: ImageMetadata | None, axes_map: Sequence[int | None], samples_axis: bool,
                        rgb: bool, output_shape: Sequence[int]) -> ImageMetadata | None:
    """The metadata of a result of *output_shape* (RGB or not) whose non-RGB axes come from the
    source's along *axes_map* (None: new; the first is the samples with *samples_axis*, another a
    channel axis); see the module docstring. None without source metadata."""
    if source is None:
        return None
    axes, names = [], ()
    for position, source_axis in enumerate(axes_map):
        if source_axis is not None:
            axes.append(source.axes[source_axis])
            if source_axis == source.channel_axis and output_shape[position] == len(source.channel_names):
                names = source.channel_names
        elif position == 0 and samples_axis:
            axes.append(Axis("sample"))
        else:  # a channel axis of another count than the source's
            axes.append(Axis("c", "channel"))
    if rgb:  # colours, last
        axes.append(Axis("c", "channel"))
        # the source's channels became the model's: an RGB source's colours, or a 3-channel axis
        consumed = source.channel_axis is not None and source.channel_axis not in axes_map
        if not names and all(axis.type != "channel" for axis in axes[:-1]):
            names = source.channel_names[:3] if consumed and len(source.channel_names) in (3, 4) else RGB_NAMES
    return _named(tuple(axes), output_shape, names)


def ome_tiff_axes(metadata: ImageMetadata | None, ndim: int, rgb: bool) -> str:
    """The axes of an OME-TIFF of *ndim* dimensions as tifffile's ``ome=True`` takes them: ``T``,
    ``Z``, ``C`` where the metadata says so (one each), other leading axes ``Q``, ``A``, …"""
    spatial = "YXS" if rgb else "YX"
    leading = ndim - len(spatial)
    axes = metadata.axes[:leading] if metadata is not None and len(metadata.axes) == ndim else ()
    wanted = [{"t": "T", "z": "Z", "c": "C"}.get(axis.name) or {"time": "T", "channel": "C"}.get(axis.type)
              for axis in axes] or [None] * leading
    if leading > OME_TIFF_LEADING:
        raise ValueError(f"an OME-TIFF holds at most {OME_TIFF_LEADING} axes before Y/X, this output has "
                         f"{leading}; write a .tif or an .ome.zarr")
    letters: list[str] = []
    for letter in wanted:
        if letter is None or letter in letters:
            letter = next(other for other in _OTHER_LETTERS if other not in letters)
        letters.append(letter)
    return "".join(letters) + spatial
