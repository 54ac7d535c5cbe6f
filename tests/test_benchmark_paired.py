"""benchmarks/paired.py: the randomly re-stained paired task and a tiny StEP-vs-MUNIT run."""

import importlib
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # benchmarks/ is not an installed package
    sys.path.insert(0, str(ROOT))

paired = importlib.import_module("benchmarks.paired")
from napari_i2i.frontends.sample_data import he_like_restain  # noqa: E402


def test_tile_parameters_are_deterministic_and_in_range():
    names = [f"t{i:03d}.png" for i in range(200)]
    first = paired.tile_parameters(names, 0)
    assert first == paired.tile_parameters(list(reversed(names)), 0)  # order of the names does not matter
    assert first != paired.tile_parameters(names, 1)
    h, d = np.array(list(first.values())).T
    assert paired.H_SCALE_RANGE[0] <= h.min() and h.max() <= paired.H_SCALE_RANGE[1]
    assert paired.DAB_TO_EOSIN_RANGE[0] <= d.min() and d.max() <= paired.DAB_TO_EOSIN_RANGE[1]
    assert h.std() > 0.2 and d.std() > 0.15  # really spread over the ranges


def test_step_stages_add_up():
    for total in (4, 8, 100, 1600, 1601):
        stages = paired.step_stages(total)
        assert all(n >= 1 for n in stages.values())
        assert sum(stages.values()) == max(total, 4)
    assert paired.step_stages(1600) == {"style_iterations": 300, "generator_iterations": 600,
                                        "finetune_iterations": 200, "mapper_iterations": 500}


def test_pairs_folders_match_by_name(tmp_path):
    task = paired.paired_task(tile=64, seed=0)
    assert set(task.splits["train_a"]) == set(task.splits["train_b"])
    assert set(task.splits["test_a"]) == set(task.splits["test_b"])
    assert not set(task.splits["train_a"]) & set(task.splits["test_a"])
    name = sorted(task.splits["test_a"])[0]
    assert np.array_equal(task.splits["test_b"][name],
                          he_like_restain(task.splits["test_a"][name], *task.manifest["parameters"][name]))
    pairs_a, pairs_b = paired.write_pairs(task, tmp_path)
    names_a = sorted(p.name for p in pairs_a.iterdir())
    assert names_a == sorted(p.name for p in pairs_b.iterdir()) == sorted(task.splits["train_a"])


def test_end_to_end_tiny_run(tmp_path, capsys):
    out = tmp_path / "out"
    assert paired.main(["--out", str(out), "--step-iters", "8", "--munit-iters", "2", "--tile", "32",
                        "--samples", "2"]) == 0
    printed = capsys.readouterr().out
    assert "| identity |" in printed and "style of the target" in printed and "random styles" in printed
    results = json.loads((out / "results.json").read_text())
    methods = [row["method"] for row in results["rows"]]
    assert len(methods) == 8 and methods[0] == "identity"
    fitted = [m for m in methods if "fitted on the target" in m]
    assert [m.split(",")[0] for m in fitted] == ["histogram matching", "Reinhard (torchstain)", "Macenko (torchstain)"]
    assert sum(m.startswith("step") for m in methods) == sum(m.startswith("munit") for m in methods) == 2
    for row in results["rows"]:
        assert np.isfinite(row["psnr"]) and np.isfinite(row["l1"])
        assert (row["diversity"] is not None) == ("random styles" in row["method"])
    assert (out / "runs" / "step" / "model.safetensors").is_file()
    assert (out / "runs" / "munit" / "model.safetensors").is_file()


def test_own_target_baselines_reproduce_a_target_histogram_matching_can_reach():
    inputs = {"x.png": np.full((8, 8, 3), 100, np.uint8)}
    targets = {"x.png": np.full((8, 8, 3), 180, np.uint8)}
    rows = {row["method"].split(",")[0]: row for row in paired.own_target_baselines("t", inputs, targets)}
    assert rows["histogram matching"]["l1"] == 0  # a flat tile matched to a flat target is the target

