"""Sample data for *File → Open Sample → napari-i2i*: the inputs of the stain demo.

Both images come from scikit-image's ``data.immunohistochemistry()`` (a 512²
IHC image: haematoxylin + DAB; bundled with scikit-image, no download),
cut into two 256² regions that do not overlap:

- **IHC** — the source the bundled ``stain_munit`` model translates (domain A).
- **H&E-like reference** — another region, re-stained by :func:`he_like_restain`.
  It is *synthetic*: the same fixed re-staining that made the stain model's
  domain B (the quality benchmark's stain task), not a real H&E slide. As a
  style reference it tells MUNIT which look to produce.

Both regions are part of the image the stain model was trained on, so the
demo shows the widget at work, not how the model generalises.
"""

from __future__ import annotations

from typing import Any

import numpy as np

#: (rows, columns) of the source: the round gland at the bottom and the stroma around it.
SOURCE_REGION = (slice(256, 512), slice(192, 448))
#: (rows, columns) of the style reference: the top-right gland; no pixel shared with the source.
REFERENCE_REGION = (slice(0, 256), slice(256, 512))
#: Haematoxylin concentration is multiplied by this (darker, bluer nuclei) ...
H_SCALE = 1.5
#: ... and DAB concentration times this is added to eosin (brown -> pink); DAB is emptied.
DAB_TO_EOSIN = 0.5
ORIGIN = "skimage.data.immunohistochemistry()"

LayerData = tuple[np.ndarray, dict[str, Any], str]


def he_like_restain(
    rgb: np.ndarray, h_scale: float = H_SCALE, dab_to_eosin: float = DAB_TO_EOSIN, dab_kept: float = 0.0
) -> np.ndarray:
    """IHC → H&E-like colours, pixel by pixel, in HED optical-density space (uint8 RGB in and out).

    H' = ``h_scale``·H, E' = E + ``dab_to_eosin``·DAB, DAB' = ``dab_kept``·DAB (by default
    ``H_SCALE`` and ``DAB_TO_EOSIN``; the paired benchmark draws them per tile), through
    ``skimage.color.rgb2hed`` (which clips negative concentrations to 0) and
    ``hed2rgb``; eosin already present is kept. The quality benchmark's stain
    task (``benchmarks/tasks/generate.py``) makes its domain B with it.
    """
    from skimage.color import hed2rgb, rgb2hed

    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[-1] != 3:
        raise ValueError(f"expected uint8 RGB, got {rgb.dtype} {rgb.shape}")
    hed = rgb2hed(rgb)
    out = np.zeros_like(hed)
    out[..., 0] = h_scale * hed[..., 0]
    out[..., 1] = hed[..., 1] + dab_to_eosin * hed[..., 2]
    out[..., 2] = dab_kept * hed[..., 2]
    return np.round(np.clip(hed2rgb(out), 0.0, 1.0) * 255.0).astype(np.uint8)


def _ihc() -> np.ndarray:
    from skimage import data

    return data.immunohistochemistry()


def _region(region: tuple[slice, slice]) -> list[int]:
    return [region[0].start, region[0].stop, region[1].start, region[1].stop]


def ihc_tile() -> list[LayerData]:
    """The stain demo's source: a 256² IHC region (RGB)."""
    data = np.ascontiguousarray(_ihc()[SOURCE_REGION])
    about = {"origin": ORIGIN, "region_rows_cols": _region(SOURCE_REGION)}
    return [(data, {"name": "IHC", "rgb": True, "metadata": {"napari_i2i_sample": about}}, "image")]


def he_like_reference() -> list[LayerData]:
    """The stain demo's style reference: another IHC region, synthetically re-stained H&E-like."""
    data = he_like_restain(np.ascontiguousarray(_ihc()[REFERENCE_REGION]))
    about = {
        "origin": ORIGIN,
        "region_rows_cols": _region(REFERENCE_REGION),
        "synthetic": f"napari_i2i.frontends.sample_data.he_like_restain (H x{H_SCALE}, "
                     f"E + {DAB_TO_EOSIN} DAB, no DAB); not a real H&E image",
    }
    return [(data, {"name": "H&E-like reference", "rgb": True,
                    "metadata": {"napari_i2i_sample": about}}, "image")]
