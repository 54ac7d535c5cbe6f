"""The input gate of MUNIT and UNIT (``input_gate``): output = g · decoded + (1 − g) · input, per pixel.

A closed gate returns the input exactly, an open one the decoder's image; tiled output still
equals whole-image output (the blend is a :class:`SourceStage`); reconstructions in training
never lean on the input; model files from before the key load as before.
"""

import pytest
import torch
from conftest import drain, stages_compose
from test_identity_term import TWO_DOMAIN, images

from napari_i2i.contract.engine_api import EngineError, StyleMode, StyleRequest
from napari_i2i.core.tiling import TilePlan, translate_tiled

MODES = {"munit": StyleMode.RANDOM, "unit": StyleMode.NONE}


def gated_model(engine, **config):
    engine_class, _, tiny = TWO_DOMAIN[engine]
    torch.manual_seed(0)
    networks = engine_class()
    return networks.build(networks.config("small", **{**tiny, "input_gate": True, **config})).eval()


def set_gate(model, bias):
    """Force every decoder's gate channel to a constant logit (±100: closed/open)."""
    for generator in (model.gen_a, model.gen_b):
        conv = generator.decoder.upsample[-2][1]  # the last ConvBlock's convolution
        with torch.no_grad():
            conv.weight[-1].zero_()
            conv.bias[-1] = bias


def condition(model, engine, direction="a2b"):
    return model.condition(StyleRequest(MODES[engine], direction, n_samples=2, seed=1))


@pytest.mark.parametrize("engine", ["munit", "unit"])
def test_tiled_equals_whole_image_and_stages_compose(engine):
    model = gated_model(engine)
    assert 0.9 < float(model.gen_b.decoder.upsample[-2][1].bias[-1].sigmoid()) < 1  # starts open
    image = torch.rand(1, 3, 90, 70, generator=torch.Generator().manual_seed(2)) * 2 - 1
    conditioning = condition(model, engine)
    whole = stages_compose(model, image, conditioning)
    capabilities = model.capabilities
    plan = TilePlan.make(90, 70, tile=32, context=capabilities.context, multiple=capabilities.size_multiple)
    assert plan.n_tiles > 1
    with torch.inference_mode():
        tiled, _ = drain(translate_tiled(model.stages(conditioning), image, plan, model.shared_statistics(),
                                         torch.device("cpu")))
    assert (tiled - whole).abs().max() < 1e-4


@pytest.mark.parametrize("engine", ["munit", "unit"])
def test_a_closed_gate_keeps_the_input_and_an_open_one_gives_the_decoder_image(engine):
    model = gated_model(engine)
    image = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(3)) * 2 - 1
    conditioning = condition(model, engine)
    set_gate(model, -100.0)
    with torch.inference_mode():
        kept = model.translate(image, conditioning)
    torch.testing.assert_close(kept, image.expand_as(kept), atol=1e-6, rtol=0)
    set_gate(model, 100.0)
    with torch.inference_mode():
        remade = model.translate(image, conditioning)
        source, target = model.gen_a, model.gen_b
        if engine == "munit":
            decoded = target.decode(source.content_encoder(image).expand(2, -1, -1, -1), conditioning.styles)
        else:
            decoded = target.decode(source.encode(image))
    torch.testing.assert_close(remade, decoded)
    assert (remade - image).abs().mean() > 0.05


def test_munit_content_code_carries_the_source_for_the_style_explorer():
    model = gated_model("munit")
    image = torch.rand(1, 3, 24, 24) * 2 - 1
    conditioning = condition(model, "munit", "b2a")
    with torch.inference_mode():
        torch.testing.assert_close(model.decode_content(model.encode_content(image, "b2a"), conditioning),
                                   model.translate(image, conditioning))


@pytest.mark.parametrize("engine", ["munit", "unit"])
def test_training_blends_translations_but_not_reconstructions(engine):
    _, module, _ = TWO_DOMAIN[engine]
    model = gated_model(engine).train()
    trainer = module.build_trainer(model, {**module.TRAIN_PRESETS["small"], "dis_dim": 8}, torch.device("cpu"))
    set_gate(model, -100.0)
    x_a, x_b = images(4)
    with torch.no_grad():
        forward = trainer.translate(x_a, x_b)
        losses, _ = trainer.generator_losses(x_a, x_b, forward)
    torch.testing.assert_close(forward["x_ab"], x_a, atol=1e-6, rtol=0)  # the gate is closed: kept
    # the blend of an image in its own domain is the image itself; what is left of the identity
    # term is the decoder's own image, which keeps learning with the gate shut
    gen_a, gen_b = model.gen_a, model.gen_b
    with torch.no_grad():
        if engine == "munit":
            own_b = gen_b.decode(gen_a.content_encoder(x_b), forward["style_b"])
            own_a = gen_a.decode(gen_b.content_encoder(x_a), forward["style_a"])
        else:
            own_b, own_a = gen_b.decode(gen_a.encode(x_b)), gen_a.decode(gen_b.encode(x_a))
    by_hand = (own_b - x_b).abs().mean() + (own_a - x_a).abs().mean()
    assert float(losses["identity"]) == pytest.approx(float(by_hand), rel=1e-5) and float(by_hand) > 0.05
    assert float(losses["image"]) > 0.05  # reconstructions come from the decoder alone
    logged = trainer.step((x_a, x_b), 0)
    assert all(torch.isfinite(torch.tensor(value)) for value in logged.values())


def test_model_files_without_the_key_build_without_the_gate():
    engine_class, _, tiny = TWO_DOMAIN["munit"]
    config = engine_class().config("small", **tiny)
    del config["input_gate"]
    model = engine_class().build(config)
    assert model.config["input_gate"] is False
    assert model.gen_b.decoder.upsample[-1][-1].__class__.__name__ == "Tanh"


@pytest.mark.parametrize("engine", ["munit", "unit"])
def test_between_channel_counts_the_gate_switches_itself_off_and_training_says_so(engine):
    _, module, _ = TWO_DOMAIN[engine]
    model = gated_model(engine, channels_a=1)  # gray → RGB: nothing to blend with
    assert not model.gen_b.input_gate and model.gen_b.decoder.upsample[-1][-1].__class__.__name__ == "Tanh"
    assert len(model.stages(condition(model, engine))) == len(gated_model(engine, input_gate=False).stages(
        condition(gated_model(engine, input_gate=False), engine)))
    trainer = module.build_trainer(model.train(), {**module.TRAIN_PRESETS["small"], "dis_dim": 8},
                                   torch.device("cpu"))
    [event] = [e for e in trainer.events() if e["event"] == "input_gate_off"]
    assert "domain a has 1 channels and b 3" in event["reason"]


@pytest.mark.parametrize("engine", ["munit", "unit"])
def test_a_gate_that_is_not_a_flag_is_a_one_line_error(engine):
    with pytest.raises(EngineError, match="input_gate must be true or false"):
        gated_model(engine, input_gate=1)


def funit_gated(**config):
    from test_funit_trainer import TINY_MODEL

    from engines.funit import FunitEngine

    torch.manual_seed(0)
    engine = FunitEngine()
    return engine.build(engine.config("small", **{**TINY_MODEL, "input_gate": True, **config})).eval()


def close_funit_gate(model, bias):
    conv = model.generator.decoder.upsample[-2][1]
    with torch.no_grad():
        conv.weight[-1].zero_()
        conv.bias[-1] = bias


def test_funit_gate_is_exact_under_tiling_and_keeps_the_content_image_when_closed():
    model = funit_gated()
    image = torch.rand(1, 3, 120, 100, generator=torch.Generator().manual_seed(5)) * 2 - 1
    example = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(6)) * 2 - 1
    conditioning = model.condition(StyleRequest(StyleMode.FEW_SHOT, "translate", references=(example,)))
    with torch.inference_mode():
        whole = model.translate(image, conditioning)
    capabilities = model.capabilities
    plan = TilePlan.make(120, 100, tile=32, context=capabilities.context, multiple=capabilities.size_multiple)
    with torch.inference_mode():
        tiled, _ = drain(translate_tiled(model.stages(conditioning), image, plan, model.shared_statistics(),
                                         torch.device("cpu")))
    assert plan.n_tiles > 1 and (tiled - whole).abs().max() < 1e-4
    close_funit_gate(model, -100.0)
    with torch.inference_mode():
        torch.testing.assert_close(model.translate(image, conditioning), image, atol=1e-6, rtol=0)


def test_funit_training_blends_the_translation_not_the_reconstruction():
    from test_funit_trainer import TINY_TRAINING, shape_batches

    from trainers.funit import TRAIN_PRESETS, build_trainer

    model = funit_gated().train()
    trainer = build_trainer(model, {**TRAIN_PRESETS["small"], **TINY_TRAINING, "num_classes": 3},
                            torch.device("cpu"))
    close_funit_gate(trainer.generator, -100.0)
    close_funit_gate(trainer.model, -100.0)
    (x, _), (y, _), _ = next(shape_batches(0))
    [scored] = trainer.scoring_translations((x, y))
    torch.testing.assert_close(scored.translated, x, atol=1e-6, rtol=0)
    assert (scored.reconstructed - x).abs().mean() > 0.05
    losses = trainer.step(next(shape_batches(0)), 0)
    assert losses["reconstruction"] > 0.05
