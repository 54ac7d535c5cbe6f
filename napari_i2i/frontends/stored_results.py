"""The Translate widget's results that are written into stores, on the main thread: where the
stores go, their layers (shown when the job starts, redrawn as bands arrive) and what a
cancelled or failed job leaves of them: nothing.

A store goes into the widget's *Write into* folder, or else into a new folder for the job
under :data:`RESULTS_FOLDER` (the user's cache folder); its name is the source layer's and the
direction's, numbered where that is taken, so no store is ever overwritten. It is an OME-Zarr
that napari-i2i's reader (and the CLI) opens again later.
"""

from __future__ import annotations

import contextlib
import re
import time
import uuid
from collections.abc import Sequence
from pathlib import Path

import napari
import platformdirs
from napari.layers import Image

from napari_i2i.core.translate import TranslationResult
from napari_i2i.frontends.translate_job import Placement, StoredResult

# Where stores go when the widget names no folder: one folder per job.
RESULTS_FOLDER = Path(platformdirs.user_cache_dir("napari-i2i")) / "results"
# A layer being written is redrawn at most this often (seconds): a redraw re-reads what it shows.
REFRESH_SECONDS = 0.5


def _file_name(name: str, direction: str, number: int) -> str:
    stem = re.sub(r"[^\w.-]+", "_", name).strip("._") or "result"
    return f"{stem}_{direction}{'' if number == 1 else f'-{number}'}.ome.zarr"


def store_paths(names: Sequence[str], stored: Sequence[bool], direction: str,
                folder: Path | None) -> tuple[Path | None, ...]:
    """Per source (named *names*), a new store path for its result, or None where *stored* is
    False: in *folder*, else in a new folder of this job under :data:`RESULTS_FOLDER`; a one-line
    ValueError where *folder* is a file."""
    if not any(stored):
        return ()
    if folder is not None and folder.exists() and not folder.is_dir():
        raise ValueError(f"Write into: {folder} is a file, not a folder")
    if folder is None:
        folder = RESULTS_FOLDER / f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
    paths: list[Path | None] = []
    for name, into_store in zip(names, stored, strict=True):
        if not into_store:
            paths.append(None)
            continue
        number = 1
        while (path := folder / _file_name(name, direction, number)).exists() or path in paths:
            number += 1
        paths.append(path)
    return tuple(paths)


def _redraw(layer: Image) -> None:
    """Re-read what *layer* shows from its store. napari (0.9) keeps the coarsest level of a 2-D
    multiscale layer in memory once read (for the thumbnail, and the view when zoomed out): that copy
    is dropped first, else it would go on showing the level as it was."""
    forget_coarsest = getattr(layer, "_reset_thumbnail_level_data", None)
    if forget_coarsest is not None:
        forget_coarsest()
    layer.refresh()


class StoredLayers:
    """The store-backed result layers of one job."""

    def __init__(self, viewer: napari.viewer.Viewer, placements: Sequence[Placement], new_axis: str) -> None:
        self._viewer, self._placements, self._new_axis = viewer, placements, new_axis
        self._stores: dict[int, StoredResult] = {}  # every store the worker made (shown or not), by source
        self._layers: dict[int, Image] = {}  # by source number
        self._last_refresh = -float("inf")
        self._bands_shown = 0

    def show(self, stored: StoredResult) -> None:
        """Add the layer of *stored*: its levels read the store, so unwritten parts look empty."""
        self._stores[stored.number] = stored
        levels = stored.store.levels()
        self._layers[stored.number] = self._viewer.add_image(
            levels if len(levels) > 1 else levels[0],
            multiscale=len(levels) > 1,
            name=f"{stored.source} [translating…]",
            rgb=stored.store.rgb,
            contrast_limits=stored.contrast_limits,  # napari computes no range over the data
            metadata={"napari_i2i": {"store": str(stored.store.path)}},
            **self._placements[stored.number].along(stored.axes, self._new_axis),
        )

    def keep_for_cleanup(self, stored: StoredResult) -> None:
        """A store made after Cancel: not shown, but removed with the others."""
        self._stores[stored.number] = stored

    def refresh(self) -> None:
        """Redraw the layers if bands arrived, at most every :data:`REFRESH_SECONDS`."""
        bands = sum(stored.store.bands_written for stored in self._stores.values())
        if bands == self._bands_shown or time.monotonic() - self._last_refresh < REFRESH_SECONDS:
            return
        self._bands_shown, self._last_refresh = bands, time.monotonic()
        for layer in self._live_layers():
            _redraw(layer)

    def finish(self, number: int, result: TranslationResult) -> bool:
        """Name the finished result *number* as in-memory results are named, record how it was made,
        redraw it; False when it is not a stored result."""
        if number not in self._stores:
            return False
        layer = self._layers.get(number)
        if layer is not None and layer in self._viewer.layers:  # the user may have deleted it meanwhile
            layer.name = f"{result.source} [{result.description}]"
            layer.metadata = {"napari_i2i": result.metadata | {"store": str(self._stores[number].store.path)}}
            _redraw(layer)
        return True

    def remove(self) -> list[str]:
        """Remove the layers and delete the stores (a cancelled or failed job); the layers' names."""
        names = [layer.name for layer in self._live_layers()]
        for layer in self._live_layers():
            self._viewer.layers.remove(layer)
        for stored in self._stores.values():
            stored.store.discard()
            if stored.store.path.parent.parent == RESULTS_FOLDER:  # the job's own folder, now empty
                with contextlib.suppress(OSError):
                    stored.store.path.parent.rmdir()
        self._stores.clear()
        self._layers.clear()
        return names

    def _live_layers(self) -> list[Image]:
        return [layer for layer in self._layers.values() if layer in self._viewer.layers]
