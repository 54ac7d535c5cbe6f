"""The failure-mode tasks (benchmarks/tasks: keep_change, digits, fewshot_stain): determinism,
exact masks and ground truth, and what the baselines score on them."""

from __future__ import annotations

import filecmp
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # benchmarks/ is not an installed package
    sys.path.insert(0, str(ROOT))

from benchmarks.tasks import digits as digit_task  # noqa: E402
from benchmarks.tasks import fewshot_stain as fs  # noqa: E402
from benchmarks.tasks import generate as gen  # noqa: E402
from benchmarks.tasks import keep_change as kc  # noqa: E402
from benchmarks.tasks import task as task_files  # noqa: E402
from benchmarks.tasks.fewshot import FAMILIES  # noqa: E402
from benchmarks.tasks.fonts import discover_fonts  # noqa: E402
from benchmarks.tasks.metrics import identity_baseline  # noqa: E402

needs_fonts = pytest.mark.skipif(len(discover_fonts(FAMILIES)[0]) < 3,
                                 reason="needs installed fonts (apt-get install -y fonts-dejavu-core fonts-urw-base35)")


@pytest.fixture(scope="module")
def keep_change():
    return gen.generate("keep_change", tile=64, seed=0)


@pytest.fixture(scope="module")
def digits():
    return gen.generate("digits", tile=16, seed=0)


# ------------------------------------------------------------------------- keep_change

def test_keep_change_is_deterministic_and_round_trips(keep_change, tmp_path):
    first = task_files.write_task(keep_change, tmp_path / "one")
    second = task_files.write_task(gen.generate("keep_change", tile=64, seed=0), tmp_path / "two")
    for split in (*task_files.SPLITS, "test_mask"):
        files = sorted(p.name for p in (first / split).iterdir())
        assert files and files == sorted(p.name for p in (second / split).iterdir())
        _, mismatch, errors = filecmp.cmpfiles(first / split, second / split, files, shallow=False)
        assert not mismatch and not errors
    loaded = task_files.load_task(first)
    for name, mask in keep_change.splits["test_mask"].items():
        assert np.array_equal(loaded.splits["test_mask"][name], mask)
    assert set(gen.generate("keep_change", tile=64, seed=1).splits["test_a"]) != set(keep_change.splits["test_a"])


def test_keep_change_mask_is_exact(keep_change):
    for name, a in keep_change.splits["test_a"].items():
        b, mask = keep_change.splits["test_b"][name], keep_change.splits["test_mask"][name] == kc.MASK_CHANGE
        assert np.array_equal(b[~mask], a[~mask]), "must-stay pixels are the input's"
        assert np.array_equal(b, kc.keep_change_transform(a))
        assert np.array_equal(mask, kc.change_mask(a))
    changed = keep_change.manifest["test_changed_fraction"]
    assert 0.1 < changed < 0.9, "both regions are substantial"


def test_keep_change_scores_identity_and_truth(keep_change):
    identity = kc.keep_change_scores(keep_change, identity_baseline(keep_change))
    assert identity["l1_stay"] == 0.0 and identity["l1_change"] > 30
    truth = kc.keep_change_scores(keep_change, keep_change.splits["test_b"])
    assert truth["l1_stay"] == truth["l1_change"] == 0.0 and truth["psnr"] == 100.0
    assert kc.meets_bar(truth, identity) and not kc.meets_bar(identity, identity)
    recoloured_everything = {n: kc.he_like_restain(a, 1.0, 1.0) for n, a in keep_change.splits["test_a"].items()}
    wrong = kc.keep_change_scores(keep_change, recoloured_everything)
    assert wrong["l1_change"] == 0.0 and wrong["l1_stay"] > kc.STAY_ALLOWANCE
    assert not kc.meets_bar(wrong, identity), "recolouring the must-stay pixels fails the bar"


# ------------------------------------------------------------------------------ digits

@needs_fonts
def test_digits_split_and_labels(digits):
    a, b, test = (digits.splits[s] for s in ("train_a", "train_b", "test_a"))
    assert not set(a) & set(test) and set(test) == set(digits.splits["test_b"])
    assert len(a) + len(test) == 1797
    faces = digits.manifest["sources"]["b"]
    assert not set(faces["train_faces"]) & set(faces["test_faces"])
    assert {digit_task.label_of(n) for n in b} == set(range(10))
    assert all(img.shape == (16, 16) and img.dtype == np.uint8 for img in (*a.values(), *b.values()))
    again = gen.generate("digits", tile=16, seed=0)
    assert all(np.array_equal(again.splits["test_b"][n], digits.splits["test_b"][n]) for n in test)


@needs_fonts
def test_digits_judge_tells_identity_from_truth(digits):
    judge = digit_task.DigitJudge(digits)
    identity = digit_task.digits_scores(digits, identity_baseline(digits), judge)
    truth = digit_task.digits_scores(digits, digits.splits["test_b"], judge)
    assert identity["digit_kept"] > 0.8 and identity["looks_typeset"] < 0.1
    assert truth["digit_kept"] > 0.8 and truth["looks_typeset"] > 0.9
    shuffled = dict(zip(digits.splits["test_b"], np.roll(list(digits.splits["test_b"].values()), 1, axis=0)))
    assert digit_task.digits_scores(digits, shuffled, judge)["digit_kept"] < 0.5, "a wrong digit is caught"


# ----------------------------------------------------------------------- fewshot_stain

def test_fewshot_stain_split_and_determinism(tmp_path):
    task = fs.fewshot_stain_task(tile=64, seed=0)
    cells = [set(task.train_cells), set(task.reference_cells), set(task.test_cells)]
    assert all(cells) and not cells[0] & cells[1] and not cells[0] & cells[2] and not cells[1] & cells[2]
    assert fs.SOURCE_LOOK in task.train_looks and not set(task.train_looks) & set(task.test_looks)
    assert len(task.test_looks) == fs.N_TEST_LOOKS
    for look in task.test_looks:
        assert task.examples(look, 0, 1) == task.examples(look, 0, 5)[:1]
        assert set(task.examples(look, 1, 5)) <= set(task.reference_cells)
    first = fs.write_task(task, tmp_path / "one")
    second = fs.write_task(fs.fewshot_stain_task(tile=64, seed=0), tmp_path / "two")
    assert sorted(p.name for p in (first / "train").iterdir()) == task.train_looks
    files = sorted(p.name for p in (first / "train" / task.train_looks[1]).iterdir())
    _, mismatch, _ = filecmp.cmpfiles(first / "train" / task.train_looks[1],
                                      second / "train" / task.train_looks[1], files, shallow=False)
    assert not mismatch and (first / "manifest.json").read_bytes() == (second / "manifest.json").read_bytes()


def test_fewshot_stain_looks_are_exact_and_distinct():
    task = fs.fewshot_stain_task(tile=64, seed=0)
    cell = task.test_cells[0]
    assert np.array_equal(task.render(fs.SOURCE_LOOK, cell), task.cells[cell])
    look = task.looks[task.test_looks[0]]
    assert np.array_equal(task.render(task.test_looks[0], cell), fs.apply_look(task.cells[cell], look))
    differences = [np.abs(task.render(name, cell).astype(float) - task.cells[cell]).mean()
                   for name in task.looks if name != fs.SOURCE_LOOK]
    assert min(differences) > 2.0, "every drawn look changes the tile"
