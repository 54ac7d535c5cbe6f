"""benchmarks/baselines.py: every baseline runs; Reinhard and Macenko fitted on the target
reproduce it better than the identity on the stain tasks; the nearest class is found."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # benchmarks/ is not an installed package
    sys.path.insert(0, str(ROOT))

from benchmarks import baselines  # noqa: E402
from benchmarks.tasks import fewshot_stain as fs  # noqa: E402
from benchmarks.tasks import generate as gen  # noqa: E402
from benchmarks.tasks.metrics import score  # noqa: E402


@pytest.mark.parametrize("name", ["stain", "keep_change"])
def test_stain_normalisers_fitted_on_the_target_beat_identity(name):
    task = gen.generate(name, tile=64, seed=0, **({"use_stardist": False} if name == "stain" else {}))
    targets = task.splits["test_b"]
    identity = score(targets, baselines.identity(task.splits["test_a"], [next(iter(targets.values()))])[0])
    for method in baselines.RGB_ONLY:
        predictions = {n: baselines.BASELINES[method]({n: a}, [targets[n]])[0][n]
                       for n, a in task.splits["test_a"].items()}
        assert score(targets, predictions)["l1"] < identity["l1"], method


def test_every_baseline_runs_and_leaves_inputs_alone():
    task = gen.generate("keep_change", tile=64, seed=0)
    inputs = {n: a.copy() for n, a in task.splits["test_a"].items()}
    references = list(task.splits["train_b"].values())
    results = baselines.run_all(inputs, references)
    assert set(results) == set(baselines.BASELINES)
    for method, (predictions, fallbacks) in results.items():
        assert set(predictions) == set(inputs) and 0 <= fallbacks <= len(inputs), method
        assert all(p.shape == inputs[n].shape and p.dtype == np.uint8 for n, p in predictions.items())
    assert all(np.array_equal(inputs[n], task.splits["test_a"][n]) for n in inputs)
    assert np.array_equal(results["identity"][0][next(iter(inputs))], next(iter(inputs.values())))


def test_grey_images_get_no_stain_normaliser_and_empty_references_are_refused():
    grey = {"x": np.full((16, 16), 100, np.uint8)}
    assert baselines.applicable(grey, [np.zeros((16, 16), np.uint8)]) == ["identity", "histogram matching"]
    with pytest.raises(ValueError, match="at least one reference"):
        baselines.run_all(grey, [])
    with pytest.raises(ValueError, match="RGB"):
        baselines.BASELINES["Macenko (torchstain)"](grey, [np.zeros((16, 16), np.uint8)])


def test_macenko_falls_back_to_the_input_on_blank_references():
    tile = np.full((16, 16, 3), 250, np.uint8)
    predictions, fallbacks = baselines.BASELINES["Macenko (torchstain)"]({"x": tile}, [tile])
    assert fallbacks == 1 and np.array_equal(predictions["x"], tile)


def test_nearest_class_finds_the_look_of_the_references():
    task = fs.fewshot_stain_task(tile=64, seed=0)
    chosen = task.reference_cells[:3]
    renderings = {look: [task.render(look, c) for c in chosen] for look in task.train_looks}
    for look in task.train_looks:
        assert baselines.nearest_class(renderings[look], renderings) == look
