"""The ``digits`` task: a change of shape, not colour — handwriting -> typeset digits.

A = one of scikit-learn's handwritten digits (``sklearn.datasets.load_digits``: 1797
images, 8×8, ships with the package), upsampled bilinearly to a round(0.6·tile)
square and centred on a white tile, dark ink (16 -> black). B = a digit drawn in an
installed font (every face of the few-shot task's :data:`~benchmarks.tasks.fewshot.FAMILIES`,
rendered as the glyph tasks render them). Unpaired: train_a holds 80 % of the
handwritten digits, train_b the digits of the training faces; a seeded fifth of the
faces is held out. test_a holds the other handwritten digits; ``test_b`` is the same
digit in a held-out face: one valid answer among many, so pixel metrics are secondary.

The score is a :class:`DigitJudge` fitted on both training halves (scikit-learn logistic
regression on 16×16 pixels): *digit kept*, the fraction of outputs it reads as the
input's digit, and *looks typeset*, the fraction a second regression (handwritten vs
typeset) puts in domain B. Identity keeps the digit and does not look typeset.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from .fonts import discover_fonts, render_face
from .metrics import score, to_channels
from .task import MissingData, Task, pixel_sha256, split_indices

DIGITS = "0123456789"
#: Side of the upsampled handwritten digit as a fraction of the tile (the glyphs' font size).
HANDWRITING_FRACTION = 0.6
#: Fraction of font faces held out for test_b.
TEST_FACE_FRACTION = 0.2
#: The judge's features: images resized to this side.
JUDGE_SIDE = 16


def label_of(file: str) -> int:
    """The digit a file name ends with (``..._d7.png`` -> 7)."""
    return int(file.rsplit("_d", 1)[1][0])


def handwritten(image8: np.ndarray, tile: int) -> np.ndarray:
    """An 8×8 sklearn digit (0-16, ink high) as a uint8 tile: dark ink on white, centred."""
    from skimage.transform import resize

    side = int(round(HANDWRITING_FRACTION * tile))
    ink = resize(image8 / 16.0, (side, side), order=1, anti_aliasing=False)
    out = np.zeros((tile, tile))
    top = (tile - side) // 2
    out[top:top + side, top:top + side] = ink
    return np.round(255.0 * (1.0 - np.clip(out, 0.0, 1.0))).astype(np.uint8)


def _font_digits(tile: int) -> dict[str, dict[str, np.ndarray]]:
    from .fewshot import FAMILIES

    faces, _ = discover_fonts(FAMILIES)
    rendered = {}
    for face in faces:
        glyphs, missing = render_face(face, DIGITS, tile)
        if not missing:
            rendered[face.slug] = glyphs
    if len(rendered) < 3:
        raise MissingData("the digits task needs at least 3 installed font faces "
                          "(apt-get install -y fonts-dejavu-core fonts-urw-base35)")
    return rendered


def digits_task(tile: int = 32, seed: int = 0) -> Task:
    """Handwritten (A) -> typeset (B) digits; see the module docstring."""
    from sklearn.datasets import load_digits

    if tile < 16:
        raise ValueError("the digits task needs --tile >= 16")
    data = load_digits()
    rng = np.random.default_rng([seed, 31])
    idx_a, idx_b, idx_test = split_indices(len(data.images), rng)
    train_idx = np.sort(np.concatenate([idx_a, idx_b]))
    fonts = _font_digits(tile)
    names = sorted(fonts)
    order = rng.permutation(len(names))
    n_test = max(1, int(round(TEST_FACE_FRACTION * len(names))))
    test_faces, train_faces = sorted(names[i] for i in order[:n_test]), sorted(names[i] for i in order[n_test:])

    def hw(i: int) -> tuple[str, np.ndarray]:
        return f"hw{i:04d}_d{int(data.target[i])}.png", handwritten(data.images[i], tile)

    splits = {s: {} for s in ("train_a", "train_b", "test_a", "test_b")}
    splits["train_a"] = dict(hw(int(i)) for i in train_idx)
    splits["train_b"] = {f"{face}_d{d}.png": fonts[face][d] for face in train_faces for d in DIGITS}
    for position, i in enumerate(idx_test):
        name, image = hw(int(i))
        splits["test_a"][name] = image
        splits["test_b"][name] = fonts[test_faces[position % len(test_faces)]][str(data.target[i])]
    manifest = {
        "sources": {"a": {"origin": "sklearn.datasets.load_digits()", "pixel_sha256": pixel_sha256(data.images)},
                    "b": {"families": "benchmarks.tasks.fewshot.FAMILIES", "train_faces": train_faces,
                          "test_faces": test_faces}},
        "a": "handwritten digit, 1 channel", "b": "typeset digit, 1 channel",
        "test_b": "the digit in a held-out face (one valid answer; the judge scores the task)",
    }
    return Task("digits", splits, manifest)


def _features(images: Sequence[np.ndarray]) -> np.ndarray:
    from skimage.transform import resize

    return np.stack([resize(to_channels(im, 1) / 255.0, (JUDGE_SIDE, JUDGE_SIDE), anti_aliasing=True).ravel()
                     for im in images])


class DigitJudge:
    """Which digit is this, and is it handwritten or typeset? Fitted on the training halves only."""

    def __init__(self, task: Task, seed: int = 0):
        from sklearn.linear_model import LogisticRegression

        a, b = task.splits["train_a"], task.splits["train_b"]
        x = _features([*a.values(), *b.values()])
        digits = np.array([label_of(n) for n in (*a, *b)])
        typeset = np.array([0] * len(a) + [1] * len(b))
        self.digit = LogisticRegression(max_iter=2000, C=1.0, random_state=seed).fit(x, digits)
        self.domain = LogisticRegression(max_iter=2000, C=1.0, random_state=seed).fit(x, typeset)

    def judge(self, predictions: Mapping[str, Sequence[np.ndarray]]) -> tuple[float, float]:
        """``(digit kept, looks typeset)``: fractions over every sample of every test input."""
        names = [n for n in predictions for _ in predictions[n]]
        x = _features([s for n in predictions for s in predictions[n]])
        kept = np.mean(self.digit.predict(x) == np.array([label_of(n) for n in names]))
        return float(kept), float(np.mean(self.domain.predict(x) == 1))


def digits_scores(task: Task, predictions: Mapping, judge: DigitJudge) -> dict:
    """Digit kept and looks typeset (the judge), and PSNR/SSIM/L1 against ``test_b``."""
    samples = {n: list(p) if isinstance(p, (list, tuple)) else [p] for n, p in predictions.items()}
    kept, typeset = judge.judge({n: samples[n] for n in task.splits["test_a"]})
    return {**score(task.splits["test_b"], samples), "digit_kept": kept, "looks_typeset": typeset}
