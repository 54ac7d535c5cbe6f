"""Fused optimiser steps (TrainingRuntime.fuse_optimizer_steps): the arithmetic of torch's
per-parameter loop in one kernel; optimisers without one left alone; a run and its resume fused."""

import pytest
import torch
from conftest import tiny_munit_settings, tiny_munit_trainer
from torch import nn

from trainers.loop import CHECKPOINT_NAME
from trainers.precision import TrainingRuntime
from trainers.run import train

CPU = torch.device("cpu")


def run_steps(trainer, iterations):
    losses = []
    for iteration in iterations:
        generator = torch.Generator().manual_seed(iteration)
        batch = tuple(torch.rand(2, 3, 16, 16, generator=generator) * 2 - 1 for _ in range(2))
        torch.manual_seed(100 + iteration)
        losses.append(trainer.step(batch, iteration))
    return losses


def translations(trainer):
    """What the trained generator makes of fixed images. (Weights are no measure: the gradients
    of a bias before an instance norm are rounding noise, which Adam scales up to full steps.)"""
    generator = torch.Generator().manual_seed(7)
    images = [torch.rand(1, 3, 16, 16, generator=generator) * 2 - 1 for _ in range(2)]
    with torch.no_grad():
        return torch.cat(trainer.translate_for_display(*images))


def fused_flags(optimizer):
    return [(group["fused"], group["foreach"]) for group in optimizer.param_groups]


def test_fused_adam_steps_compute_what_the_loop_does():
    plain, fused = tiny_munit_trainer(), tiny_munit_trainer()
    TrainingRuntime(CPU).fuse_optimizer_steps(fused.optimizers().values())
    assert all(fused_flags(o) == [(True, False)] * len(o.param_groups) for o in fused.optimizers().values())
    assert all(not group["fused"] for o in plain.optimizers().values() for group in o.param_groups)
    plain_losses, fused_losses = run_steps(plain, range(3)), run_steps(fused, range(3))
    for plain_step, fused_step in zip(plain_losses, fused_losses):
        assert fused_step == pytest.approx(plain_step, rel=1e-5, abs=1e-6)
    assert torch.allclose(translations(plain), translations(fused), atol=1e-5)
    assert not torch.allclose(translations(tiny_munit_trainer()), translations(fused), atol=1e-3)  # it trained


def test_a_started_optimiser_is_fused_and_one_without_a_fused_step_left_alone():
    """Fused after a step (as after a checkpoint is loaded): its state carries on."""
    plain, fused = tiny_munit_trainer(), tiny_munit_trainer()
    run_steps(plain, range(1))
    run_steps(fused, range(1))
    TrainingRuntime(CPU).fuse_optimizer_steps(fused.optimizers().values())
    plain_losses, fused_losses = run_steps(plain, range(1, 3)), run_steps(fused, range(1, 3))
    for plain_step, fused_step in zip(plain_losses, fused_losses):
        assert fused_step == pytest.approx(plain_step, rel=1e-5, abs=1e-6)
    assert torch.allclose(translations(plain), translations(fused), atol=1e-5)
    rmsprop = torch.optim.RMSprop(nn.Linear(2, 2).parameters())
    TrainingRuntime(CPU).fuse_optimizer_steps([rmsprop])
    assert "fused" not in rmsprop.param_groups[0]


def test_a_run_and_its_resume_step_fused(tmp_path):
    settings = tiny_munit_settings(tmp_path, iterations=1, precision="fp32")
    run_dir = tmp_path / "run"

    def saved_flags():
        state = torch.load(run_dir / CHECKPOINT_NAME, weights_only=False)
        return {(group["fused"], group["foreach"]) for optimizer in state["optimizers"].values()
                for group in optimizer["param_groups"]}

    assert train(run_dir, settings) is not None
    assert saved_flags() == {(True, False)}
    state = torch.load(run_dir / CHECKPOINT_NAME, weights_only=False)  # a checkpoint of before fused steps
    for optimizer in state["optimizers"].values():
        for group in optimizer["param_groups"]:
            group["fused"], group["foreach"] = None, None
    torch.save(state, run_dir / CHECKPOINT_NAME)
    assert train(run_dir, resume=True, iterations=2) is not None
    assert saved_flags() == {(True, False)}
