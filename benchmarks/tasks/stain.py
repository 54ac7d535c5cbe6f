"""The ``stain`` task: A = an IHC or H&E tile, B = the same tile re-stained H&E-like.

Sources: scikit-image's ``data.immunohistochemistry()`` (IHC: haematoxylin +
DAB) and, when stardist's sample data is installed, its H&E sample ``histo.jpg``.
"""

from __future__ import annotations

import numpy as np

from napari_i2i.frontends.sample_data import DAB_TO_EOSIN, H_SCALE, he_like_restain

from . import stardist_data
from .task import Task, pixel_sha256, tiled_task


def stain_transform(rgb: np.ndarray) -> np.ndarray:
    """The fixed IHC -> H&E-like re-staining (uint8 RGB in and out, pixel-wise).

    The package's own :func:`napari_i2i.frontends.sample_data.he_like_restain`, so the
    demo's style reference and this task's domain B are one transform.
    """
    return he_like_restain(rgb)


def stain_sources(use_stardist: bool = True) -> tuple[list[tuple[str, np.ndarray]], dict]:
    from skimage import data

    sources = [("ihc", data.immunohistochemistry())]
    record = {"ihc": {"origin": "skimage.data.immunohistochemistry()"}}
    path = stardist_data.stardist_data_file("histo.jpg") if use_stardist else None
    if path is not None:
        from PIL import Image

        with Image.open(path) as im:
            sources.append(("he", np.asarray(im.convert("RGB"))))
        record["he"] = {"origin": "stardist/data/images/histo.jpg"}
    else:
        record["he"] = {"skipped": "disabled" if not use_stardist else
                        "stardist not installed (pip install --no-deps stardist)"}
    for source, image in sources:
        record[source].update(shape=list(image.shape), pixel_sha256=pixel_sha256(image))
    return sources, record


def stain_task(tile: int = 64, seed: int = 0, use_stardist: bool = True) -> Task:
    """Stain shift: A = IHC / H&E tile, B = :func:`stain_transform` of it."""
    sources, record = stain_sources(use_stardist)
    splits, cells = tiled_task(sources, stain_transform, lambda im: im, tile, seed)
    manifest = {
        "transform": {
            "function": "benchmarks.tasks.generate.stain_transform",
            "description": "HED space (skimage rgb2hed/hed2rgb): H'=h_scale*H, E'=E+dab_to_eosin*DAB, DAB'=0",
            "h_scale": H_SCALE, "dab_to_eosin": DAB_TO_EOSIN,
        },
        "sources": record, "cells": cells,
        "a": "original RGB tile", "b": "re-stained RGB tile",
    }
    return Task("stain", splits, manifest)
