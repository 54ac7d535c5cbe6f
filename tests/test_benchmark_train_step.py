"""benchmarks/train_step.py: the iteration time and its split, on tiny networks."""

import importlib
import math
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # benchmarks/ is not an installed package
    sys.path.insert(0, str(ROOT))

train_step = importlib.import_module("benchmarks.train_step")

TINY = {"munit": {"dim": 8, "mlp_dim": 16, "n_res": 1}, "unit": {"dim": 8, "n_res": 1}}


@pytest.mark.parametrize("engine", sorted(TINY))
def test_measure_splits_the_iteration(engine):
    row = train_step.measure(engine, "small", size=32, batch=2, iters=3, warmup=1, device="cpu",
                             model=TINY[engine], training={"dis_dim": 8})
    assert row["engine"] == engine and row["size"] == 32 and row["device"] == "cpu"
    assert all(math.isfinite(row[name]) and row[name] > 0 for name in ("total", "cpu", *train_step.PHASES))
    assert len(row["per_iteration"]) == 3
    for one in row["per_iteration"]:  # the phases are consecutive parts of one step
        assert sum(one[name] for name in train_step.PHASES) <= one["total"]


def test_command_line_prints_a_row_per_size(capsys, monkeypatch):
    real = train_step.measure
    monkeypatch.setattr(train_step, "measure", lambda *args, training=None: real(
        *args, model=TINY["munit"], training={"dis_dim": 8, **(training or {})}))
    train_step.main(["--preset", "small", "--sizes", "32", "48", "--iters", "1", "--warmup", "0"])
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("engine munit, preset small, batch 1, median of 1")
    assert [line.split()[0] for line in lines[2:]] == ["32", "48"]


@pytest.mark.parametrize("engine", ["unit", "funit"])
def test_variants_are_stepped_in_turn_with_ratios_to_eager_fp32(engine):
    model = {"funit": {"dim": 8, "n_res": 1, "mlp_dim": 16, "class_dim": 8}}.get(engine, TINY["unit"])
    training = {"funit": {"dis_dim": 8, "dis_blocks": 4}}.get(engine, {"dis_dim": 8, "cycle_weight": 0.0})
    row = train_step.compare_variants(engine, "small", size=16, batch=2, rounds=2, warmup=1,
                                      variants=["eager-fp32", "eager-bf16"], training=training, model=model)
    assert list(row["variants"]) == ["eager-fp32", "eager-bf16"]
    assert row["variants"]["eager-fp32"]["ratio"] == 1.0
    assert all(figures["seconds"] > 0 and figures["ratio"] > 0 for figures in row["variants"].values())


def test_probe_variants_run_and_ratios_are_to_the_first_named(monkeypatch):
    """Unfused optimiser steps (the step before fused ones) and channels_last networks and batches."""
    from trainers.precision import TrainingRuntime

    fused = []
    fuse = TrainingRuntime.fuse_optimizer_steps
    monkeypatch.setattr(TrainingRuntime, "fuse_optimizer_steps",
                        lambda self, optimizers: fused.append(self.precision) or fuse(self, optimizers))
    names = ["eager-fp32-unfused", "eager-bf16-cl"]
    row = train_step.compare_variants("munit", "small", size=16, batch=1, rounds=1, warmup=0, variants=names,
                                      training={"dis_dim": 8}, model=TINY["munit"])
    assert list(row["variants"]) == names and row["variants"]["eager-fp32-unfused"]["ratio"] == 1.0
    assert fused == ["bf16"]  # only the variant with fused steps
