"""The input gate of the unified engine (``input_gate``): a translation ``G(x, s)`` is blended
with ``x`` per pixel, so a closed gate keeps the input exactly. Tiled output still equals
whole-image output, the stages and the style explorer's content code compose to ``translate``,
training blends its translations but not the identity term's reconstruction, and model files
from before the key load as before."""

import json

import pytest
import torch
from conftest import random_image, stages_compose, tiled
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from engines.unified import UnifiedEngine
from napari_i2i.contract.engine_api import EngineError, StyleMode, StyleRequest
from napari_i2i.core.model_file import METADATA_KEY, load_model, save_model
from trainers.unified import TRAIN_PRESETS, build_trainer

DOMAINS = ["he", "ihc", "dab"]
TINY = {"domains": DOMAINS, "dim": 8, "n_res": 1, "mlp_dim": 16, "style_dim": 8, "latent_dim": 4,
        "style_downsample": 2, "flow_hidden": 8}
TINY_TRAINING = {"dis_dim": 8, "dis_blocks": 4, "style_dis_dim": 8}


def build(input_gate=True, **overrides):
    torch.manual_seed(0)
    engine = UnifiedEngine()
    return engine.build(engine.config("small", **{**TINY, "input_gate": input_gate, **overrides})).eval()


def set_gate(model, logit):
    """Force the gate channel to a constant logit (±100: closed / open)."""
    conv = model.generator.decoder.upsample[-2][1]  # the last ConvBlock's convolution
    with torch.no_grad():
        conv.weight[-1].zero_()
        conv.bias[-1] = logit


def latent(model, direction="to_ihc", n_samples=2):
    return model.condition(StyleRequest(StyleMode.RANDOM, direction, n_samples=n_samples, seed=1))


def test_stages_compose_to_translate_and_tiled_equals_the_whole_image():
    model = build(n_res=2)
    image = random_image(1, 3, 40, 36, seed=7)
    conditioning = latent(model)
    whole = stages_compose(model, image, conditioning)
    torch.testing.assert_close(tiled(model, image, conditioning, tile=16), whole, atol=2e-5, rtol=1e-4)


def test_a_closed_gate_returns_the_input_exactly_and_an_open_one_the_decoders_image():
    model = build()
    image = random_image(1, 3, 24, 28, seed=3)
    conditioning = latent(model)
    set_gate(model, -100.0)
    with torch.inference_mode():
        kept = model.translate(image, conditioning)
        assert torch.equal(kept, image.expand_as(kept))
        assert torch.equal(tiled(model, image, conditioning, tile=16), kept)
    set_gate(model, 100.0)
    with torch.inference_mode():
        remade = model.translate(image, conditioning)
        decoded = model.generator.decode(model.generator.content_encoder(image), conditioning.styles)
    torch.testing.assert_close(remade, decoded)
    assert decoded.shape == (2, 3, 24, 28) and (remade - image).abs().mean() > 0.05


def test_the_style_explorers_content_code_blends_with_its_source():
    model = build()
    image = random_image(1, 3, 20, 24, seed=5)
    conditioning = latent(model, "to_dab", n_samples=3)
    with torch.inference_mode():
        content = model.encode_content(image, "to_dab")
        torch.testing.assert_close(model.decode_content(content, conditioning), model.translate(image, conditioning))
        edited = model.edit_component(conditioning, 1, 1.5)
        torch.testing.assert_close(model.decode_content(content, edited), model.translate(image, edited))
    set_gate(model, -100.0)
    with torch.inference_mode():
        assert torch.equal(model.decode_content(content, edited), image.expand(3, -1, -1, -1))


def test_a_model_file_without_the_key_loads_without_the_gate(tmp_path):
    model = build(input_gate=False)
    path = tmp_path / "old.safetensors"
    save_model(path, UnifiedEngine(), model)
    with safe_open(path, framework="pt") as f:
        metadata = f.metadata()
    info = json.loads(metadata[METADATA_KEY])
    del info["config"]["input_gate"]  # as written before the key existed
    save_file(load_file(path), path, metadata={METADATA_KEY: json.dumps(info)})
    loaded = load_model(path, device=torch.device("cpu")).model
    assert loaded.config["input_gate"] is False
    assert type(loaded.generator.decoder.upsample[-1][-1]).__name__ == "Tanh"
    image = random_image(1, 3, 16, 16)
    with torch.inference_mode():
        torch.testing.assert_close(loaded.translate(image, latent(loaded)), model.translate(image, latent(model)))


def test_a_gated_model_file_keeps_the_gate(tmp_path):
    model = build()
    path = tmp_path / "gated.safetensors"
    save_model(path, UnifiedEngine(), model)
    loaded = load_model(path, device=torch.device("cpu")).model
    assert loaded.config["input_gate"] is True
    image = random_image(1, 3, 16, 16)
    with torch.inference_mode():
        torch.testing.assert_close(loaded.translate(image, latent(loaded)), model.translate(image, latent(model)))


def test_the_gate_setting_must_be_true_or_false():
    with pytest.raises(EngineError, match="input_gate must be true or false"):
        build(input_gate=1)


def make_trainer():
    model = build().train()
    return build_trainer(model, {**TRAIN_PRESETS["small"], **TINY_TRAINING}, torch.device("cpu"))


def batch(size=16):
    generator = torch.Generator().manual_seed(0)
    x, y = (torch.rand(4, 3, size, size, generator=generator) * 2 - 1 for _ in range(2))
    return (x, torch.tensor([0, 1, 2, 0])), (y, torch.tensor([1, 2, 0, 0]))


def test_training_blends_translations_but_not_the_identity_reconstruction():
    trainer = make_trainer()
    set_gate(trainer.network, -100.0)
    set_gate(trainer.model, -100.0)
    (x, source), (y, target) = batch()
    with torch.no_grad():
        forward = trainer._forward(x, y, target, latent=True)
        assert torch.equal(forward.fake, x)  # closed: the translation is its input
        [scored] = trainer.scoring_translations(batch())
    for output in (scored.translated, scored.reconstructed, scored.second_style):
        assert torch.equal(output, x)
    losses = trainer.step(batch(), 0)
    assert losses["cycle"] < 1e-6 and losses["diversity"] < 1e-6  # the way back blends with the translation (= x)
    assert losses["identity"] > 0.05  # y re-made in its own style: the decoder's image alone


@pytest.mark.parametrize("iteration", [0, 1])  # latent-guided, then reference-guided
def test_training_steps_run_and_teach_the_gate(iteration):
    trainer = make_trainer()
    losses = trainer.step(batch(), iteration)
    assert all(torch.isfinite(torch.tensor(value)) for value in losses.values())
    gate = trainer.network.generator.decoder.upsample[-2][1]
    assert gate.weight.grad[-1].abs().sum() > 0 and gate.bias.grad[-1] != 0
