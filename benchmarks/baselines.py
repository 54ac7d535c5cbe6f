"""What a microscopist would use instead of a trained model, fitted on what the engines get.

Every baseline maps test inputs to outputs without training and without the test
targets; each is fitted on *references*: the target-domain images an engine is
trained on (an unpaired task's ``train_b``) or the K example tiles of a few-shot class.

* ``identity``: the input (channels converted as ``benchmarks.tasks.metrics.to_channels``).
* ``histogram matching``: ``skimage.exposure.match_histograms`` to the pooled references.
* ``Reinhard`` and ``Macenko``: torchstain's stain normalisers (numpy backend) fitted on
  the references laid side by side as one image (RGB to RGB only).
* ``nearest class`` (few-shot): the training class whose own rendering of the reference
  tiles is closest in L1, applied to the input (:func:`nearest_class`).

A normaliser that cannot be fitted (Macenko on references with too little stain
raises in its eigen-decomposition) or applied to an image falls back to the input
for the images concerned; the number of fallbacks is reported with the row.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import warnings

import numpy as np

from benchmarks.tasks.metrics import to_channels

Predictions = dict[str, np.ndarray]


def _channels(image: np.ndarray) -> int:
    return 1 if image.ndim == 2 else image.shape[-1]


def _mosaic(references: Sequence[np.ndarray]) -> np.ndarray:
    """The references side by side (cropped to the smallest height): one image to fit on."""
    height = min(r.shape[0] for r in references)
    return np.concatenate([np.ascontiguousarray(r[:height]) for r in references], axis=1)


def identity(inputs: Mapping[str, np.ndarray], references: Sequence[np.ndarray]) -> tuple[Predictions, int]:
    channels = _channels(references[0])
    return {name: to_channels(a, channels) for name, a in inputs.items()}, 0


def histogram_matching(inputs: Mapping[str, np.ndarray],
                       references: Sequence[np.ndarray]) -> tuple[Predictions, int]:
    from skimage.exposure import match_histograms

    channels = _channels(references[0])
    pooled = np.concatenate([np.asarray(r) for r in references], axis=0)
    out = {}
    for name, a in inputs.items():
        matched = match_histograms(to_channels(a, channels), pooled, channel_axis=-1 if channels == 3 else None)
        out[name] = np.clip(np.round(matched), 0, 255).astype(np.uint8)
    return out, 0


def _stain_normaliser(kind: str) -> Callable[[Mapping[str, np.ndarray], Sequence[np.ndarray]], tuple[Predictions, int]]:
    def normalise(inputs: Mapping[str, np.ndarray], references: Sequence[np.ndarray]) -> tuple[Predictions, int]:
        from torchstain.numpy.normalizers import NumpyMacenkoNormalizer, NumpyReinhardNormalizer

        if _channels(references[0]) != 3 or any(_channels(a) != 3 for a in inputs.values()):
            raise ValueError(f"{kind} normalises RGB images to RGB references")
        normaliser = NumpyReinhardNormalizer() if kind == "Reinhard" else NumpyMacenkoNormalizer()
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore", RuntimeWarning)
            try:
                normaliser.fit(_mosaic(references))
            except Exception:  # noqa: BLE001 (e.g. LinAlgError: references with too little stain)
                return {name: a.copy() for name, a in inputs.items()}, len(inputs)
            return _apply(normaliser, kind, inputs)

    return normalise


def _apply(normaliser, kind: str, inputs: Mapping[str, np.ndarray]) -> tuple[Predictions, int]:
    """A fitted torchstain normaliser on every input; the input itself where it fails."""
    out, fallbacks = {}, 0
    for name, a in inputs.items():
        try:
            result = normaliser.normalize(a) if kind == "Reinhard" else normaliser.normalize(a, stains=False)[0]
            result = np.asarray(result, np.float64)
            if not np.isfinite(result).all():
                raise FloatingPointError("non-finite output")
            out[name] = np.clip(np.round(result), 0, 255).astype(np.uint8)
        except Exception:  # noqa: BLE001 (torchstain raises bare numpy errors on stain-poor tiles)
            out[name], fallbacks = a.copy(), fallbacks + 1
    return out, fallbacks


#: Baselines for unpaired and few-shot tasks: name -> (inputs, references) -> (predictions, fallbacks).
BASELINES: dict[str, Callable[[Mapping[str, np.ndarray], Sequence[np.ndarray]], tuple[Predictions, int]]] = {
    "identity": identity,
    "histogram matching": histogram_matching,
    "Reinhard (torchstain)": _stain_normaliser("Reinhard"),
    "Macenko (torchstain)": _stain_normaliser("Macenko"),
}
#: The baselines that only apply when inputs and references are RGB.
RGB_ONLY = ("Reinhard (torchstain)", "Macenko (torchstain)")


def applicable(inputs: Mapping[str, np.ndarray], references: Sequence[np.ndarray]) -> list[str]:
    """The baselines that apply to these images (stain normalisers: RGB to RGB)."""
    rgb = _channels(references[0]) == 3 and all(_channels(a) == 3 for a in inputs.values())
    return [name for name in BASELINES if rgb or name not in RGB_ONLY]


def run_all(inputs: Mapping[str, np.ndarray], references: Sequence[np.ndarray]) -> dict[str, tuple[Predictions, int]]:
    """Every applicable baseline's ``(predictions, fallbacks)``."""
    if not references:
        raise ValueError("the baselines need at least one reference image")
    return {name: BASELINES[name](inputs, references) for name in applicable(inputs, references)}


def nearest_class(references: Sequence[np.ndarray], renderings: Mapping[str, Sequence[np.ndarray]]) -> str:
    """The class whose ``renderings`` of the reference tiles (same order) are closest in mean L1
    to ``references``; ties go to the first name in sorted order."""
    def distance(name: str) -> float:
        return float(np.mean([np.abs(r.astype(np.float64) - c.astype(np.float64)).mean()
                              for r, c in zip(references, renderings[name], strict=True)]))

    return min(sorted(renderings), key=distance)
