"""The typical style of a multi-domain model's domain (the mean style of its training images,
stored by training): from the command line, with a style edit, and in the Translate widget."""

import numpy as np
import pytest
import tifffile
import torch

from engines.unified import UnifiedEngine
from napari_i2i.contract.engine_api import StyleMode
from napari_i2i.core.job_progress import run_to_completion
from napari_i2i.core.layer_data import ImageData
from napari_i2i.core.model_file import load_model, save_model
from napari_i2i.core.style_edits import edited_conditioning
from napari_i2i.core.translate import TranslateOptions, run_translation
from napari_i2i.frontends.cli import main

TINY_UNIFIED = {"domains": ["he", "ihc"], "dim": 8, "n_res": 1, "mlp_dim": 16, "style_dim": 8,
                "latent_dim": 4, "style_downsample": 2, "flow_hidden": 8}
# The stored styles: far apart per domain, so an output shows which one it took.
STORED = torch.tensor([[2.0] * 8, [-2.0] * 8])


@pytest.fixture
def typical_file(tmp_path):
    torch.manual_seed(0)
    engine = UnifiedEngine()
    model = engine.build(engine.config("small", **TINY_UNIFIED)).eval()
    model.store_typical_styles(STORED)
    path = tmp_path / "typical.safetensors"
    save_model(path, engine, model)
    return path


@pytest.fixture
def source(tmp_path):
    path = tmp_path / "cells.tif"
    tifffile.imwrite(path, (np.random.default_rng(0).random((24, 32, 3)) * 255).astype(np.uint8), photometric="rgb")
    return path


def translate(model, source, out, *flags):
    return main(["translate", str(model), str(source), "-o", str(out), "--precision", "fp32", "--compile", "off",
                 "--quiet", *flags])


def core_translation(path, source, domain, edits=None):
    loaded = load_model(path, device=torch.device("cpu"))
    options = TranslateOptions(f"to_{domain}", StyleMode.TYPICAL, precision="fp32", compile="off")
    conditioning = (edited_conditioning(loaded.model, options, [], edits, torch.device("cpu"))
                    if edits is not None else None)
    image = ImageData(tifffile.imread(source), "cells", rgb=True, contrast_limits=(0.0, 255.0))
    return run_to_completion(run_translation(loaded, [image], options, (), conditioning))[0].data


def test_the_cli_translates_with_each_domains_stored_style_and_edits_it(typical_file, source, tmp_path):
    for domain in ("he", "ihc"):
        assert translate(typical_file, source, tmp_path / f"{domain}.tif", "--domain", domain, "--typical-style") == 0
        np.testing.assert_array_equal(tifffile.imread(tmp_path / f"{domain}.tif"),
                                      core_translation(typical_file, source, domain))
    assert not np.array_equal(tifffile.imread(tmp_path / "he.tif"), tifffile.imread(tmp_path / "ihc.tif"))
    assert translate(typical_file, source, tmp_path / "edited.tif", "--domain", "ihc", "--typical-style",
                     "--style-edit", "0=1.5") == 0
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "edited.tif"),
                                  core_translation(typical_file, source, "ihc", {0: 1.5}))


def test_the_cli_refuses_other_style_inputs_with_it(typical_file, source, tmp_path, capsys):
    assert translate(typical_file, source, tmp_path / "out.tif", "--domain", "he", "--typical-style",
                     "--samples", "3") == 2
    assert "--typical-style is a style of its own; drop --samples" in capsys.readouterr().err
    assert not (tmp_path / "out.tif").exists()


def test_the_widget_offers_the_mode_and_hides_the_other_style_inputs(make_napari_viewer, qtbot, typical_file,
                                                                    source):
    from napari_i2i.frontends.translate_widget import TranslateWidget

    viewer = make_napari_viewer()
    data = tifffile.imread(source)
    layer = viewer.add_image(data, name="cells", rgb=True, scale=(0.5, 0.5))
    widget = TranslateWidget(viewer)
    widget.model_file.value = typical_file
    assert StyleMode.TYPICAL in widget.style_mode.choices
    widget.sources.value = [layer]
    widget.direction.value = "to_ihc"
    widget.precision.value, widget.compile.value = "fp32", "off"
    widget.style_mode.value = StyleMode.TYPICAL
    assert widget.references.native.isHidden() and widget.n_samples.native.isHidden()
    assert widget.seed.native.isHidden()
    widget.run()
    qtbot.waitUntil(lambda: widget.run_button.enabled, timeout=60_000)
    result = viewer.layers[-1]
    np.testing.assert_array_equal(np.asarray(result.data), core_translation(typical_file, source, "ihc"))
    assert tuple(result.scale) == (0.5, 0.5)
    np.testing.assert_array_equal(layer.data, data)
