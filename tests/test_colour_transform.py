"""The gate's colour transform (``colour_transform``): what the gate keeps is ``(I + A)·x + b``.

It starts as the identity, so a new model's closed gate still returns its input; set by hand it
recolours exactly as the formula says; tiling stays exact; reconstructions never use it; a
transform without the gate, or of the wrong type, is a one-line error.
"""

import pytest
import torch
from conftest import tiled
from test_input_gate import MODES, TWO_DOMAIN, condition, set_gate

from engines.blocks.autoencoder import blend_with_source
from napari_i2i.contract.engine_api import EngineError


def transform_model(engine, **config):
    engine_class, _, tiny = TWO_DOMAIN[engine]
    torch.manual_seed(0)
    networks = engine_class()
    config = networks.config("small", **{**tiny, "input_gate": True, "colour_transform": True, **config})
    return networks.build(config).eval()


def set_transform(model, matrix, shift):
    """Every decoder's transform forced to a constant ``matrix`` (C×C) and ``shift`` (C)."""
    channels = matrix.shape[0]
    for generator in (model.gen_a, model.gen_b):
        conv = generator.decoder.upsample[-2][1]
        coefficients = torch.cat([matrix.flatten(), shift]).atanh()  # through the head's tanh
        with torch.no_grad():
            conv.weight[channels:-1].zero_()
            conv.bias[channels:-1] = coefficients


@pytest.mark.parametrize("engine", list(MODES))
def test_a_new_transform_is_the_identity_and_a_set_one_recolours_by_the_formula(engine):
    model, image = transform_model(engine), torch.rand(1, 3, 32, 32) * 2 - 1
    conditioning = condition(model, engine)
    set_gate(model, -100.0)  # shut: what comes out is the transform of the input, at first the input

    def translated():
        with torch.inference_mode():
            return model.translate(image, conditioning)

    torch.testing.assert_close(translated(), image.expand_as(translated()), atol=1e-6, rtol=0)
    matrix = torch.tensor([[-0.5, 0.0, 0.2], [0.0, 0.3, 0.0], [0.1, 0.0, -0.2]])
    shift = torch.tensor([0.1, -0.2, 0.05])
    set_transform(model, matrix, shift)
    expected = image + torch.einsum("ij,njhw->nihw", matrix, image) + shift.view(1, 3, 1, 1)
    torch.testing.assert_close(translated(), expected.expand_as(translated()), atol=1e-5, rtol=0)


@pytest.mark.parametrize("engine", list(MODES))
def test_tiled_equals_whole_image_with_the_transform(engine):
    model = transform_model(engine)
    set_transform(model, torch.full((3, 3), 0.1), torch.tensor([0.1, 0.0, -0.1]))
    for generator in (model.gen_a, model.gen_b):  # coefficients that vary over the image again
        with torch.no_grad():
            generator.decoder.upsample[-2][1].weight[3:-1].normal_(0, 0.05)
    image = torch.rand(1, 3, 90, 70, generator=torch.Generator().manual_seed(2)) * 2 - 1
    conditioning = condition(model, engine)
    with torch.inference_mode():
        whole = model.translate(image, conditioning)
    assert (tiled(model, image, conditioning, tile=32) - whole).abs().max() < 1e-4  # 90×70 in 32² tiles


def test_reconstructions_are_the_decoder_image_alone():
    model = transform_model("unit")
    set_transform(model, torch.full((3, 3), 0.3), torch.full((3,), 0.4))
    image = torch.rand(2, 3, 24, 24) * 2 - 1
    with torch.no_grad():
        raw = model.gen_a.decoder(model.gen_a.encode(image))
        torch.testing.assert_close(model.gen_a.decode(model.gen_a.encode(image)), raw[:, :3])
    assert raw.shape[1] == 3 + 3 * 4 + 1  # image, A (3×3) and b (3), gate


def test_blend_of_a_gray_decoder_output():
    source = torch.rand(2, 1, 5, 5)
    image, matrix, shift = torch.zeros(2, 1, 5, 5), torch.full((2, 1, 5, 5), 0.5), torch.full((2, 1, 5, 5), -0.1)
    closed = torch.zeros(2, 1, 5, 5)
    blended = blend_with_source(torch.cat([image, matrix, shift, closed], 1), source)
    torch.testing.assert_close(blended, 1.5 * source - 0.1)


@pytest.mark.parametrize("engine", list(MODES))
def test_a_transform_without_the_gate_or_not_a_flag_is_a_one_line_error(engine):
    with pytest.raises(EngineError, match="colour_transform needs input_gate = true"):
        transform_model(engine, input_gate=False)
    with pytest.raises(EngineError, match="colour_transform must be true or false"):
        transform_model(engine, colour_transform="yes")


def test_funit_and_unified_build_with_the_transform():
    from test_funit_trainer import TINY_MODEL

    from engines.funit import FunitEngine
    from engines.unified import UnifiedEngine

    funit = FunitEngine()
    model = funit.build(funit.config("small", **{**TINY_MODEL, "input_gate": True, "colour_transform": True}))
    assert model.generator.decoder.upsample[-2][1].out_channels == 3 + 12 + 1
    unified = UnifiedEngine()
    model = unified.build(unified.config("small", domains=["a", "b", "c"], input_gate=True, colour_transform=True))
    assert model.generator.decoder.upsample[-2][1].out_channels == 3 + 12 + 1


def test_step_blends_every_output_exactly_under_tiling_and_keeps_the_input_when_closed():
    from conftest import random_image, stages_compose
    from test_step_engine import build, request

    from napari_i2i.contract.engine_api import StyleMode

    _, model = build(n_res=1, input_gate=True, colour_transform=True)
    up = model.generator.up
    with torch.no_grad():
        up[-2][1].weight[3:-1].normal_(0, 0.05)  # a transform that varies over the image
    x = random_image(1, 3, 160, 136, seed=5)
    conditioning = model.condition(request(StyleMode.REFERENCE, random_image(1, 3, 32, 32, seed=6)))
    whole = stages_compose(model, x, conditioning)
    with torch.inference_mode():
        torch.testing.assert_close(model.translate(x, conditioning), whole, atol=1e-5, rtol=0)
    assert (tiled(model, x, conditioning, tile=48) - whole).abs().max() <= 1e-4
    with torch.no_grad():
        up[-2][1].weight[3:].zero_()
        up[-2][1].bias[3:] = torch.tensor([0.0] * 12 + [-100.0])  # identity transform, gate shut
    with torch.inference_mode():
        torch.testing.assert_close(model.translate(x, conditioning), x, atol=1e-6, rtol=0)
    _, gray_input = build(channels_a=1, input_gate=True, colour_transform=True)
    assert not gray_input.generator.input_gate  # gray → RGB: nothing to blend with
