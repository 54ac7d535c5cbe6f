"""Baselines of the few-shot glyph task; they use no training and no test targets.

:func:`identity_prediction`: the source font's glyph. :func:`nearest_font_prediction`:
the glyph of the training font closest in L1 to the unseen font on the K example characters.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from .fewshot import FewShotTask


def mean_l1(a: Mapping[str, np.ndarray], b: Mapping[str, np.ndarray], chars: str) -> float:
    """Mean absolute grey-level difference over ``chars`` of two fonts' glyphs."""
    return float(np.mean([np.abs(a[c].astype(np.float64) - b[c].astype(np.float64)).mean() for c in chars]))


def nearest_font(examples: Mapping[str, np.ndarray],
                 candidates: Mapping[str, Mapping[str, np.ndarray]]) -> str:
    """The candidate font whose glyphs of the example characters are closest in mean L1
    to ``examples`` (``{char: glyph}``); ties go to the first name in sorted order."""
    if not examples:
        raise ValueError("the nearest-font baseline needs at least one example glyph")
    chars = "".join(examples)
    distances = {name: mean_l1(examples, candidates[name], chars) for name in sorted(candidates)}
    return min(distances, key=distances.get)


def identity_prediction(task: FewShotTask) -> dict[str, np.ndarray]:
    """The source font's glyphs of the test characters."""
    return {c: task.glyphs[task.source][c] for c in task.test_chars}


def nearest_font_prediction(task: FewShotTask, font: str, draw: int,
                            k: int) -> tuple[str, dict[str, np.ndarray]]:
    """``(chosen training font, its glyphs of the test characters)`` for unseen ``font``'s K-shot draw."""
    examples = {c: task.glyphs[font][c] for c in task.examples(font, draw, k)}
    chosen = nearest_font(examples, {f: task.glyphs[f] for f in task.train_fonts})
    return chosen, {c: task.glyphs[chosen][c] for c in task.test_chars}
