"""A checked set of images of one domain, served normalised, converted, resized and maybe cached.

Every dataset checks all of its images when it is built and raises one
:class:`~trainers.datasets.DatasetError` naming each bad image and why, so
nothing fails hours into training. Images follow the host's rules
(:mod:`napari_i2i.core.layer_data`, ``docs/usage.md``), so a model is trained
on what it will see at inference: every 2-D plane of a stack is one image,
the channel count is given or taken from the first readable image, and
intensities are scaled over the whole file.

- Size: ``resize`` scales the short side to that many pixels first (bilinear,
  antialiased), then a random crop is taken, as the MUNIT configs do.
  Without ``resize``, an image smaller than the crop is an error rather than
  silently upscaled (upscaling changes the pixel size a model learns).
- Memory: when the prepared (normalised, resized) float32 images of a
  dataset total at most ``cache_bytes`` (default :data:`CACHE_BYTES`, 1 GiB)
  they are kept in memory and an item costs only a crop; otherwise each item
  is read from disk. No file stays open, so datasets pickle into DataLoader
  workers (the cache is shared, not copied: torch puts tensors sent to
  workers in shared memory, and fork shares pages).
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import islice

import torch
import torch.nn.functional as F

from napari_i2i.core.layer_data import (
    Arrangement,
    LayerDataError,
    arrange,
    data_channels,
    iter_planes,
    layout,
)

from trainers.datasets.problems import DatasetError, Problem
from trainers.datasets.sources import FileSource

CACHE_BYTES = 2**30


def resized_shape(height: int, width: int, short_side: int | None) -> tuple[int, int]:
    if short_side is None:
        return height, width
    scale = short_side / min(height, width)
    return max(short_side, round(height * scale)), max(short_side, round(width * scale))


def resized(image: torch.Tensor, short_side: int | None) -> torch.Tensor:
    height, width = image.shape[-2:]
    size = resized_shape(height, width, short_side)
    if size == (height, width):
        return image
    return F.interpolate(image[None], size=size, mode="bilinear", antialias=True, align_corners=False)[0]


class Domain:
    """The 2-D images of one domain (``items``: source and plane), checked up front."""

    def __init__(
        self,
        sources: Sequence[FileSource],
        channels: int | None,
        resize: int | None,
        crop: tuple[int, int] | None,
    ):
        self.sources = list(sources)
        self.resize = resize
        self.problems: list[tuple[int, str]] = []  # (source index, text), for listing in file order
        self.rejected: set[int] = set()  # sources with a problem found in their header
        headers = [self._header(index) for index in range(len(self.sources))]
        readable = [header for header in headers if header is not None]
        self.channels = channels if channels is not None else (data_channels(*readable[0]) if readable else 1)
        self.arrangements: list[Arrangement | None] = [
            None if header is None else self._arranged(index, *header, crop)
            for index, header in enumerate(headers)
        ]
        self.items = [
            (index, plane)
            for index, planes in enumerate(self.arrangements)
            if planes is not None
            for plane in range(planes.n_planes)
        ]
        self._cache: list[torch.Tensor] | None = None

    @property
    def names(self) -> list[str]:
        """One per item: the source's name, with the plane for stacks."""
        return [
            self.sources[index].name + (f" plane {plane}" if self.arrangements[index].n_planes > 1 else "")
            for index, plane in self.items
        ]

    def _reject(self, index: int, text: str) -> None:
        self.rejected.add(index)
        self.problems.append((index, text))

    def _header(self, index: int) -> tuple[tuple[int, ...], bool] | None:
        try:
            return self.sources[index].header()
        except Problem as problem:
            self._reject(index, f"{self.sources[index].name}: {problem}")
            return None

    def _arranged(
        self, index: int, shape: tuple[int, ...], rgb: bool, crop: tuple[int, int] | None
    ) -> Arrangement | None:
        name = self.sources[index].name
        try:
            planes = arrange(name, shape, rgb, self.channels)
        except LayerDataError as error:
            self._reject(index, str(error))
            return None
        too_small = crop is not None and (planes.height < crop[0] or planes.width < crop[1])
        if too_small and self.resize is None:
            self._reject(
                index,
                f"{name}: {planes.height}×{planes.width} pixels, smaller than the {crop[0]}×{crop[1]} crop; "
                f"upscale with --resize {max(crop)} or more (`resize = {max(crop)}` in a config file), or train on "
                f"smaller crops (--size)",
            )
        return planes

    def nbytes(self) -> int:
        """Memory the prepared float32 images would take."""
        sizes = [self.arrangements[index] for index, _ in self.items]
        shapes = [resized_shape(planes.height, planes.width, self.resize) for planes in sizes]
        return sum(4 * self.channels * height * width for height, width in shapes)

    def load(self, keep: bool) -> list[tuple[int, str]]:
        """Decode every image now so a corrupt one is reported before training; keep them if asked."""
        problems, images = [], []
        for index, source in enumerate(self.sources):
            if index in self.rejected:
                continue
            try:
                planes = self._prepare(index)
            except Problem as problem:
                problems.append((index, f"{source.name}: {problem}"))
                continue
            if keep:
                images += planes
        if keep and not problems:
            self._cache = images
        return problems

    def image(self, item: int) -> torch.Tensor:
        """The prepared image; the cached tensor itself, so callers must not modify it in place."""
        if self._cache is not None:
            return self._cache[item]
        index, plane = self.items[item]
        try:
            return self._prepare(index, plane)[0]
        except Problem as problem:  # only when built with verify=False
            raise DatasetError(
                "an image failed to load during training (the dataset was built with verify=False)",
                [f"{self.sources[index].name}: {problem}"],
            ) from None

    def _prepare(self, index: int, plane: int | None = None) -> list[torch.Tensor]:
        """The source's planes as ``(channels, H, W)`` tensors in [-1, 1] (all, or only *plane*)."""
        image = self.sources[index].read()
        try:
            plan = layout(image, self.channels)
            decoded = arrange(image.name, plan.shape, image.rgb, self.channels)
        except LayerDataError as error:
            raise Problem(str(error).removeprefix(f"{image.name}: ")) from None
        if decoded != self.arrangements[index]:
            raise Problem(
                f"decoded as {decoded.n_planes} plane(s) of {decoded.channels} channel(s), "
                f"{decoded.height}×{decoded.width} pixels, which its header does not say"
            )
        planes = iter_planes(image, plan, self.channels)
        if plane is not None:
            planes = islice(planes, plane, plane + 1)
        return [resized(tensor[0].contiguous(), self.resize) for tensor in planes]


def load_domains(
    domains: Sequence[Domain], problems: Sequence[str], summary: str, verify: bool, cache_bytes: int
) -> None:
    """Raise every problem at once, after decoding all images when verifying or caching.

    Problems of single images are listed in image order, after *problems* (those of the whole set).
    """
    found = [(index, d, text) for d, domain in enumerate(domains) for index, text in domain.problems]
    keep = not problems and not found and sum(domain.nbytes() for domain in domains) <= cache_bytes
    if verify or keep:
        found += [(index, d, text) for d, domain in enumerate(domains) for index, text in domain.load(keep)]
    # dict.fromkeys drops repeats: both halves of a side-by-side file fail alike
    listed = list(dict.fromkeys([*problems, *(text for _, _, text in sorted(found))]))
    if listed:
        raise DatasetError(f"{summary}: {len(listed)} problem(s)", listed)
