"""UNIT trainer: loss terms, tied parameters, validation images (learning, resume and the
CLI round trip run for every trainer in test_training_loop.py and test_train_cli.py)."""

import numpy as np
import pytest
import torch

from engines.unit import UnitEngine
from napari_i2i.frontends.cli import main
from test_training_loop import stripe_batches
from trainers.unit import TRAIN_PRESETS, UnitTrainConfig, build_trainer

TINY_MODEL = dict(dim=8, n_res=1, shared_blocks=1)


def build_unit(seed=0, **overrides):
    torch.manual_seed(seed)
    engine = UnitEngine()
    return engine.build(engine.config("small", **{**TINY_MODEL, **overrides}))


def make_trainer(seed=0, **model):
    # the published terms and networks only (small's identity term and input gate have their own
    # tests, test_identity_term.py and test_input_gate.py)
    return build_trainer(build_unit(seed, **{"input_gate": False, "colour_transform": False, **model}),
                         dict(TRAIN_PRESETS["small"], dis_dim=8, identity_weight=0), torch.device("cpu"))


def test_presets_and_settings():
    assert UnitTrainConfig.from_mapping(TRAIN_PRESETS["paper"]) == UnitTrainConfig(
        lr=1e-4, beta1=0.5, beta2=0.999, weight_decay=1e-4, lr_step=100_000, gan_weight=1,
        image_weight=10, kl_weight=0.01, cycle_weight=10, cycle_kl_weight=0.01,
    )
    with pytest.raises(ValueError, match="unknown UNIT training settings"):
        UnitTrainConfig.from_mapping({"style_weight": 1})


def test_one_step_returns_every_term_as_published():
    """Terms recomputed independently from the same batch and the same noise."""
    trainer = make_trainer()
    model = trainer.model
    x_a, x_b = next(stripe_batches(0))
    torch.manual_seed(7)
    with torch.no_grad():  # before the step: the generator is what the step starts from
        h_a, h_b = model.gen_a.encode(x_a), model.gen_b.encode(x_b)
        z_a, z_b = h_a + torch.randn_like(h_a), h_b + torch.randn_like(h_b)
        h_ab, h_ba = model.gen_b.encode(model.gen_b.decode(z_a)), model.gen_a.encode(model.gen_a.decode(z_b))
        image = (model.gen_a.decode(z_a) - x_a).abs().mean() + (model.gen_b.decode(z_b) - x_b).abs().mean()
    torch.manual_seed(7)
    losses = trainer.step((x_a, x_b), 0)

    assert set(losses) == {"dis", "gen", "gan", "image", "kl", "cycle", "cycle_kl"}
    assert all(np.isfinite(value) for value in losses.values())
    assert losses["kl"] == pytest.approx((h_a**2).mean().item() + (h_b**2).mean().item(), rel=1e-5)
    assert losses["cycle_kl"] == pytest.approx((h_ab**2).mean().item() + (h_ba**2).mean().item(), rel=1e-5)
    assert losses["image"] == pytest.approx(image.item(), rel=1e-5)
    weights = dict(gan=1, image=10, kl=0.01, cycle=10, cycle_kl=0.01)
    assert losses["gen"] == pytest.approx(sum(w * losses[k] for k, w in weights.items()), rel=1e-5)
    assert all(p.requires_grad for d in (trainer.dis_a, trainer.dis_b) for p in d.parameters())


def test_tied_parameters_are_optimised_once():
    trainer = make_trainer(shared_blocks=1)
    params = [p for group in trainer.gen_optimizer.param_groups for p in group["params"]]
    ids = [id(p) for p in params]
    assert len(ids) == len(set(ids))
    assert set(ids) == {id(p) for p in trainer.model.parameters()}
    per_domain = [*trainer.model.gen_a.parameters(), *trainer.model.gen_b.parameters()]
    shared = {id(p) for p in trainer.model.gen_a.parameters()} & {id(p) for p in trainer.model.gen_b.parameters()}
    assert shared and len(ids) == len(per_domain) - len(shared)


def test_validation_images_are_displayable_rows():
    trainer = make_trainer(channels_a=1)
    x_a = torch.rand(2, 1, 16, 16) * 2 - 1
    x_b = torch.rand(2, 3, 16, 16) * 2 - 1
    grid = trainer.validation_images((x_a, x_b))
    assert grid.shape == (8, 3, 16, 16)
    assert grid.min() >= -1 and grid.max() <= 1
    assert trainer.model.training


def test_engines_lists_unit_as_trainable(capsys):
    assert main(["engines"]) == 0
    out = capsys.readouterr().out
    block = out[out.index("\nunit:") :].split("\n    from ")[0]
    assert "trainable: yes" in block
