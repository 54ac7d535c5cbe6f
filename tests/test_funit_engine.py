"""FUNIT engine: few-shot conditioning (class codes averaged over K examples), shapes,
exact tiling, the paper preset's size, request errors and model files."""

import pytest
import torch
from conftest import random_image, stages_compose, tiled, translate_with

from engines.blocks import receptive_radius
from engines.funit import FunitEngine
from napari_i2i.contract.engine_api import EngineError, StyleMode, StyleRequest
from napari_i2i.core.model_file import load_model, save_model
from napari_i2i.contract.registry import default_registry


def build(seed=0, **overrides):
    torch.manual_seed(seed)
    engine = FunitEngine()
    return engine, engine.build(engine.config("small", **overrides)).eval()


def few_shot(*examples):
    return StyleRequest(StyleMode.FEW_SHOT, "translate", references=list(examples))




def test_registered_with_its_trainer_and_capabilities():
    registry = default_registry()
    assert "funit" in registry.names() and "funit" in registry.trainable()
    assert registry.trainer("funit").data == "classes"
    _, model = build(channels=1)
    capabilities = model.capabilities
    assert capabilities.directions == {"translate": (1, 1)}
    assert capabilities.style_modes == (StyleMode.FEW_SHOT,)
    assert capabilities.size_multiple == 2  # small: 1 downsampling
    assert capabilities.context == receptive_radius(1, 2)


@pytest.mark.parametrize("channels", [1, 3])
def test_shapes_and_range(channels):
    _, model = build(channels=channels)
    out = translate_with(model, random_image(1, channels, 40, 52), few_shot(random_image(1, channels, 32, 32, seed=1)))
    assert out.shape == (1, channels, 40, 52)
    assert out.min() >= -1 and out.max() <= 1


def test_class_code_is_the_mean_over_k_examples_of_different_sizes():
    _, model = build()
    encoder = model.generator.class_encoder
    first = random_image(1, 3, 32, 32, seed=1)
    second = random_image(1, 3, 48, 24, seed=2)  # another size
    third = random_image(2, 3, 20, 28, seed=3)  # one example arriving as two crops
    conditioning = model.condition(few_shot(first, second, third))
    with torch.inference_mode():
        codes = [encoder(first)[0], encoder(second)[0], encoder(third[:1])[0] / 2 + encoder(third[1:])[0] / 2]
        expected = (codes[0] + codes[1] + codes[2]) / 3
    assert conditioning.class_code.shape == (1, model.config["class_dim"])
    assert conditioning.n_examples == 3
    torch.testing.assert_close(conditioning.class_code[0], expected)
    # the translation decodes exactly that mean code
    x = random_image(1, 3, 32, 32, seed=4)
    with torch.inference_mode():
        generator = model.generator
        explicit = generator.decode(generator.content_encoder(x), conditioning.class_code)
        assert torch.equal(model.translate(x, conditioning), explicit)


def test_k_examples_are_a_set_and_k_changes_the_class():
    _, model = build()
    examples = [random_image(1, 3, 24, 24, seed=s) for s in (1, 2, 3)]
    one = model.condition(few_shot(examples[0])).class_code
    with torch.inference_mode():
        assert torch.equal(one, model.generator.class_encoder(examples[0]).float())
    forward = model.condition(few_shot(*examples)).class_code
    backward = model.condition(few_shot(*reversed(examples))).class_code
    torch.testing.assert_close(forward, backward)
    assert (forward - one).abs().max() > 1e-4
    x = random_image(1, 3, 32, 32, seed=9)
    out_one = translate_with(model, x, few_shot(examples[0]))
    out_three = translate_with(model, x, few_shot(*examples))
    assert (out_one - out_three).abs().max() > 1e-4


def test_tiled_translation_equals_whole_image():
    _, model = build()
    x = random_image(1, 3, 192, 160, seed=5)
    conditioning = model.condition(few_shot(random_image(1, 3, 40, 40, seed=6), random_image(1, 3, 24, 56, seed=7)))
    whole = stages_compose(model, x, conditioning)
    out = tiled(model, x, conditioning, tile=64)
    assert out.shape == whole.shape
    assert (out - whole).abs().max() <= 1e-4
    # per-tile instance norm (no shared statistics) is visibly different: the test can fail
    seams = tiled(model, x, conditioning, tile=64, statistics=False)
    assert (seams - whole).abs().max() > 0.05


def test_paper_preset_has_the_published_sizes():
    engine = FunitEngine()
    model = engine.build(engine.config("paper"))
    generator = model.generator
    assert sum(p.numel() for p in model.parameters()) == 29_866_435
    assert sum(p.numel() for p in generator.content_encoder.parameters()) == 12_202_112
    assert sum(p.numel() for p in generator.class_encoder.parameters()) == 2_779_328
    with torch.inference_mode():
        assert generator.content_encoder(torch.zeros(1, 3, 128, 128)).shape == (1, 512, 16, 16)
        assert generator.class_encoder(torch.zeros(1, 3, 128, 128)).shape == (1, 64)
    assert len(generator.decoder.res_blocks) == 2
    assert model.capabilities.size_multiple == 8


@pytest.mark.parametrize(
    "request_, message",
    [
        (StyleRequest(StyleMode.RANDOM, "translate"), "few_shot"),
        (StyleRequest(StyleMode.REFERENCE, "translate", references=[torch.zeros(1, 3, 32, 32)]), "few_shot"),
        (StyleRequest(StyleMode.FEW_SHOT, "a2b", references=[torch.zeros(1, 3, 32, 32)]), "one direction"),
        (StyleRequest(StyleMode.FEW_SHOT, "translate"), "at least one example"),
        (few_shot(torch.zeros(1, 1, 32, 32)), "need 3 channel"),
        (few_shot(torch.zeros(1, 3, 32, 32), torch.zeros(1, 3, 4, 32)), "example 2 is \\(4, 32\\)"),
        (few_shot(torch.zeros(3, 32, 32)), "shaped \\(crops, channels, height, width\\)"),
    ],
)
def test_bad_requests_are_clear_errors(request_, message):
    _, model = build()
    with pytest.raises(EngineError, match=message):
        model.condition(request_)


def test_config_errors():
    engine = FunitEngine()
    with pytest.raises(EngineError, match="no preset"):
        engine.config("huge")
    with pytest.raises(EngineError, match="unknown config keys"):
        engine.config("small", style_dim=8)
    with pytest.raises(EngineError, match="class_dim must be an integer ≥ 1"):
        engine.build(engine.config("small", class_dim=0))
    with pytest.raises(EngineError, match="missing keys"):
        engine.build({"dim": 4})


def test_model_file_round_trip(tmp_path):
    engine, model = build(channels=1, dim=8)
    path = tmp_path / "funit.safetensors"
    save_model(path, engine, model, provenance={"note": "untrained test weights"})
    loaded = load_model(path, engine="funit")
    assert loaded.info.engine == "funit" and loaded.info.channels == {"translate": [1, 1]}
    assert loaded.info.config == model.config
    x, example = random_image(1, 1, 32, 32, seed=1), random_image(1, 1, 32, 32, seed=2)
    torch.testing.assert_close(translate_with(loaded.model, x, few_shot(example)), translate_with(model, x, few_shot(example)))
