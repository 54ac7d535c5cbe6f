"""MUNIT engine: shapes, presets, seeds and style references."""

import pytest
import torch

from conftest import build_munit, tiled, translate_with
from engines.munit import MunitEngine
from napari_i2i.contract.engine_api import EngineError, StyleMode, StyleRequest


def test_shapes_and_range():
    _, model = build_munit()
    image = torch.rand(1, 3, 40, 52) * 2 - 1
    out = translate_with(model, image, StyleRequest(StyleMode.RANDOM, "a2b", n_samples=3, seed=1))
    assert out.shape == (3, 3, 40, 52)
    assert out.min() >= -1 and out.max() <= 1


def test_channels_per_domain():
    _, model = build_munit(channels_a=1, channels_b=3)
    assert model.capabilities.directions == {"a2b": (1, 3), "b2a": (3, 1)}
    out = translate_with(model, torch.zeros(1, 1, 32, 32), StyleRequest(StyleMode.RANDOM, "a2b"))
    assert out.shape == (1, 3, 32, 32)
    out = translate_with(model, torch.zeros(1, 3, 32, 32), StyleRequest(StyleMode.RANDOM, "b2a"))
    assert out.shape == (1, 1, 32, 32)


def test_same_seed_same_styles_other_seed_other_styles():
    _, model = build_munit()
    image = torch.rand(1, 3, 32, 32) * 2 - 1
    first = translate_with(model, image, StyleRequest(StyleMode.RANDOM, "a2b", n_samples=2, seed=7))
    again = translate_with(model, image, StyleRequest(StyleMode.RANDOM, "a2b", n_samples=2, seed=7))
    other = translate_with(model, image, StyleRequest(StyleMode.RANDOM, "a2b", n_samples=2, seed=8))
    assert torch.equal(first, again)
    assert (first - other).abs().mean() > 1e-3
    assert (first[0] - first[1]).abs().mean() > 1e-3  # samples differ from each other


def test_style_reference_changes_the_output_and_codes_average():
    _, model = build_munit()
    image = torch.rand(1, 3, 32, 32) * 2 - 1
    dark = torch.full((1, 3, 32, 32), -0.9)
    striped = torch.ones(1, 3, 32, 32)
    striped[..., ::4, :] = -1

    def by_reference(*refs):
        return translate_with(model, image, StyleRequest(StyleMode.REFERENCE, "a2b", references=list(refs)))

    out_dark, out_striped = by_reference(dark), by_reference(striped)
    assert torch.equal(out_dark, by_reference(dark))
    # untrained style encoders give small codes, so the change is small but real
    assert (out_dark - out_striped).abs().max() > 1e-4  # float noise is ~1e-7
    with torch.inference_mode():
        explicit = model.gen_b.decode(
            model.gen_a.content_encoder(image), model.gen_b.style_encoder(dark)
        )
    torch.testing.assert_close(out_dark, explicit)
    # two references: the code is the mean of both codes
    both = model.condition(StyleRequest(StyleMode.REFERENCE, "a2b", references=[dark, striped]))
    codes = model.gen_b.style_encoder(torch.cat([dark, striped]))
    torch.testing.assert_close(both.styles[0], codes.mean(0))


def shared_content_munit():
    """A MUNIT whose two content encoders are one: an image and its copy get the same content signature."""
    _, model = build_munit()
    model.gen_a.content_encoder.load_state_dict(model.gen_b.content_encoder.state_dict())
    return model


def test_matched_styles_take_the_reference_with_the_closest_content():
    model = shared_content_munit()
    image = torch.rand(1, 3, 32, 32) * 2 - 1
    dark = torch.full((1, 3, 32, 32), -0.9)
    striped = torch.ones(1, 3, 40, 24)
    striped[..., ::4, :] = -1
    references = [dark, image.clone(), striped]
    with torch.inference_mode():
        candidates = model.condition(StyleRequest(StyleMode.MATCHED, "a2b", references=references))
        for source, expected in ((image, 2), (dark, 1), (striped, 3)):
            conditioning, position = model.match(candidates, source)
            assert position == expected
            alone = model.condition(StyleRequest(StyleMode.REFERENCE, "a2b", references=[references[expected - 1]]))
            torch.testing.assert_close(conditioning.styles, alone.styles)
            torch.testing.assert_close(model.translate(source, conditioning), model.translate(source, alone))


def test_matched_styles_average_a_large_image_over_its_crops():
    """Crops of one image give one signature: a large source matches its own crops, not a part."""
    model = shared_content_munit()
    large = torch.rand(4, 3, 32, 32) * 2 - 1  # one image as 4 crops
    references = [large[:1], large, large[3:]]
    with torch.inference_mode():
        candidates = model.condition(StyleRequest(StyleMode.MATCHED, "a2b", references=references))
        assert model.match(candidates, large)[1] == 2
        assert model.match(candidates, torch.zeros(1, 3, 5, 3))[0].styles.shape == (1, 8)  # tiny: padded


@pytest.mark.parametrize(
    "request_, message",
    [
        (StyleRequest(StyleMode.RANDOM, "a2c"), "a2b"),
        (StyleRequest(StyleMode.MATCHED, "a2b"), "reference images to choose from"),
        (StyleRequest(StyleMode.MATCHED, "a2b", references=[torch.zeros(1, 1, 32, 32)]), "3 channel"),
        (StyleRequest(StyleMode.RANDOM, "a2b", n_samples=0), "at least 1"),
        (StyleRequest(StyleMode.REFERENCE, "a2b"), "at least one reference"),
        (StyleRequest(StyleMode.REFERENCE, "a2b", references=[torch.zeros(1, 1, 32, 32)]), "3 channel"),
        (StyleRequest(StyleMode.REFERENCE, "a2b", references=[torch.zeros(1, 3, 8, 8)]), "at least 16"),
        (StyleRequest(StyleMode.FEW_SHOT, "a2b"), "few_shot"),
    ],
)
def test_bad_requests_are_clear_errors(request_, message):
    _, model = build_munit()
    with pytest.raises(EngineError, match=message):
        model.condition(request_)


def test_match_needs_a_matched_request():
    _, model = build_munit()
    random = model.condition(StyleRequest(StyleMode.RANDOM, "a2b"))
    with pytest.raises(EngineError, match="'matched' style request"):
        model.match(random, torch.zeros(1, 3, 32, 32))


def test_presets_and_config_errors():
    engine = MunitEngine()
    paper = engine.build(engine.config("paper"))
    params = sum(p.numel() for p in paper.gen_a.parameters())
    assert 14.5e6 < params < 15.5e6  # ≈15.0 M per generator, as published
    with pytest.raises(EngineError, match="no preset"):
        engine.config("huge")
    with pytest.raises(EngineError, match="unknown config keys"):
        engine.config("small", width=3)
    with pytest.raises(EngineError, match="dim must be an integer ≥ 1"):
        engine.build(engine.config("small", dim=0))
    with pytest.raises(EngineError, match="missing keys"):
        engine.build({"dim": 4})


def test_content_norm_option():
    """``content_norm``: instance as published (both presets, and files without the key); layer an option."""
    engine = MunitEngine()
    assert engine.config("paper")["content_norm"] == "instance"
    assert engine.config("small")["content_norm"] == "instance"
    old_file_config = {k: v for k, v in engine.config("small").items() if k != "content_norm"}
    old = engine.build(old_file_config)
    assert old.config["content_norm"] == "instance"
    assert {type(m).__name__ for m in old.gen_b.content_encoder.modules()} >= {"InstanceNorm2d"}
    _, layer = build_munit(content_norm="layer")  # the documented deviation
    _, instance = build_munit()
    norms = {type(m).__name__ for m in layer.gen_a.content_encoder.modules()}
    assert "LayerNorm2d" in norms and "InstanceNorm2d" not in norms
    # layer norm adds only its per-channel scale and shift
    def count(modules):
        return sum(p.numel() for m in modules for p in m.parameters(recurse=False))

    norm_params = count(m for gen in (layer.gen_a, layer.gen_b) for m in gen.content_encoder.modules()
                        if type(m).__name__ == "LayerNorm2d")
    assert norm_params > 0 and count(layer.modules()) == count(instance.modules()) + norm_params
    image = torch.rand(1, 3, 32, 32) * 2 - 1
    out = translate_with(layer, image, StyleRequest(StyleMode.RANDOM, "a2b", n_samples=2, seed=1))
    assert out.shape == (2, 3, 32, 32)
    with pytest.raises(EngineError, match="content_norm must be one of"):
        engine.build(engine.config("small", content_norm="batch"))
    with pytest.raises(EngineError, match="n_res must be an integer"):
        engine.build(engine.config("small", n_res="2"))


def test_content_norm_layer_tiles_exactly():
    _, model = build_munit(content_norm="layer")
    image = torch.rand(1, 3, 150, 130) * 2 - 1
    conditioning = model.condition(StyleRequest(StyleMode.RANDOM, "a2b", n_samples=2, seed=3))
    with torch.inference_mode():
        whole = model.translate(image, conditioning)
    torch.testing.assert_close(tiled(model, image, conditioning, 64), whole, atol=1e-5, rtol=0)


@pytest.mark.parametrize("direction", ["a2b", "b2a"])
def test_decoding_the_content_code_equals_translating(direction):
    _, model = build_munit()
    image = torch.rand(1, 3, 36, 44, generator=torch.Generator().manual_seed(3)) * 2 - 1
    conditioning = model.condition(StyleRequest(StyleMode.RANDOM, direction, n_samples=3, seed=2))
    with torch.inference_mode():
        content = model.encode_content(image, direction)
        torch.testing.assert_close(model.decode_content(content, conditioning), model.translate(image, conditioning))
        other = model.condition(StyleRequest(StyleMode.RANDOM, direction, seed=9))  # the same code, another style
        torch.testing.assert_close(model.decode_content(content, other), model.translate(image, other))
