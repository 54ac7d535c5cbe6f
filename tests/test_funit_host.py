"""The host side of FUNIT: few-shot translation jobs (K class examples, stacks, errors),
`napari-i2i train funit --classes` → model file → `napari-i2i translate --class-images`."""

import numpy as np
import pytest
import torch
from PIL import Image

from engines.funit import FunitEngine, FunitModel
from napari_i2i.frontends.cli import main
from napari_i2i.contract.engine_api import EngineError, StyleMode
from napari_i2i.core.layer_data import ImageData, LayerDataError
from napari_i2i.core.model_file import load_model, read_model_info, save_model
from napari_i2i.core.translate import TranslateOptions, run_to_completion, run_translation

TINY_MODEL = {"dim": 8, "n_res": 1, "mlp_dim": 16, "class_dim": 8}  # class examples ≥ 8×8 (small)
TINY_RUN = """
size = 16
batch = 2
log_every = 1
[model]
dim = 8
n_res = 1
mlp_dim = 16
class_dim = 8
[training]
dis_dim = 8
dis_blocks = 4
"""


def funit_file(folder, channels=3):
    """An untrained tiny FUNIT saved through the real model-file path."""
    torch.manual_seed(0)
    engine = FunitEngine()
    path = folder / f"funit_{channels}ch.safetensors"
    save_model(path, engine, engine.build(engine.config("small", channels=channels, **TINY_MODEL)))
    return path


@pytest.fixture
def model_path(tmp_path):
    return funit_file(tmp_path)


def rgb(rng, name, height, width, planes=()):
    return ImageData(rng.integers(0, 256, (*planes, height, width, 3), dtype=np.uint8), name, rgb=True)


def few_shot(path, source, examples, tile=64):
    options = TranslateOptions(direction="translate", mode=StyleMode.FEW_SHOT, tile=tile)
    return run_to_completion(run_translation(load_model(path), [source], options, list(examples)))[0]


@pytest.fixture
def source(rng):
    return ImageData(rng.random((40, 52), dtype=np.float32), "cells")


def test_one_example(model_path, source, rng):
    example = rgb(rng, "leaf", 20, 24)
    originals = [source.data.copy(), example.data.copy()]
    result = few_shot(model_path, source, [example])
    assert result.rgb and result.data.shape == (40, 52, 3) and result.data.dtype == np.float32
    assert np.isfinite(result.data).all()
    assert result.description == "translate, few-shot (K=1: leaf)"
    recorded = result.metadata
    assert recorded["style_mode"] == "few_shot" and recorded["engine"] == "funit"
    assert recorded["class_examples"] == [{"name": "leaf", "planes": 1}] and recorded["n_examples"] == 1
    assert recorded["references"] == ["leaf"] and "n_samples" not in recorded
    for array, original in zip((source.data, example.data), originals):
        np.testing.assert_array_equal(array, original)


@pytest.fixture
def requests(monkeypatch):
    """The style requests the host hands to FUNIT."""
    seen = []
    condition = FunitModel.condition

    def spy(self, request):
        seen.append(request)
        return condition(self, request)

    monkeypatch.setattr(FunitModel, "condition", spy)
    return seen


def test_three_examples_of_different_sizes(model_path, source, rng, requests):
    """Sizes differ, one is larger than a tile (cut into crops), one is gray (repeated
    into RGB): each is one example of its own size; their order does not matter."""
    examples = [rgb(rng, "small", 12, 9), rgb(rng, "large", 150, 97),
                ImageData(rng.integers(0, 60000, (33, 41), dtype=np.uint16), "gray")]
    result = few_shot(model_path, source, examples)
    assert result.data.shape == (40, 52, 3)
    assert result.description == "translate, few-shot (K=3: small, large, gray)"
    assert [e["name"] for e in result.metadata["class_examples"]] == ["small", "large", "gray"]
    assert result.metadata["n_examples"] == 3
    [request] = requests
    assert (request.mode, request.direction) == (StyleMode.FEW_SHOT, "translate")
    assert [tuple(t.shape) for t in request.references] == [(1, 3, 12, 9), (4, 3, 64, 64), (1, 3, 33, 41)]
    for tensor in request.references:
        assert tensor.dtype == torch.float32 and -1 <= tensor.min() and tensor.max() <= 1
    shuffled = few_shot(model_path, source, examples[::-1])
    np.testing.assert_allclose(shuffled.data, result.data, atol=1e-5)


def test_a_stack_is_one_example_per_plane(model_path, source, rng, requests):
    stack = rgb(rng, "glyphs", 24, 28, planes=(3,))
    original = stack.data.copy()
    result = few_shot(model_path, source, [stack])
    assert [tuple(t.shape) for t in requests[0].references] == [(1, 3, 24, 28)] * 3
    assert result.description == "translate, few-shot (K=3: glyphs)"
    assert result.metadata["class_examples"] == [{"name": "glyphs", "planes": 3}]
    assert result.metadata["n_examples"] == 3
    planes = [ImageData(stack.data[i], f"plane {i}", rgb=True) for i in range(3)]
    np.testing.assert_allclose(few_shot(model_path, source, planes).data, result.data, atol=1e-5)
    np.testing.assert_array_equal(stack.data, original)
    # a stack beside other layers; with more than three layers the rest are counted
    others = [rgb(rng, f"extra{i}", 16, 16) for i in range(3)]
    mixed = few_shot(model_path, source, [stack, *others])
    assert mixed.description == "translate, few-shot (K=6: glyphs, extra0, extra1, +1 more)"


def test_few_shot_errors_name_the_problem(tmp_path, model_path, source, rng, munit_file):
    with pytest.raises(EngineError, match="needs at least one class example"):
        few_shot(model_path, source, [])
    thin = r"at least 8×8 pixels, example 2 is \(5, 30\) \(image 'thin'\)"
    with pytest.raises(EngineError, match=thin):
        few_shot(model_path, source, [rgb(rng, "ok", 16, 16), rgb(rng, "thin", 5, 30)])
    with pytest.raises(EngineError, match=r"example 2 is \(6, 6\) \(image 'stack' plane 1\)"):
        few_shot(model_path, source, [rgb(rng, "ok", 16, 16), rgb(rng, "stack", 6, 6, planes=(2,))])
    two_channel = funit_file(tmp_path, channels=2)
    with pytest.raises(LayerDataError, match="class example leaf: has 3 channel.*the model takes 2"):
        few_shot(two_channel, ImageData(np.zeros((2, 16, 16), np.float32), "two"), [rgb(rng, "leaf", 16, 16)])
    with pytest.raises(EngineError, match="offers style modes random, reference, matched, not 'few_shot'"):
        options = TranslateOptions(direction="a2b", mode=StyleMode.FEW_SHOT, tile=64)
        run_to_completion(run_translation(load_model(munit_file), [source], options, [rgb(rng, "x", 16, 16)]))
    with pytest.raises(EngineError, match="offers style modes few_shot, not 'random'"):
        options = TranslateOptions(direction="translate", mode=StyleMode.RANDOM, tile=64)
        run_to_completion(run_translation(load_model(model_path), [source], options))


# --- command line ---------------------------------------------------------------------


def make_classes(root, n_classes=3, per_class=3, size=20):
    rng = np.random.default_rng(0)
    for k in range(n_classes):
        folder = root / f"class{k}"
        folder.mkdir(parents=True)
        for i in range(per_class):
            pixels = rng.integers(50 * k, 50 * k + 100, (size, size, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(folder / f"{i}.png")
    return root


def train(*args):
    return main(["train", "funit", "--device", "cpu", "--quiet", *map(str, args)])


def test_train_on_class_folders_then_translate_with_class_images(tmp_path, capsys):
    classes = make_classes(tmp_path / "classes")
    config = tmp_path / "tiny.toml"
    config.write_text(TINY_RUN)
    run = tmp_path / "run"
    assert train("--classes", classes, "--out", run, "--config", config, "--iters", 2,
                 "--holdout-classes", "class2") == 0
    model = run / "model.safetensors"
    assert capsys.readouterr().out.strip() == str(model)
    info = read_model_info(model)
    assert info.engine == "funit" and info.trained and info.channels == {"translate": [3, 3]}
    record = info.provenance["training"]
    assert record["iterations"] == 2 and record["holdout_classes"] == ["class2"]
    assert record["classes"] == ["class0", "class1"]

    other_size = tmp_path / "wide.png"  # class examples may differ in size
    Image.open(classes / "class2" / "1.png").resize((36, 24)).save(other_size)
    out = tmp_path / "out.png"
    assert main(["translate", str(model), str(classes / "class0" / "0.png"), "-o", str(out), "--quiet",
                 "--class-images", str(classes / "class2" / "0.png"), str(other_size)]) == 0
    assert capsys.readouterr().out.strip() == str(out)
    assert np.asarray(Image.open(out)).shape == (20, 20, 3)

    assert train("--out", run, "--resume", "--iters", 3) == 0  # a resumed run keeps its held-out class
    assert read_model_info(model).provenance["training"]["holdout_classes"] == ["class2"]


def test_holdout_classes_by_number(tmp_path):
    classes = make_classes(tmp_path / "classes", n_classes=4, per_class=2)
    config = tmp_path / "tiny.toml"
    config.write_text(TINY_RUN)
    assert train("--classes", classes, "--out", tmp_path / "run", "--config", config, "--iters", 1,
                 "--holdout-classes", "2") == 0
    record = read_model_info(tmp_path / "run" / "model.safetensors").provenance["training"]
    assert len(record["holdout_classes"]) == 2 and len(record["classes"]) == 2


def test_command_line_errors_are_one_line(tmp_path, capsys, munit_file, model_path):
    classes = make_classes(tmp_path / "classes", per_class=1)
    image = classes / "class0" / "0.png"

    def fails(argv, message):
        assert main(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()  # may start with the untrained-model warning
        assert [line.startswith("napari-i2i: error:") for line in err].count(True) == 1, err
        assert message in err[-1], err

    out = str(tmp_path / "run")
    fails(["train", "funit", "--out", out], "--classes is required for funit")
    fails(["train", "funit", "--classes", str(classes), "--domain-a", str(classes), "--out", out],
          "funit trains on one folder of class subfolders (--classes DIR); drop --domain-a")
    fails(["train", "munit", "--classes", str(classes), "--out", out],
          "munit trains on two folders of unpaired images (--domain-a DIR --domain-b DIR); drop --classes")
    fails(["train", "munit", "--domain-a", str(classes), "--domain-b", str(classes),
           "--holdout-classes", "1", "--out", out], "drop --holdout-classes")
    fails(["train", "funit", "--classes", str(classes), "--holdout-classes", "class9", "--out", out],
          "held-out classes not found: class9")
    fails(["train", "funit", "--classes", str(classes), "--holdout-classes", "3", "--out", out],
          "cannot hold out 3 of 3 classes")

    target = str(tmp_path / "x.png")
    fails(["translate", str(munit_file), str(image), "-o", target, "--class-images", str(image)],
          "this munit model does not translate into the class of example images")
    fails(["translate", str(model_path), str(image), "-o", target],
          "give one or more with --class-images")
    fails(["translate", str(model_path), str(image), "-o", target, "--reference", str(image)],
          "give class examples with --class-images")
    fails(["translate", str(model_path), str(image), "-o", target, "--class-images", str(image),
           "--samples", "2"], "drop it when giving --class-images")
    fails(["translate", str(model_path), str(image), "-o", target, "--class-images",
           str(tmp_path / "missing.png")], "missing.png: no such file")
