"""The run score: how good a run looks on its own validation batch, without ground truth.

A user choosing between runs (settings, seeds) has no target images to compare with; what a run
can know is whether its translations keep the input's structure, come back to the input, look
like the target domain and (multimodal engines) vary with the style. Per direction
(:class:`~napari_i2i.contract.trainer_api.ScoringTranslation`; the L1 terms in [0, 1] pixel units):

* ``structure``: the correlation of local luminance between input and translation — luminance
  (channel mean) correlated per 7×7 window (each window's mean removed, its correlation normalised by
  both windows' standard deviations), the windows weighted by the input's local contrast — times the
  polarity the domains imply (-1 when one domain's structure is bright on dark and the other's dark
  on bright, as fluorescence against bright field; else +1). 1: structure kept; negative: contrast
  inverted; near 0: structure lost.
* ``reconstruction``: mean L1 between the input and its translation back (or re-made in its own style).
* ``colour_gap``: mean |difference| of the per-channel mean and standard deviation between the
  translations and real images of the target domain.
* ``diversity``: mean L1 between translations with two sampled styles (reported, not scored).

``run score = structure - reconstruction - colour_gap`` (each averaged over the directions;
missing terms left out): **higher is better**, at most 1. A direction whose structure is below
:data:`INVERTED_BELOW` is "content lost: contrast inverted", below :data:`LOST_BELOW` "content lost:
structure lost". ``benchmarks/run_selection.py`` measures how this ranks runs against ground truth.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from napari_i2i.contract.trainer_api import ScoringTranslation

WINDOW = 7  # pixels: the local windows of the structure term
INVERTED_BELOW = -0.2  # structure below this: contrast inverted
LOST_BELOW = 0.2  # structure below this (and not inverted): structure lost
POLARITY_MARGIN = 0.2  # |corr(luminance, local contrast)| under this: a domain's polarity is unknown
_EPS = 1e-6


@dataclass(frozen=True)
class RunScore:
    """One validation's score and its terms; ``content_lost`` is None or the reason ("contrast inverted")."""

    score: float
    structure: float
    reconstruction: float | None
    colour_gap: float
    diversity: float | None
    content_lost: str | None
    worst_direction: str  # the direction with the lowest structure, and that structure
    worst_structure: float

    def record(self) -> dict[str, float | str | None]:
        """The JSON-able terms, for the log, the model file and the front ends."""
        return {"run_score": round(self.score, 4), "structure": round(self.structure, 4),
                "reconstruction": _rounded(self.reconstruction), "colour_gap": round(self.colour_gap, 4),
                "diversity": _rounded(self.diversity), "content_lost": self.content_lost}

    def warning(self, iteration: int) -> str | None:
        """The line a front end shows when the content check fails, else None."""
        if self.content_lost is None:
            return None
        return (f"content lost: {self.content_lost} between input and output at iteration {iteration} "
                f"({self.worst_direction}: structure {self.worst_structure:.2f})")


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def luminance(images: torch.Tensor) -> torch.Tensor:
    """``(N, 1, H, W)`` in [0, 1]: the channel mean of images in [-1, 1]."""
    return ((images.float() + 1) / 2).mean(dim=1, keepdim=True)


def _local_mean(images: torch.Tensor) -> torch.Tensor:
    pad = WINDOW // 2
    return F.avg_pool2d(F.pad(images, (pad,) * 4, mode="replicate"), WINDOW, stride=1)


def local_correlation(source: torch.Tensor, translated: torch.Tensor) -> torch.Tensor:
    """Per image ``(N,)``: the correlation of local luminance between *source* and *translated*
    (both ``(N, C, H, W)`` in [-1, 1], any channel counts), windows weighted by the source's contrast."""
    x, y = luminance(source), luminance(translated)
    if x.shape[-2:] != y.shape[-2:]:
        raise ValueError(f"source and translation differ in size: {tuple(x.shape[-2:])} and {tuple(y.shape[-2:])}")
    mean_x, mean_y = _local_mean(x), _local_mean(y)
    var_x = (_local_mean(x * x) - mean_x**2).clamp_min(0)
    var_y = (_local_mean(y * y) - mean_y**2).clamp_min(0)
    covariance = _local_mean(x * y) - mean_x * mean_y
    correlation = covariance / (var_x * var_y + _EPS**2).sqrt()
    weight = var_x.sqrt()
    return (correlation * weight).flatten(1).sum(1) / (weight.flatten(1).sum(1) + _EPS)


def structure_sign(images: torch.Tensor) -> int:
    """+1 when structure is bright on dark (fluorescence), -1 when dark on bright (bright field), 0
    when unclear: the sign of the correlation of luminance with its local contrast (7×7 std),
    beyond :data:`POLARITY_MARGIN`."""
    values = luminance(images)
    mean = _local_mean(values)
    contrast = (_local_mean(values * values) - mean**2).clamp_min(0).sqrt()
    x, y = values.flatten() - values.mean(), contrast.flatten() - contrast.mean()
    correlation = float((x * y).sum() / (x.norm() * y.norm() + _EPS))
    return 0 if abs(correlation) < POLARITY_MARGIN else (1 if correlation > 0 else -1)


def expected_polarity(source: torch.Tensor, target_examples: torch.Tensor) -> int:
    """-1 where one domain's structure is bright on dark and the other's dark on bright (contrast
    should invert), else +1."""
    return -1 if structure_sign(source) * structure_sign(target_examples) < 0 else 1


def colour_gap(translated: torch.Tensor, target_examples: torch.Tensor) -> float:
    """Mean |difference| of per-channel mean and standard deviation (in [0, 1] units)."""
    if translated.shape[1] != target_examples.shape[1]:
        raise ValueError(f"translations have {translated.shape[1]} channels, the target images "
                         f"{target_examples.shape[1]}")
    a, b = ((t.float() + 1) / 2 for t in (translated, target_examples))
    a, b = (t.transpose(0, 1).flatten(1) for t in (a, b))
    return float((a.mean(1) - b.mean(1)).abs().mean() + (a.std(1) - b.std(1)).abs().mean())


def mean_l1(first: torch.Tensor, second: torch.Tensor) -> float:
    """Mean absolute difference in [0, 1] units of two image batches in [-1, 1]."""
    return float((first.float() - second.float()).abs().mean() / 2)


def _mean(values: Sequence[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return sum(present) / len(present) if present else None


@torch.no_grad()
def run_score(translations: Sequence[ScoringTranslation]) -> RunScore:
    """The score of one validation (see the module); at least one direction is needed."""
    if not translations:
        raise ValueError("the run score needs at least one translated direction")
    structures, reconstructions, gaps, diversities = [], [], [], []
    for t in translations:
        polarity = expected_polarity(t.source, t.target_examples)
        structures.append(polarity * float(local_correlation(t.source, t.translated).mean()))
        reconstructions.append(None if t.reconstructed is None else mean_l1(t.reconstructed, t.source))
        gaps.append(colour_gap(t.translated, t.target_examples))
        diversities.append(None if t.second_style is None else mean_l1(t.translated, t.second_style))
    structure, reconstruction, gap = _mean(structures), _mean(reconstructions), _mean(gaps)
    worst = min(range(len(translations)), key=structures.__getitem__)
    lost = ("contrast inverted" if structures[worst] < INVERTED_BELOW
            else "structure lost" if structures[worst] < LOST_BELOW else None)
    score = structure - (reconstruction or 0.0) - gap
    return RunScore(score, structure, reconstruction, gap, _mean(diversities), lost,
                    translations[worst].direction, structures[worst])
