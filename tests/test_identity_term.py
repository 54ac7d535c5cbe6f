"""The identity term (``identity_weight``) of the MUNIT, UNIT and unified trainers: off in the
published presets, on (5) in the ``small`` ones, and when on, the value of ``‖translate an image into its own domain − it‖₁``
recomputed by hand from the networks before the step, weighted into the generator's total."""

import pytest
import torch

from engines.munit import MunitEngine
from engines.unified import UnifiedEngine
from engines.unit import UnitEngine
from test_training_loop import stripe_batches
from trainers import munit, unit
from trainers import unified

TWO_DOMAIN = {
    "munit": (MunitEngine, munit, {"dim": 8, "mlp_dim": 16, "n_res": 1}),
    # the term as defined without the input gate (with it: test_input_gate.py)
    "unit": (UnitEngine, unit, {"dim": 8, "n_res": 1, "shared_blocks": 1, "input_gate": False,
                                "colour_transform": False}),
}


def two_domain_trainer(engine, **training):
    engine_class, module, tiny = TWO_DOMAIN[engine]
    torch.manual_seed(0)
    networks = engine_class()
    model = networks.build(networks.config("small", **tiny))
    return module.build_trainer(model, {**module.TRAIN_PRESETS["small"], "dis_dim": 8, **training},
                                torch.device("cpu"))


def images(seed, count=2, size=16):
    generator = torch.Generator().manual_seed(seed)
    return tuple(torch.rand(count, 3, size, size, generator=generator) * 2 - 1 for _ in range(2))


def own_domain_error(engine, model, x_a, x_b):
    """Each domain's images put through the translation into that domain (by hand)."""
    gen_a, gen_b = model.gen_a, model.gen_b
    if engine == "munit":
        into_b = gen_b.decode(gen_a.content_encoder(x_b), gen_b.style_encoder(x_b))
        into_a = gen_a.decode(gen_b.content_encoder(x_a), gen_a.style_encoder(x_a))
    else:
        into_b, into_a = gen_b.decode(gen_a.encode(x_b)), gen_a.decode(gen_b.encode(x_a))
    return ((into_b - x_b).abs().mean() + (into_a - x_a).abs().mean()).item()


@pytest.mark.parametrize("engine", ["munit", "unit"])
def test_two_domain_identity_term_is_off_as_published_and_computed_when_on(engine):
    _, module, _ = TWO_DOMAIN[engine]
    config_class = {"munit": munit.MunitTrainConfig, "unit": unit.UnitTrainConfig}[engine]
    assert config_class.from_mapping(module.TRAIN_PRESETS["paper"]).identity_weight == 0
    assert config_class.from_mapping(module.TRAIN_PRESETS["small"]).identity_weight == 5
    assert "identity" not in two_domain_trainer(engine, identity_weight=0).step(images(0), 0)

    trainer = two_domain_trainer(engine, identity_weight=5.0)
    x_a, x_b = images(1)
    with torch.no_grad():
        expected = own_domain_error(engine, trainer.model, x_a, x_b)
    without_term = two_domain_trainer(engine, identity_weight=0)
    torch.manual_seed(7)  # the same sampled styles (MUNIT) and latent noise in both steps
    without = without_term.step((x_a, x_b), 0)
    torch.manual_seed(7)
    losses = trainer.step((x_a, x_b), 0)
    assert losses["identity"] == pytest.approx(expected, rel=1e-5)
    # the same start and batch: the totals differ by the weighted identity term only
    assert losses["gen"] - without["gen"] == pytest.approx(5.0 * expected, rel=1e-4, abs=1e-4)


def test_unified_identity_term_is_the_reference_in_its_own_style():
    def make(**training):
        torch.manual_seed(0)
        networks = UnifiedEngine()
        tiny = {"dim": 8, "n_res": 1, "mlp_dim": 16, "style_dim": 8, "latent_dim": 4, "style_downsample": 2,
                "flow_hidden": 8}
        model = networks.build(networks.config("small", domains=["a", "b", "c"], **tiny))
        return unified.build_trainer(model, {**unified.TRAIN_PRESETS["small"], "dis_dim": 8, "dis_blocks": 4,
                                             "style_dis_dim": 8, **training}, torch.device("cpu"))

    assert unified.UnifiedTrainConfig.from_mapping(unified.TRAIN_PRESETS["paper"]).identity_weight == 0
    assert unified.UnifiedTrainConfig.from_mapping(unified.TRAIN_PRESETS["small"]).identity_weight == 5
    x, y = images(2, count=4)
    batch = ((x, torch.tensor([0, 1, 2, 0])), (y, torch.tensor([1, 2, 0, 0])))
    assert "identity" not in make(identity_weight=0).step(batch, 1)
    trainer = make(identity_weight=2.0)
    with torch.no_grad():
        net = trainer.network
        expected = (net.generator(y, net.style_encoder(y, batch[1][1])) - y).abs().mean().item()
    without_term = make(identity_weight=0)
    torch.manual_seed(7)  # the same latent draws and augmented views in both steps
    without = without_term.step(batch, 1)
    torch.manual_seed(7)
    losses = trainer.step(batch, 1)
    assert losses["identity"] == pytest.approx(expected, rel=1e-5)
    assert losses["gen"] - without["gen"] == pytest.approx(2.0 * expected, rel=1e-4, abs=1e-4)


@pytest.mark.parametrize("engine", ["munit", "unit"])
def test_training_with_the_identity_term_keeps_target_images_closer(engine):
    """Twenty steps on two stripe domains with the term leave images nearer to themselves when
    translated into their own domain than twenty steps without it, from the same start and batches."""
    errors = {}
    for weight in (0.0, 10.0):
        trainer = two_domain_trainer(engine, identity_weight=weight)
        batches = stripe_batches(0)  # (weight 0 overrides the small preset's 5)
        for iteration in range(20):
            trainer.step(next(batches), iteration)
        with torch.no_grad():
            errors[weight] = own_domain_error(engine, trainer.model.eval(), *next(stripe_batches(999)))
    assert errors[10.0] < 0.5 * errors[0.0]


@pytest.mark.parametrize("engine", ["munit", "unit"])
def test_domains_of_other_channel_counts_switch_the_term_off_and_log_why(engine):
    """Gray → RGB (e.g. fluorescence to bright field): a preset's identity term is off, not a crash."""
    engine_class, module, tiny = TWO_DOMAIN[engine]
    torch.manual_seed(0)
    networks = engine_class()
    model = networks.build(networks.config("small", channels_a=1, channels_b=3, **tiny))
    trainer = module.build_trainer(model, {**module.TRAIN_PRESETS["small"], "dis_dim": 8, "identity_weight": 5.0},
                                   torch.device("cpu"))
    [event] = trainer.events()
    assert event["event"] == "identity_term_off" and "1 channels and b 3" in event["reason"]
    x_b = images(3)[1]
    losses = trainer.step((x_b[:, :1], x_b), 0)
    assert "identity" not in losses
