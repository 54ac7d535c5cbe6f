"""StEP engine: style codes from references (averaged), sampled through the mapper, interpolated
between two references; shapes, exact tiling, the receptive field, the paper preset, model files."""

import json

import pytest
import safetensors.torch
import torch
from conftest import random_image, stages_compose, tiled, translate_with

from engines.blocks import SharedStatsNorm, interpolate_codes
from engines.step import StepEngine
from napari_i2i.contract.engine_api import EngineError, StyleMode, StyleRequest
from napari_i2i.core.model_file import convert_model, load_model, save_model
from napari_i2i.contract.registry import default_registry


def build(seed=0, mapper_trained=False, **overrides):
    torch.manual_seed(seed)
    engine = StepEngine()
    model = engine.build(engine.config("small", **overrides)).eval()
    if mapper_trained:
        model.mark_mapper_trained()
    return engine, model


def request(mode, *references, n=1, seed=0, direction="a2b"):
    return StyleRequest(mode, direction, n_samples=n, seed=seed, references=list(references))



def test_registered_with_its_paired_trainer_and_capabilities():
    registry = default_registry()
    assert "step" in registry.names() and "step" in registry.trainable()
    assert registry.trainer("step").data == "paired"
    _, model = build(channels_a=1, channels_b=3)
    capabilities = model.capabilities
    assert capabilities.directions == {"a2b": (1, 3)}
    assert capabilities.style_modes == (StyleMode.REFERENCE, StyleMode.INTERPOLATE)  # no fitted mapper yet
    assert capabilities.size_multiple == 2 and capabilities.context == 2 * (2 * 2 + 4) + 2  # small: 1 downsample
    _, fitted = build(mapper_trained=True)
    assert fitted.capabilities.style_modes == (StyleMode.REFERENCE, StyleMode.RANDOM, StyleMode.INTERPOLATE)
    with pytest.raises(EngineError, match="mapper_trained"):  # the earlier layout's key, still checked
        StepEngine().build({**StepEngine().config("small"), "mapper_trained": 2})


@pytest.mark.parametrize(("channels_a", "channels_b"), [(1, 3), (3, 3), (2, 1)])
def test_shapes_and_range(channels_a, channels_b):
    _, model = build(channels_a=channels_a, channels_b=channels_b)
    out = translate_with(model, random_image(1, channels_a, 40, 52), request(StyleMode.REFERENCE, random_image(1, channels_b, 32, 32)))
    assert out.shape == (1, channels_b, 40, 52)
    assert out.min() >= -1 and out.max() <= 1


def test_reference_codes_are_averaged_over_crops_and_references():
    _, model = build()
    encoder = model.style_encoder
    first = random_image(1, 3, 32, 32, seed=1)
    second = random_image(3, 3, 24, 40, seed=2)  # one reference arriving as three crops
    with torch.inference_mode():
        conditioning = model.condition(request(StyleMode.REFERENCE, first, second))
        expected = (encoder(first)[0] + encoder(second).mean(0)) / 2
    assert conditioning.styles.shape == (1, 8) and conditioning.styles.dtype == torch.float32
    torch.testing.assert_close(conditioning.styles[0], expected)
    x = random_image(1, 3, 32, 32, seed=3)
    one = translate_with(model, x, request(StyleMode.REFERENCE, first))
    both = translate_with(model, x, request(StyleMode.REFERENCE, first, second))
    assert (one - both).abs().max() > 1e-4  # the code reaches the output through the normalisation


def test_interpolation_endpoints_are_the_two_reference_styles_and_the_middle_their_mean():
    _, model = build()
    first, second = random_image(1, 3, 32, 32, seed=1), random_image(2, 3, 40, 24, seed=2)
    with torch.inference_mode():
        code_1 = model.condition(request(StyleMode.REFERENCE, first)).styles[0]
        code_2 = model.condition(request(StyleMode.REFERENCE, second)).styles[0]
        styles = model.condition(request(StyleMode.INTERPOLATE, first, second, n=5)).styles
    assert styles.shape == (5, 8)
    assert torch.equal(styles[0], code_1) and torch.equal(styles[-1], code_2)
    assert torch.equal(styles[2], (code_1 + code_2) / 2)
    torch.testing.assert_close(styles[1], 0.75 * code_1 + 0.25 * code_2)
    steps = torch.linspace(0, 1, 5)[:, None]
    assert ((styles[1:] - styles[:-1]) - (code_2 - code_1) / 4).abs().max() < 1e-5  # even steps
    # random endpoints too: exact whatever the values
    a, b = torch.randn(8, dtype=torch.float32), torch.randn(8)
    for n in (2, 3, 4, 7, 100):
        line = interpolate_codes(a, b, n)
        assert torch.equal(line[0], a) and torch.equal(line[-1], b)
    torch.testing.assert_close(interpolate_codes(a, b, 5), (1 - steps) * a + steps * b)
    # one output per step, a leading interpolation axis: the ends are the references' translations
    x = random_image(1, 3, 32, 32, seed=3)
    out = translate_with(model, x, request(StyleMode.INTERPOLATE, first, second, n=5))
    assert out.shape == (5, 3, 32, 32)
    torch.testing.assert_close(out[0], translate_with(model, x, request(StyleMode.REFERENCE, first))[0], atol=1e-5, rtol=0)
    torch.testing.assert_close(out[-1], translate_with(model, x, request(StyleMode.REFERENCE, second))[0], atol=1e-5, rtol=0)


def test_random_styles_come_from_the_fitted_mapper_seeded_on_the_cpu():
    _, model = build(mapper_trained=True)
    with torch.inference_mode():
        styles = model.condition(request(StyleMode.RANDOM, n=3, seed=7)).styles
        noise = torch.randn(3, 8, generator=torch.Generator().manual_seed(7))
        torch.testing.assert_close(styles, model.mapper(noise))
        assert torch.equal(styles, model.condition(request(StyleMode.RANDOM, n=3, seed=7)).styles)
        assert not torch.equal(styles, model.condition(request(StyleMode.RANDOM, n=3, seed=8)).styles)
    out = translate_with(model, random_image(1, 3, 24, 24), request(StyleMode.RANDOM, n=3, seed=7))
    assert out.shape == (3, 3, 24, 24)
    with pytest.raises(EngineError, match="at least 1"):
        model.condition(request(StyleMode.RANDOM, n=0))
    _, unfitted = build()
    with pytest.raises(EngineError, match="no fitted style mapper"):
        unfitted.condition(request(StyleMode.RANDOM, n=2))


def test_requests_it_cannot_serve_say_why():
    _, model = build(channels_b=1)
    gray = random_image(1, 1, 32, 32)
    cases = [
        (request(StyleMode.REFERENCE, gray, direction="b2a"), "a2b"),
        (request(StyleMode.REFERENCE), "at least one reference"),
        (request(StyleMode.REFERENCE, random_image(1, 3, 32, 32)), "1 channel"),
        (request(StyleMode.REFERENCE, random_image(1, 1, 4, 32)), "at least 8×8"),
        (request(StyleMode.REFERENCE, random_image(1, 32, 32)), "crops, channels, height, width"),
        (request(StyleMode.INTERPOLATE, gray, n=5), "exactly 2 references, got 1"),
        (request(StyleMode.INTERPOLATE, gray, gray, gray, n=5), "exactly 2 references, got 3"),
        (request(StyleMode.INTERPOLATE, gray, gray, n=1), "at least 2 steps"),
        (request(StyleMode.FEW_SHOT, gray), "no 'few_shot' style mode"),
    ]
    for style_request, message in cases:
        with pytest.raises(EngineError, match=message):
            model.condition(style_request)


def test_tiled_translation_equals_whole_image_for_every_interpolation_step():
    _, model = build(n_res=1)
    x = random_image(1, 3, 160, 136, seed=5)
    conditioning = model.condition(request(StyleMode.INTERPOLATE, random_image(1, 3, 32, 32, seed=6),
                                           random_image(1, 3, 32, 32, seed=7), n=3))
    whole = stages_compose(model, x, conditioning)
    out = tiled(model, x, conditioning, tile=48)
    assert out.shape == whole.shape == (3, 3, 160, 136)
    assert (out - whole).abs().max() <= 1e-4
    # per-tile layer norm (no shared statistics) differs: the test can fail
    seams = tiled(model, x, conditioning, tile=48, statistics=False)
    assert (seams - whole).abs().max() > 1e-3


class _UnitStatistics:
    """Makes every normalisation the identity, so the network is purely local."""

    def statistics(self, layer, x):
        return torch.zeros(()), torch.ones(())


@pytest.mark.parametrize(("n_downsample", "n_res"), [(2, 2), (1, 1)])
def test_context_is_exactly_the_receptive_field(n_downsample, n_res):
    _, model = build(n_downsample=n_downsample, n_res=n_res)
    model = model.double()
    for module in model.modules():
        if isinstance(module, SharedStatsNorm):
            module.tiling = _UnitStatistics()
    code = torch.randn(1, 8, dtype=torch.double)
    reach = 0
    for p in range(40, 40 + 2**n_downsample):  # every phase of the output pixel
        x = torch.zeros(1, 3, 96, 96, dtype=torch.double, requires_grad=True)
        model.generator(x, code)[0, :, p, p].sum().backward()
        rows = torch.nonzero(x.grad.abs().sum((0, 1)).sum(1))[:, 0]
        reach = max(reach, p - int(rows.min()), int(rows.max()) - p)
    assert reach == model.capabilities.context


def test_paper_preset_has_the_published_sizes():
    engine = StepEngine()
    model = engine.build(engine.config("paper"))
    generator = model.generator
    assert model.config["style_dim"] == 8
    assert generator.down[0][1].out_channels == 32  # 32 channels, then 3 downsamples: 256 at the bottleneck
    assert len(generator.down) == 4 and len(generator.res_blocks) == 4
    assert generator.down[0][1].in_channels == 3 + 8  # z tiled and concatenated with the input
    assert generator.fuse[1].in_channels == 256 + 8  # and with the bottleneck
    linears = [m for m in model.mapper if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(8, 128), (128, 128), (128, 128), (128, 8)]
    assert sum(isinstance(m, torch.nn.Tanh) for m in model.mapper) == 3
    with torch.inference_mode():
        assert model.style_encoder(torch.zeros(2, 3, 64, 64)).shape == (2, 8)
        assert generator(torch.zeros(1, 3, 64, 64), torch.zeros(1, 8)).shape == (1, 3, 64, 64)
    assert model.capabilities.size_multiple == 8 and model.capabilities.context == 98


def test_model_file_round_trip_holds_encoder_generator_and_mapper(tmp_path):
    engine, model = build(mapper_trained=True)
    path = tmp_path / "step.safetensors"
    save_model(path, engine, model)
    loaded = load_model(path)
    assert loaded.info.engine == "step" and loaded.model.mapper_trained
    assert "mapper_trained" not in loaded.info.config  # training state is not architecture
    saved = model.state_dict()
    assert {k.split(".")[0] for k in saved} == {"style_encoder", "generator", "mapper"}
    for key, value in loaded.model.state_dict().items():
        assert torch.equal(value, saved[key]), key
    assert StyleMode.RANDOM in loaded.model.capabilities.style_modes
    x = random_image(1, 3, 32, 32)
    random = request(StyleMode.RANDOM, n=2, seed=3)
    torch.testing.assert_close(translate_with(loaded.model, x, random), translate_with(model, x, random))


def write_earlier_layout(path, model, mapper_trained):
    """A model file as the previous version wrote it: the flag in the config, no ``mapper.trained`` weight."""
    weights = {k: v.contiguous() for k, v in model.state_dict().items() if k != "mapper.trained"}
    info = {"engine": "step", "config": {**model.config, "mapper_trained": mapper_trained}, "domains": ["a", "b"],
            "channels": {"a2b": [3, 3]}, "provenance": {}, "format_version": 1}
    safetensors.torch.save_file(weights, str(path), metadata={"napari_i2i": json.dumps(info)})


@pytest.mark.parametrize("mapper_trained", [0, 1])
def test_model_files_of_the_earlier_layout_load_and_behave_as_before(tmp_path, mapper_trained):
    engine, model = build(mapper_trained=bool(mapper_trained))
    old = tmp_path / "old.safetensors"
    write_earlier_layout(old, model, mapper_trained)
    loaded = load_model(old)
    assert loaded.model.mapper_trained == bool(mapper_trained)
    assert (StyleMode.RANDOM in loaded.model.capabilities.style_modes) == bool(mapper_trained)
    for key, value in model.state_dict().items():
        assert torch.equal(value, loaded.model.state_dict()[key]), key
    x = random_image(1, 3, 32, 32)
    reference = request(StyleMode.REFERENCE, random_image(1, 3, 32, 32, seed=2))
    torch.testing.assert_close(translate_with(loaded.model, x, reference), translate_with(model, x, reference))
    # saved again, in the current layout: the flag travels with the weights
    new = tmp_path / "new.safetensors"
    convert_model(old, new)
    again = load_model(new)
    assert "mapper_trained" not in again.info.config and again.model.mapper_trained == bool(mapper_trained)
