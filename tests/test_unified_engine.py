"""The unified-style-space engine: presets, directions named after domains, latent / reference /
interpolated styles in one space, one style component edited at a time, tiled = whole image."""

import pytest
import torch
from conftest import random_image, stages_compose, tiled

from engines.unified import UnifiedEngine
from napari_i2i.contract.engine_api import EngineError, ReferenceImageError, StyleMode, StyleRequest
from napari_i2i.core.model_file import load_model, save_model

DOMAINS = ["he", "ihc", "dab"]
TINY = {"domains": DOMAINS, "dim": 8, "n_res": 1, "mlp_dim": 16, "style_dim": 8, "latent_dim": 4,
        "style_downsample": 2, "flow_hidden": 8}


def build(seed=0, **overrides):
    torch.manual_seed(seed)
    engine = UnifiedEngine()
    return engine.build(engine.config("small", **{**TINY, **overrides})).eval()


def condition(model, mode, direction="to_ihc", **fields):
    return model.condition(StyleRequest(mode, direction, **fields))


def test_both_presets_build_with_their_sizes():
    engine = UnifiedEngine()
    paper = engine.build(engine.config("paper"))
    assert (paper.config["style_dim"], paper.config["latent_dim"], paper.config["dim"]) == (64, 16, 64)
    assert paper.generator.content_encoder.out_channels == 512  # 3 doublings of 64
    assert sum(p.numel() for p in paper.parameters()) == pytest.approx(32.86e6, rel=0.01)
    small = engine.build(engine.config("small"))
    assert (small.config["style_dim"], small.config["latent_dim"], small.config["n_downsample"]) == (16, 8, 1)
    assert sum(p.numel() for p in small.parameters()) < 400_000


def test_capabilities_name_a_direction_per_target_domain():
    model = build()
    capabilities = model.capabilities
    assert capabilities.directions == {"to_he": (3, 3), "to_ihc": (3, 3), "to_dab": (3, 3)}
    assert capabilities.domains == tuple(DOMAINS)
    assert set(capabilities.style_modes) == {StyleMode.RANDOM, StyleMode.REFERENCE, StyleMode.INTERPOLATE,
                                             StyleMode.TYPICAL}
    assert capabilities.size_multiple == 2 and capabilities.context > 0
    gray = build(channels=1)
    assert gray.capabilities.directions["to_he"] == (1, 1)


def test_random_styles_are_seeded_and_depend_on_the_target_domain():
    model = build()
    first = condition(model, StyleMode.RANDOM, n_samples=3, seed=5)
    again = condition(model, StyleMode.RANDOM, n_samples=3, seed=5)
    assert first.styles.shape == (3, 8) and first.domain == 1
    assert torch.equal(first.styles, again.styles)
    assert not torch.equal(first.styles, condition(model, StyleMode.RANDOM, n_samples=3, seed=6).styles)
    other_domain = condition(model, StyleMode.RANDOM, "to_dab", n_samples=3, seed=5)
    assert not torch.allclose(first.styles, other_domain.styles)  # θ_u differs per domain
    with torch.inference_mode():
        assert model.translate(random_image(1, 3, 16, 16), first).shape == (3, 3, 16, 16)


def test_reference_styles_average_crops_and_references_in_the_latent_styles_space():
    model = build()
    one, two = random_image(2, 3, 12, 12, seed=1), random_image(1, 3, 16, 20, seed=2)
    both = condition(model, StyleMode.REFERENCE, references=[one, two]).styles
    latent = condition(model, StyleMode.RANDOM, n_samples=1).styles
    assert both.shape == latent.shape == (1, model.config["style_dim"])  # one style space
    with torch.no_grad():
        domain = torch.tensor([1, 1])
        per_crop = model.style_encoder(one, domain).mean(0)
        second = model.style_encoder(two, domain[:1])[0]
    torch.testing.assert_close(both[0], (per_crop + second) / 2)
    with torch.inference_mode():
        out = model.translate(random_image(1, 3, 16, 16), condition(model, StyleMode.REFERENCE, references=[one]))
    assert out.shape == (1, 3, 16, 16) and out.abs().max() <= 1


def test_interpolation_runs_from_one_references_style_to_the_others():
    model = build()
    first, second = random_image(1, 3, 8, 8, seed=3), random_image(1, 3, 8, 8, seed=4)
    line = condition(model, StyleMode.INTERPOLATE, "to_he", n_samples=5, references=[first, second]).styles
    assert line.shape == (5, 8)
    assert torch.equal(line[0], condition(model, StyleMode.REFERENCE, "to_he", references=[first]).styles[0])
    assert torch.equal(line[-1], condition(model, StyleMode.REFERENCE, "to_he", references=[second]).styles[0])
    with pytest.raises(EngineError, match="exactly 2 references"):
        condition(model, StyleMode.INTERPOLATE, n_samples=3, references=[first])


@pytest.mark.parametrize("mode", [StyleMode.RANDOM, StyleMode.REFERENCE])
def test_editing_one_component_changes_only_that_component(mode):
    model = build()
    fields = {"n_samples": 3, "seed": 2} if mode is StyleMode.RANDOM else {"references": [random_image(1, 3, 8, 8)]}
    conditioning = condition(model, mode, **fields)
    components = model.style_components(conditioning)
    assert components.shape == (len(conditioning.styles), model.config["latent_dim"])
    edited = model.edit_component(conditioning, 2, 1.5)
    after = model.style_components(edited)
    torch.testing.assert_close(after[:, 2], torch.full_like(after[:, 2], 1.5), atol=1e-4, rtol=0)
    keep = [0, 1, 3]
    torch.testing.assert_close(after[:, keep], components[:, keep], atol=1e-4, rtol=0)
    assert not torch.allclose(edited.styles, conditioning.styles)
    assert torch.equal(model.style_components(conditioning), components)  # the input is not modified
    image = random_image(1, 3, 16, 16)
    with torch.inference_mode():
        changed, original = model.translate(image, edited), model.translate(image, conditioning)
    assert changed.shape == original.shape and not torch.allclose(changed, original)
    with pytest.raises(EngineError, match="numbered 0 to 3"):
        model.edit_component(conditioning, 4, 0.0)


def test_random_styles_round_trip_through_the_flow():
    model = build()
    conditioning = condition(model, StyleMode.RANDOM, n_samples=4, seed=9)
    drawn = torch.randn(4, model.config["latent_dim"], generator=torch.Generator().manual_seed(9))
    torch.testing.assert_close(model.style_components(conditioning), drawn, atol=1e-4, rtol=0)


def test_the_flows_density_of_a_drawn_style_is_the_normals_through_the_change_of_variables():
    flow = build().style_flow
    latents = torch.randn(5, flow.latent_dim, generator=torch.Generator().manual_seed(3))
    domains = torch.tensor([0, 1, 2, 0, 1])
    components, log_jacobian = flow._transform(domains).call_and_ladj(latents)
    expected = torch.distributions.Normal(0.0, 1.0).log_prob(latents).sum(-1) - log_jacobian
    torch.testing.assert_close(flow.log_density(flow.lift(components), domains), expected, atol=1e-4, rtol=0)
    other_domain = flow.log_density(flow.lift(components), (domains + 1) % 3)
    assert not torch.allclose(other_domain, expected, atol=1e-3)  # the domain is part of the density
    styles = torch.randn(5, flow.lift.out_features, generator=torch.Generator().manual_seed(4))
    outside = flow.off_subspace(styles)
    assert flow.off_subspace(flow.lift(components)).abs().max() < 1e-5  # drawn styles: none outside
    assert outside.abs().max() > 0.1 and flow.off_subspace(outside).sub(outside).abs().max() < 1e-5


def test_tiled_translation_equals_the_whole_image():
    model = build(n_res=2)
    conditioning = condition(model, StyleMode.RANDOM, n_samples=2, seed=1)
    image = random_image(1, 3, 40, 36, seed=7)
    whole = stages_compose(model, image, conditioning)
    torch.testing.assert_close(tiled(model, image, conditioning, tile=16), whole, atol=2e-5, rtol=1e-4)


def test_requests_the_model_cannot_serve_are_errors():
    model = build()
    with pytest.raises(EngineError, match="to_he, to_ihc, to_dab; not 'a2b'"):
        condition(model, StyleMode.RANDOM, "a2b")
    with pytest.raises(EngineError, match="no 'few_shot' style mode"):
        condition(model, StyleMode.FEW_SHOT, references=[random_image(1, 3, 8, 8)])
    with pytest.raises(EngineError, match="at least one reference"):
        condition(model, StyleMode.REFERENCE)
    with pytest.raises(EngineError, match="at least 1"):
        condition(model, StyleMode.RANDOM, n_samples=0)
    with pytest.raises(ReferenceImageError, match="need 3 channel") as error:
        condition(model, StyleMode.REFERENCE, references=[random_image(1, 3, 8, 8), random_image(1, 1, 8, 8)])
    assert error.value.position == 2


@pytest.mark.parametrize("overrides, message", [
    ({"domains": ["only"]}, "two or more names"),
    ({"domains": ["he", "he"]}, "must differ"),
    ({"domains": "he,ihc"}, "two or more names"),
    ({"style_dim": 2}, "at least latent_dim"),
    ({"dim": 0}, "dim must be an integer"),
])
def test_bad_configs_are_refused(overrides, message):
    engine = UnifiedEngine()
    with pytest.raises(EngineError, match=message):
        engine.build(engine.config("small", **overrides))


def test_a_model_file_keeps_the_domains_and_the_outputs(tmp_path):
    model = build()
    path = tmp_path / "unified.safetensors"
    save_model(path, UnifiedEngine(), model)
    loaded = load_model(path, device=torch.device("cpu")).model
    assert loaded.domains == DOMAINS
    image, reference = random_image(1, 3, 16, 16), random_image(1, 3, 8, 8, seed=1)
    with torch.inference_mode():
        for m in (StyleMode.RANDOM, StyleMode.REFERENCE):
            fields = {"references": [reference]} if m is StyleMode.REFERENCE else {"seed": 3}
            torch.testing.assert_close(loaded.translate(image, condition(loaded, m, **fields)),
                                       model.translate(image, condition(model, m, **fields)))


@pytest.mark.parametrize("direction", ["to_ihc", "to_dab"])
def test_decoding_the_content_code_equals_translating(direction):
    model = build()
    image = random_image(1, 3, 36, 44, seed=5)
    conditioning = condition(model, StyleMode.RANDOM, direction, n_samples=3, seed=1)
    with torch.inference_mode():
        content = model.encode_content(image, direction)
        torch.testing.assert_close(model.decode_content(content, conditioning), model.translate(image, conditioning))
        edited = model.edit_component(conditioning, 2, 1.5)  # a slider move: the same code decodes it
        torch.testing.assert_close(model.decode_content(content, edited), model.translate(image, edited))


def test_typical_styles_are_the_stored_ones_and_survive_the_model_file(tmp_path):
    model = build()
    torch.testing.assert_close(condition(model, StyleMode.TYPICAL).styles, torch.zeros(1, 8))  # until stored
    styles = torch.randn(len(DOMAINS), TINY["style_dim"], generator=torch.Generator().manual_seed(0))
    model.store_typical_styles(styles)
    torch.testing.assert_close(condition(model, StyleMode.TYPICAL, "to_dab").styles, styles[2:3])
    path = tmp_path / "typical.safetensors"
    save_model(path, UnifiedEngine(), model)
    loaded = load_model(path, device=torch.device("cpu")).model
    assert loaded.has_typical_styles
    torch.testing.assert_close(condition(loaded, StyleMode.TYPICAL, "to_he").styles, styles[:1])


def test_models_without_a_place_for_typical_styles_still_load(tmp_path):
    model = build(typical_styles=False)  # as model files written before typical styles existed
    assert "typical_styles" not in dict(model.named_buffers())
    with pytest.raises(EngineError, match="no place for typical styles"):
        model.store_typical_styles(torch.zeros(len(DOMAINS), TINY["style_dim"]))
    del model.config["typical_styles"]  # their configs have no such key
    path = tmp_path / "old.safetensors"
    save_model(path, UnifiedEngine(), model)
    loaded = load_model(path, device=torch.device("cpu")).model
    assert not loaded.has_typical_styles and StyleMode.TYPICAL not in loaded.capabilities.style_modes
    with pytest.raises(EngineError, match="no 'typical' style mode"):
        condition(loaded, StyleMode.TYPICAL)
