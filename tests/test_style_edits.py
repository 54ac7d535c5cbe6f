"""Style edits: ``--style-edit AXIS=VALUE`` from the command line, ``run_translation(conditioning=...)``,
and the style explorer's Apply, which translates with the conditioning its preview builds."""

import numpy as np
import pytest
import tifffile
import torch

from engines.munit import MunitEngine
from engines.unified import UnifiedEngine
from engines.unit import UnitEngine
from napari_i2i.contract.engine_api import EngineError, StyleMode, StyleRequest
from napari_i2i.core.job_progress import run_to_completion
from napari_i2i.core.layer_data import ImageData
from napari_i2i.core.model_file import load_model, save_model
from napari_i2i.core.style_edits import edited_conditioning, parse_style_edits
from napari_i2i.core.translate import TranslateOptions, run_translation
from napari_i2i.frontends.cli import main
from napari_i2i.frontends.style_explorer_job import ExplorationJob, apply_translation, start_exploration

TINY_UNIFIED = {"domains": ["he", "ihc"], "dim": 8, "n_res": 1, "mlp_dim": 16, "style_dim": 8,
                "latent_dim": 4, "style_downsample": 2, "flow_hidden": 8}


def model_file(tmp_path, engine, **overrides):
    torch.manual_seed(0)
    path = tmp_path / f"{engine.name}.safetensors"
    save_model(path, engine, engine.build(engine.config("small", **overrides)).eval())
    return path


@pytest.fixture
def unified_file(tmp_path):
    return model_file(tmp_path, UnifiedEngine(), **TINY_UNIFIED)


def rgb_image(seed=0, height=36, width=44):
    return (np.random.default_rng(seed).random((height, width, 3)) * 255).astype(np.uint8)


@pytest.fixture
def source_file(tmp_path):
    path = tmp_path / "source.tif"
    tifffile.imwrite(path, rgb_image(), photometric="rgb")
    return path


def source_data(path):
    return ImageData(tifffile.imread(path), path.stem, rgb=True, contrast_limits=(0.0, 255.0))


def test_edits_parse_axis_and_value():
    assert parse_style_edits(["3=+1.5", "0=-2", " 1 = 0.25"]) == {3: 1.5, 0: -2.0, 1: 0.25}
    for bad, message in [("3", "AXIS=VALUE"), ("a=1", "AXIS=VALUE"), ("1=x", "AXIS=VALUE"),
                         ("-1=2", "counted from 0"), ("2=inf", "finite"), ("2=nan", "finite")]:
        with pytest.raises(ValueError, match=message):
            parse_style_edits([bad])
    with pytest.raises(ValueError, match="axis 2 is edited twice"):
        parse_style_edits(["2=1", "2=0"])


def translate_cli(unified_file, source_file, out, *flags):
    return main(["translate", str(unified_file), str(source_file), "-o", str(out), "--domain", "ihc",
                 "--precision", "fp32", "--compile", "off", "--quiet", *flags])


def test_cli_edit_equals_the_core_translation_of_the_moved_style(unified_file, source_file, tmp_path):
    assert translate_cli(unified_file, source_file, tmp_path / "plain.tif", "--seed", "3") == 0
    assert translate_cli(unified_file, source_file, tmp_path / "edited.tif", "--seed", "3",
                         "--style-edit", "1=2.5", "--style-edit", "3=-1") == 0
    plain, edited = (tifffile.imread(tmp_path / name) for name in ("plain.tif", "edited.tif"))
    assert not np.array_equal(plain, edited)

    loaded = load_model(unified_file, device=torch.device("cpu"))
    options = TranslateOptions("to_ihc", StyleMode.RANDOM, seed=3, precision="fp32", compile="off")
    conditioning = edited_conditioning(loaded.model, options, [], {1: 2.5, 3: -1.0}, torch.device("cpu"))
    expected = run_to_completion(run_translation(loaded, [source_data(source_file)], options, (), conditioning))
    np.testing.assert_array_equal(edited, expected[0].data)
    components = loaded.model.style_components(conditioning)[0]
    unedited = edited_conditioning(loaded.model, options, [], {}, torch.device("cpu"))
    start = loaded.model.style_components(unedited)[0]
    torch.testing.assert_close(components[[1, 3]], torch.tensor([2.5, -1.0]), atol=1e-4, rtol=0)
    torch.testing.assert_close(components[[0, 2]], start[[0, 2]], atol=1e-4, rtol=0)  # the others kept


def test_cli_edit_starts_from_the_references_style(unified_file, source_file, tmp_path):
    reference = tmp_path / "reference.tif"
    tifffile.imwrite(reference, rgb_image(5), photometric="rgb")
    assert translate_cli(unified_file, source_file, tmp_path / "ref.tif", "--reference", str(reference)) == 0
    assert translate_cli(unified_file, source_file, tmp_path / "zero.tif", "--reference", str(reference),
                         "--style-edit", "0=0") == 0
    loaded = load_model(unified_file, device=torch.device("cpu"))
    options = TranslateOptions("to_ihc", StyleMode.REFERENCE, precision="fp32", compile="off")
    references = [source_data(reference)]
    conditioning = edited_conditioning(loaded.model, options, references, {0: 0.0}, torch.device("cpu"))
    expected = run_to_completion(run_translation(loaded, [source_data(source_file)], options, references,
                                                 conditioning))
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "zero.tif"), expected[0].data)
    assert not np.array_equal(tifffile.imread(tmp_path / "ref.tif"), expected[0].data)


@pytest.mark.parametrize("engine, flags, message", [
    ("unified", ["--domain", "ihc", "--style-edit", "4=1"], "style axis 4 is out of range: this model's axes are 0 to 3"),
    ("unified", ["--domain", "ihc", "--style-edit", "4"], "write AXIS=VALUE"),
    ("unified", ["--domain", "ihc", "--style-edit", "0=1", "--samples", "2"], "use one sample, not 2"),
    ("unit", ["--style-edit", "0=1"], "no style axes"),
    ("munit", ["--style-edit", "8=1"], "axes are 0 to 7"),
])
def test_bad_edits_are_one_line_errors(tmp_path, source_file, capsys, engine, flags, message):
    engines = {"unified": (UnifiedEngine(), TINY_UNIFIED), "unit": (UnitEngine(), {}), "munit": (MunitEngine(), {})}
    built, overrides = engines[engine]
    path = model_file(tmp_path, built, **overrides)
    assert main(["translate", str(path), str(source_file), "-o", str(tmp_path / "out.tif"), *flags]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("napari-i2i: error:") and message in err[-1]
    assert not (tmp_path / "out.tif").exists()


@pytest.mark.parametrize("engine, direction, overrides", [(UnifiedEngine(), "to_ihc", TINY_UNIFIED),
                                                          (MunitEngine(), "a2b", {})])
def test_apply_equals_the_core_translation_with_the_same_edit(tmp_path, engine, direction, overrides):
    path = model_file(tmp_path, engine, **overrides)
    options = TranslateOptions(direction, StyleMode.RANDOM, seed=2, tile=32, precision="fp32", compile="off")
    exploration = start_exploration(ExplorationJob(path, engine.name, "cpu", options, []))
    values = exploration.axes.values.clone()
    values[1] = 2.0
    source = ImageData(rgb_image(1, 70, 90), "cells", rgb=True, contrast_limits=(0.0, 255.0))
    applied = run_to_completion(apply_translation(exploration, source, values))

    loaded = load_model(path, device=torch.device("cpu"))
    conditioning = edited_conditioning(loaded.model, options, [], {1: 2.0}, torch.device("cpu"))
    expected = run_to_completion(run_translation(loaded, [source], options, (), conditioning))[0]
    np.testing.assert_array_equal(applied.data, expected.data)  # tiled (tile 32 < 90): the same tiles
    assert applied.data.shape == (70, 90, 3) and "explored: " in applied.description
    assert applied.metadata["style_axes"][exploration.axes.labels[1]] == pytest.approx(2.0)


def test_a_given_conditioning_replaces_the_options_style(unified_file):
    loaded = load_model(unified_file, device=torch.device("cpu"))
    source = ImageData(rgb_image(2), "cells", rgb=True, contrast_limits=(0.0, 255.0))
    seeded = TranslateOptions("to_ihc", StyleMode.RANDOM, seed=4, precision="fp32", compile="off")
    other = TranslateOptions("to_ihc", StyleMode.RANDOM, seed=9, precision="fp32", compile="off")
    conditioning = loaded.model.condition(StyleRequest(StyleMode.RANDOM, "to_ihc", seed=4))
    given = run_to_completion(run_translation(loaded, [source], other, (), conditioning))[0].data
    seeded_result = run_to_completion(run_translation(loaded, [source], seeded))[0].data
    np.testing.assert_array_equal(given, seeded_result)
    with pytest.raises(EngineError, match="not from 'interpolate' styles"):
        edited_conditioning(loaded.model, TranslateOptions("to_ihc", StyleMode.INTERPOLATE, n_samples=3), [],
                            {0: 1.0}, torch.device("cpu"))
