"""The host side of StEP: style interpolation jobs (ends, metadata, errors),
`napari-i2i train step --pairs-a --pairs-b` → model file → `napari-i2i translate --interpolate`."""

import numpy as np
import pytest
import torch
from PIL import Image

from engines.step import StepEngine
from napari_i2i.frontends.cli import main
from napari_i2i.contract.engine_api import EngineError, StyleMode
from napari_i2i.core.layer_data import ImageData, LayerDataError
from napari_i2i.core.model_file import load_model, read_model_info, save_model
from napari_i2i.core.translate import TranslateOptions, run_to_completion, run_translation

TINY_MODEL = {"dim": 8, "n_downsample": 1, "n_res": 1, "style_encoder_dim": 8, "style_downsample": 2,
              "mapper_dim": 16}
TINY_RUN = """
size = 16
batch = 2
log_every = 1
checkpoint_every = 100
validate_every = 100
[model]
dim = 8
n_downsample = 1
n_res = 1
style_encoder_dim = 8
style_downsample = 2
mapper_dim = 16
[training]
style_iterations = 1
generator_iterations = 1
finetune_iterations = 1
mapper_iterations = 1
style_pool = 6
style_batch = 2
pool_every = 1
positives_from = 2
negatives_from = 2
dis_dim = 8
dis_layers = 2
dis_scales = 2
mapper_batch = 4
mapper_samples = 8
gram_layers = ["relu1_2"]
gram_weights = [1.0]
"""


def step_file(folder, channels_a=1):
    """An untrained tiny StEP (no fitted mapper) saved through the real model-file path."""
    torch.manual_seed(0)
    engine = StepEngine()
    path = folder / "step.safetensors"
    save_model(path, engine, engine.build(engine.config("small", channels_a=channels_a, **TINY_MODEL)))
    return path


@pytest.fixture
def model_path(tmp_path):
    return step_file(tmp_path)


@pytest.fixture
def source(rng):
    return ImageData(rng.random((20, 28), dtype=np.float32), "cells")


def rgb(rng, name, height=16, width=20, planes=()):
    return ImageData(rng.integers(0, 256, (*planes, height, width, 3), dtype=np.uint8), name, rgb=True)


def translate(path, source, mode, references, n_samples=1):
    options = TranslateOptions(direction="a2b", mode=mode, n_samples=n_samples)
    return run_to_completion(run_translation(load_model(path), [source], options, list(references)))[0]


def test_interpolation_runs_from_the_first_reference_to_the_second(model_path, source, rng):
    first, second = rgb(rng, "calm"), rgb(rng, "busy", planes=(2,))  # a stack is one reference
    originals = [image.data.copy() for image in (source, first, second)]
    result = translate(model_path, source, StyleMode.INTERPOLATE, [first, second], n_samples=5)
    assert result.rgb and result.data.shape == (5, 20, 28, 3) and result.axes == [None, 0, 1]
    assert np.isfinite(result.data).all()
    assert result.description == "a2b, 5 steps from calm to busy"
    recorded = result.metadata
    assert recorded["style_mode"] == "interpolate" and recorded["engine"] == "step"
    assert recorded["interpolation"] == {"from": "calm", "to": "busy", "steps": 5}
    assert recorded["references"] == ["calm", "busy"] and "n_samples" not in recorded
    for end, reference in ((0, first), (-1, second)):
        alone = translate(model_path, source, StyleMode.REFERENCE, [reference])
        assert alone.data.shape == (20, 28, 3)
        np.testing.assert_allclose(result.data[end], alone.data, atol=1e-6)
    assert not np.allclose(result.data[0], result.data[-1])
    for image, original in zip((source, first, second), originals):
        np.testing.assert_array_equal(image.data, original)


def test_interpolation_errors(model_path, source, rng):
    first, second = rgb(rng, "calm"), rgb(rng, "busy")
    for references in ([], [first], [first, second, first]):
        with pytest.raises(EngineError, match=f"exactly 2 reference images, not {len(references)}"):
            translate(model_path, source, StyleMode.INTERPOLATE, references, n_samples=3)
    with pytest.raises(EngineError, match="at least 2 steps, got 1"):
        translate(model_path, source, StyleMode.INTERPOLATE, [first, second], n_samples=1)
    tiny = rgb(rng, "speck", 2, 2)
    with pytest.raises(EngineError, match=r"reference 1 is \(2, 2\) \(image 'speck'\)"):
        translate(model_path, source, StyleMode.INTERPOLATE, [tiny, second], n_samples=3)
    with pytest.raises(EngineError, match=r"reference 3 is \(2, 2\) \(image 'speck'\)"):
        translate(model_path, source, StyleMode.REFERENCE, [first, second, tiny])
    empty = ImageData(np.zeros((0, 16), np.float32), "void")
    with pytest.raises(LayerDataError, match="reference 2 void: empty image"):
        translate(model_path, source, StyleMode.INTERPOLATE, [first, empty], n_samples=3)
    with pytest.raises(EngineError, match="offers style modes reference, interpolate, not 'random'"):
        translate(model_path, source, StyleMode.RANDOM, [])


# --- the command line ---------------------------------------------------------------------


def write_pairs(root, rng, n=6, size=20):
    """Gray A images and colour B images of the same layouts, paired by name."""
    for folder in ("a", "b"):
        (root / folder).mkdir()
    for i in range(n):
        mask = rng.random((size, size)) > 0.5
        Image.fromarray(np.where(mask, 200, 40).astype(np.uint8)).save(root / "a" / f"{i}.png")
        colours = rng.integers(0, 256, (2, 3), dtype=np.uint8)
        Image.fromarray(np.where(mask[..., None], colours[0], colours[1]).astype(np.uint8)).save(
            root / "b" / f"{i}.png")
    return root / "a", root / "b"


def train(*args):
    return main(["train", "step", "--device", "cpu", "--quiet", *map(str, args)])


@pytest.fixture
def empty_hub(tmp_path, monkeypatch):
    """No VGG16 in the torch cache (the machine's own cache must not count): a random one is used."""
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "empty_hub"))


@pytest.mark.usefixtures("empty_hub")
def test_train_step_then_interpolate(tmp_path, rng, capsys):
    a, b = write_pairs(tmp_path, rng)
    config = tmp_path / "tiny_step.toml"
    config.write_text(TINY_RUN)
    run = tmp_path / "run"
    with pytest.warns(UserWarning, match="randomly initialised"):
        assert train("--pairs-a", a, "--pairs-b", b, "--out", run, "--config", config, "--iters", 4) == 0
    model = run / "model.safetensors"
    assert capsys.readouterr().out.strip() == str(model)
    info = read_model_info(model)
    assert info.engine == "step" and info.trained
    assert (info.config["channels_a"], info.config["channels_b"]) == (1, 3)  # from the images
    assert info.provenance["training"]["method"]["mapper_trained"] is True  # all four stages ran
    assert set(info.provenance["training"]["method"]["stages"]) == {"style", "generator", "finetune", "mapper"}

    out = tmp_path / "out.tif"
    assert main(["translate", str(model), str(a / "0.png"), "-o", str(out), "--quiet",
                 "--interpolate", str(b / "1.png"), str(b / "2.png"), "--steps", "3"]) == 0
    import tifffile

    assert tifffile.imread(out).shape == (3, 20, 20, 3)  # the steps axis first
    assert main(["translate", str(model), str(a / "0.png"), "-o", str(tmp_path / "png" / "out.png"), "--quiet",
                 "--interpolate", str(b / "1.png"), str(b / "2.png"), "--steps", "2"]) == 0
    assert sorted(p.name for p in (tmp_path / "png").iterdir()) == ["out_0.png", "out_1.png"]


@pytest.mark.usefixtures("empty_hub")
def test_train_step_with_chosen_stages(tmp_path, rng):
    a, b = write_pairs(tmp_path, rng)
    config = tmp_path / "tiny_step.toml"
    config.write_text(TINY_RUN)
    run = tmp_path / "run"
    assert train("--pairs-a", a, "--pairs-b", b, "--out", run, "--config", config,
                 "--stages", "generator, mapper") == 0
    info = read_model_info(run / "model.safetensors")
    assert info.provenance["training"]["method"]["stages"] == {
        "generator": {"planned": 1, "done": 1}, "mapper": {"planned": 1, "done": 1}}


def test_train_and_translate_errors(tmp_path, rng, capsys, model_path):
    a, b = write_pairs(tmp_path, rng)
    out = tmp_path / "r"
    cases = [
        (["train", "step", "--out", out], "--pairs-a is required for step"),
        (["train", "step", "--pairs-a", a, "--domain-b", b, "--out", out],
         "step trains on aligned image pairs (--pairs-a DIR [--pairs-b DIR]); drop --domain-b"),
        (["train", "step", "--pairs-a", a, "--classes", b, "--out", out], "drop --classes"),
        (["train", "munit", "--domain-a", a, "--domain-b", b, "--pairs-a", a, "--stages", "style", "--out", out],
         "munit trains on two folders of unpaired images (--domain-a DIR --domain-b DIR); "
         "drop --pairs-a and --stages"),
        (["train", "funit", "--classes", a, "--pairs-b", b, "--out", out], "drop --pairs-b"),
        (["train", "step", "--out", out, "--resume", "--stages", "mapper"], "--stages cannot change a run"),
        (["train", "step", "--pairs-a", a, "--pairs-b", b, "--stages", "style,polish", "--out", out],
         "StEP stages are style, generator, finetune, mapper"),
    ]
    ref = str(b / "0.png")
    translate = ["translate", str(model_path), str(a / "0.png"), "-o", str(tmp_path / "o.tif")]
    cases += [
        (translate, "takes its style from reference images: give --reference IMG... "
                    "(or --interpolate REF1 REF2 --steps N)"),  # no fitted mapper: no random styles
        ([*translate, "--interpolate", ref, ref], "--interpolate needs --steps N with N >= 2"),
        ([*translate, "--interpolate", ref, ref, "--steps", "1"], "--interpolate needs --steps N with N >= 2"),
        ([*translate, "--steps", "3", "--reference", ref], "give it with --interpolate REF1 REF2"),
        ([*translate, "--interpolate", ref, ref, "--steps", "3", "--reference", ref], "give it alone"),
        ([*translate, "--interpolate", ref, ref, "--steps", "3", "--samples", "2"], "--samples applies"),
        ([*translate, "--reference", ref, "--match"], "cannot match references to inputs"),
    ]
    for argv, message in cases:
        assert main([*map(str, argv), "--quiet"]) == 2
        assert message in capsys.readouterr().err, argv
    assert not out.exists()


def test_interpolate_needs_a_model_that_interpolates(tmp_path, munit_file, rng, capsys):
    image = tmp_path / "x.png"
    Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(image)
    assert main(["translate", str(munit_file), str(image), "-o", str(tmp_path / "o.png"), "--quiet",
                 "--interpolate", str(image), str(image), "--steps", "3"]) == 2
    assert "does not interpolate between styles (styles: random, reference, matched); drop --interpolate" in (
        capsys.readouterr().err)
