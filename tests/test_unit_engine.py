"""UNIT engine: shapes, determinism, weight sharing, exact tiling, model files, CLI."""

import copy

import numpy as np
import pytest
import torch
from conftest import tiled
from PIL import Image
from skimage import data
from torch import nn

from engines.blocks import ResBlock, SharedStatsNorm
from engines.unit import UnitEngine
from engines.unit.networks import sample_latent
from napari_i2i.frontends.cli import main
from napari_i2i.contract.engine_api import EngineError, StyleMode, StyleRequest, run_stage
from napari_i2i.core.model_file import load_model, save_model


def build_unit(seed=0, **overrides):
    torch.manual_seed(seed)
    engine = UnitEngine()
    return engine, engine.build(engine.config("small", **overrides)).eval()


def translate(model, image, direction="a2b"):
    with torch.inference_mode():
        return model.translate(image, model.condition(StyleRequest(StyleMode.NONE, direction)))


def n_params(module):
    return sum(p.numel() for p in module.parameters())  # a tied parameter counts once


@pytest.fixture
def unit_file(tmp_path):
    """An untrained small UNIT (one shared block each side) saved as a model file."""
    engine, model = build_unit()
    path = tmp_path / "unit_small.safetensors"
    save_model(path, engine, model, provenance={"note": "untrained test weights"})
    return path


def test_shapes_range_and_determinism():
    _, model = build_unit()
    image = torch.rand(1, 3, 40, 52) * 2 - 1
    out = translate(model, image)
    assert out.shape == (1, 3, 40, 52)
    assert out.min() >= -1 and out.max() <= 1
    assert torch.equal(out, translate(model, image))  # no noise at inference
    assert not torch.equal(out, translate(model, image, "b2a"))


def test_channels_per_domain():
    _, model = build_unit(channels_a=1, channels_b=3)
    capabilities = model.capabilities
    assert capabilities.directions == {"a2b": (1, 3), "b2a": (3, 1)}
    assert capabilities.style_modes == (StyleMode.NONE,)
    assert capabilities.size_multiple == 2  # small: one downsampling
    assert translate(model, torch.zeros(1, 1, 32, 32)).shape == (1, 3, 32, 32)
    assert translate(model, torch.zeros(1, 3, 32, 32), "b2a").shape == (1, 1, 32, 32)


def test_translation_decodes_the_latent_mean_and_training_adds_unit_noise():
    _, model = build_unit()
    image = torch.rand(1, 3, 32, 32) * 2 - 1
    with torch.inference_mode():
        h = model.gen_a.encode(image)
        torch.testing.assert_close(translate(model, image), model.gen_b.decode(h, image))  # small: gated
        noise = sample_latent(h) - h
    assert h.shape == (1, 32, 16, 16)  # small: dim 16, one downsampling
    assert abs(noise.mean()) < 0.1 and abs(noise.std() - 1) < 0.1


def test_shared_blocks_are_one_set_of_parameters():
    _, model = build_unit(shared_blocks=1)  # small: n_res=2
    encoder_a, encoder_b = model.gen_a.encoder.model, model.gen_b.encoder.model
    decoder_a, decoder_b = model.gen_a.decoder.res_blocks, model.gen_b.decoder.res_blocks
    assert encoder_a[-1] is encoder_b[-1] and encoder_a[-2] is not encoder_b[-2]
    assert decoder_a[0] is decoder_b[0] and decoder_a[1] is not decoder_b[1]
    with torch.no_grad():
        next(encoder_a[-1].parameters()).add_(1.0)
    assert torch.equal(next(encoder_a[-1].parameters()), next(encoder_b[-1].parameters()))
    block = n_params(ResBlock(model.gen_a.encoder.out_channels))
    assert n_params(model) == n_params(model.gen_a) + n_params(model.gen_b) - 2 * block

    _, unshared = build_unit(shared_blocks=0)
    assert n_params(unshared) == 2 * n_params(unshared.gen_a)
    shared_max = build_unit(shared_blocks=2)[1]
    assert all(a is b for a, b in zip(shared_max.gen_a.decoder.res_blocks,
                                       shared_max.gen_b.decoder.res_blocks))


def test_paper_preset_has_the_published_size():
    engine = UnitEngine()
    paper = engine.build(engine.config("paper"))
    # Each generator (encoder + decoder of one domain) counts the tied blocks as its own.
    per_generator = n_params(paper.gen_a)
    assert per_generator == n_params(paper.gen_b)
    assert 10.9e6 < per_generator < 11.3e6  # ≈11.1 M, as published
    # Both generators together hold the one encoder and one decoder block once.
    assert n_params(paper) == 2 * per_generator - 2 * n_params(ResBlock(256))


@pytest.mark.parametrize(
    "request_, message",
    [
        (StyleRequest(StyleMode.NONE, "a2c"), "a2b"),
        (StyleRequest(StyleMode.RANDOM, "a2b"), "'random'"),
        (StyleRequest(StyleMode.REFERENCE, "b2a", references=[torch.ones(1, 3, 32, 32)]),
         "'reference'"),
    ],
)
def test_bad_requests_are_clear_errors(request_, message):
    _, model = build_unit()
    with pytest.raises(EngineError, match=message):
        model.condition(request_)


@pytest.mark.parametrize(
    "config, message",
    [
        ({"dim": 0}, "dim must be an integer ≥ 1"),
        ({"n_res": 1.5}, "n_res must be an integer ≥ 1"),
        ({"channels_a": True}, "channels_a must be an integer ≥ 1"),
        ({"shared_blocks": -1}, "shared_blocks must be an integer ≥ 0"),
        ({"shared_blocks": 3}, r"shared_blocks \(3\) cannot exceed n_res \(2\)"),
    ],
)
def test_bad_configs_are_clear_errors(config, message):
    engine = UnitEngine()
    with pytest.raises(EngineError, match=message):
        engine.build(engine.config("small", **config))


def test_presets_and_config_keys():
    engine = UnitEngine()
    assert engine.build(engine.config("small", shared_blocks=0)).config["shared_blocks"] == 0
    with pytest.raises(EngineError, match="no preset"):
        engine.config("huge")
    with pytest.raises(EngineError, match="unknown config keys"):
        engine.config("small", style_dim=8)
    with pytest.raises(EngineError, match="missing keys"):
        engine.build({"dim": 4})


def measured_radius(model, direction, size=192):
    """Largest input offset one output pixel depends on, over its position modulo 4.

    Normalisations and activations are removed, so what remains is a linear
    network with generic weights: a gradient is non-zero exactly where the
    receptive field is (instance norm would make it the whole image).
    """
    linear = copy.deepcopy(model).double()
    for module in list(linear.modules()):
        for name, child in list(module.named_children()):
            if isinstance(child, (nn.ReLU, nn.Tanh, SharedStatsNorm)):
                setattr(module, name, nn.Identity())
    channels = model.capabilities.directions[direction][0]
    image = torch.randn(1, channels, size, size, dtype=torch.float64, requires_grad=True)
    out = linear.translate(image, direction)
    centre, radius = size // 2, 0
    for phase in range(4):
        pixel = centre + phase
        (grad,) = torch.autograd.grad(out[0, :, pixel, pixel].sum(), image, retain_graph=True)
        for axis in (2, 3):
            reached = grad.abs().sum(dim=tuple({0, 1, 2, 3} - {axis})).nonzero().flatten() - pixel
            radius = max(radius, -int(reached.min()), int(reached.max()))
    return radius


@pytest.mark.parametrize(
    "overrides, direction",
    [({}, "a2b"), ({"n_downsample": 3, "n_res": 1, "shared_blocks": 0}, "b2a")],
)
def test_context_is_the_exact_receptive_radius(overrides, direction):
    _, model = build_unit(**overrides)
    assert measured_radius(model, direction) == model.capabilities.context
    assert UnitEngine().build(UnitEngine().config("paper")).capabilities.context == 82


def test_tiled_equals_whole_with_the_receptive_radius_only():
    _, model = build_unit()
    astronaut = data.astronaut()[100:356, 100:356].astype(np.float32) / 127.5 - 1
    image = torch.from_numpy(astronaut).permute(2, 0, 1)[None]
    whole = translate(model, image)
    exact = tiled(model, image, "a2b", tile=64)
    short = tiled(model, image, "a2b", tile=64, context=8)
    assert exact.shape == whole.shape == (1, 3, 256, 256)
    assert (exact - whole).abs().max() < 1e-4
    assert (short - whole).abs().max() > 10 * (exact - whole).abs().max()
    with torch.inference_mode():
        composed = image
        for stage in model.stages("a2b"):
            composed = run_stage(stage, composed, lambda: image)  # small: the last blends with the input
    torch.testing.assert_close(composed, whole)


def test_model_file_round_trip_keeps_the_tied_blocks(tmp_path):
    engine, model = build_unit(seed=3)
    path = tmp_path / "unit.safetensors"
    save_model(path, engine, model)
    loaded = load_model(path, engine="unit")
    # A tied block is stored under both generators' keys, as equal copies.
    state = loaded.model.state_dict()
    assert set(state) == set(model.state_dict())
    for name, tensor in model.state_dict().items():
        assert torch.equal(state[name], tensor)
    tied = loaded.model
    assert tied.gen_a.encoder.model[-1] is tied.gen_b.encoder.model[-1]
    assert tied.gen_a.decoder.res_blocks[0] is tied.gen_b.decoder.res_blocks[0]
    image = torch.rand(1, 3, 32, 32) * 2 - 1
    torch.testing.assert_close(translate(tied, image), translate(model, image))
    half = tmp_path / "half.safetensors"
    save_model(half, engine, model, dtype=torch.float16)
    assert load_model(half).model.gen_b.encoder.model[-1] is not None


@pytest.fixture
def png(tmp_path, rng):
    path = tmp_path / "cells.png"
    Image.fromarray(rng.integers(0, 255, (50, 70, 3), dtype=np.uint8)).save(path)
    return path


def test_cli_translates_deterministically_with_style_none(unit_file, png, tmp_path, capsys):
    out = tmp_path / "out"
    for folder in (out / "1", out / "2"):
        assert main(["translate", str(unit_file), str(png), "-o", str(folder), "--quiet",
                     "--tile", "64"]) == 0
    first = np.asarray(Image.open(out / "1" / "cells_a2b.png"))
    assert first.shape == (50, 70, 3)
    np.testing.assert_array_equal(first, np.asarray(Image.open(out / "2" / "cells_a2b.png")))
    assert main(["translate", str(unit_file), str(png), "-o", str(out / "b.png"), "--quiet",
                 "--direction", "b2a"]) == 0
    assert "untrained" in capsys.readouterr().err


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--reference", "{png}"], "takes no style reference (styles: none); drop --reference"),
        (["--samples", "2"], "has no random styles (styles: none); drop --samples"),
    ],
)
def test_cli_refuses_styles_a_unit_model_lacks(unit_file, png, tmp_path, capsys, extra, message):
    args = ["translate", str(unit_file), str(png), "-o", str(tmp_path / "x.png")]
    assert main(args + [a.format(png=png) for a in extra]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("napari-i2i: error: this unit model") and message in err[-1]
    assert not (tmp_path / "x.png").exists()


def test_cli_lists_unit_without_styles(capsys):
    assert main(["engines"]) == 0
    lines = capsys.readouterr().out.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("unit: UNIT"))
    assert lines[header + 2].strip().endswith("styles: none")  # after the presets line
