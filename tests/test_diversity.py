"""Diversity maps (per-pixel standard deviation over random styles) in the core, the CLI
(`--diversity-map`), the Translate widget (its checkbox, in a real viewer); and `--domain`."""

import numpy as np
import pytest
import tifffile
import torch

from engines.unified import UnifiedEngine
from napari_i2i.contract.engine_api import StyleMode
from napari_i2i.core.diversity import DiversityMapError, diversity_map, diversity_result, require_samples
from napari_i2i.core.model_file import save_model
from napari_i2i.core.translate import TranslateOptions, TranslationResult
from napari_i2i.frontends.cli import main

TINY_UNIFIED = {"domains": ["he", "ihc"], "dim": 8, "n_res": 1, "mlp_dim": 16, "style_dim": 8,
                "latent_dim": 4, "style_downsample": 2, "flow_hidden": 8}


def error_lines(capsys):
    """Standard error without the untrained-weights warning: the refusal, one line, no traceback."""
    return [line for line in capsys.readouterr().err.strip().splitlines() if not line.startswith("warning:")]


@pytest.fixture
def unified_file(tmp_path):
    torch.manual_seed(0)
    engine = UnifiedEngine()
    path = tmp_path / "unified.safetensors"
    save_model(path, engine, engine.build(engine.config("small", **TINY_UNIFIED)).eval())
    return path


@pytest.fixture
def gray_tif(tmp_path):
    path = tmp_path / "cells.tif"
    tifffile.imwrite(path, np.random.default_rng(0).integers(0, 255, (24, 32), dtype=np.uint8))
    return path


def test_map_is_the_standard_deviation_over_samples_averaged_over_channels():
    samples = np.stack([np.zeros((2, 3, 3)), np.ones((2, 3, 3)) * [0, 2, 4]]).astype(np.uint8)  # (S, H, W, RGB)
    rgb_map = diversity_map(samples, rgb=True)
    assert rgb_map.shape == (2, 3) and rgb_map.dtype == np.float32
    np.testing.assert_allclose(rgb_map, (0 + 1 + 2) / 3)  # std of {0, x} is x / 2
    gray = np.stack([np.zeros((4, 5)), np.full((4, 5), 6.0)])
    np.testing.assert_allclose(diversity_map(gray, rgb=False), 3.0)
    channels = np.stack([np.zeros((2, 4, 5)), np.stack([np.full((4, 5), 2.0), np.full((4, 5), 6.0)])])
    np.testing.assert_allclose(diversity_map(channels, rgb=False, channel_axis=0), 2.0)  # (1 + 3) / 2
    with pytest.raises(DiversityMapError, match="2 or more samples"):
        diversity_map(gray[:1], rgb=False)


def test_result_map_keeps_the_source_axes_and_refuses_a_single_style():
    data = np.random.default_rng(0).random((3, 2, 6, 7, 3), dtype=np.float32)  # samples, planes, Y, X, RGB
    result = TranslationResult("cells", data, True, [None, 0, 1, 2], "a2b, 3 random styles (seed 0)",
                               (0.0, 1.0), {"n_samples": 3, "seed": 0})
    mapped = diversity_result(result, output_channels=3)
    assert mapped.data.shape == (2, 6, 7) and not mapped.rgb and mapped.axes == [0, 1, 2]
    assert "diversity map" in mapped.description and mapped.metadata["diversity_map"]
    np.testing.assert_allclose(mapped.data, data.std(0).mean(-1), rtol=1e-6)
    assert result.data is data and data.shape == (3, 2, 6, 7, 3)  # the result itself is untouched
    single = TranslationResult("cells", data[0], True, [0, 1, 2], "a2b", (0.0, 1.0), {})
    with pytest.raises(DiversityMapError, match="several random styles"):
        diversity_result(single, 3)
    with pytest.raises(DiversityMapError, match="Number of samples of 2 or more"):
        require_samples(TranslateOptions("a2b", StyleMode.RANDOM, 1), "Number of samples")
    with pytest.raises(DiversityMapError, match="random styles"):
        require_samples(TranslateOptions("a2b", StyleMode.REFERENCE, 4), "--samples")


def test_cli_writes_the_map_of_its_samples(munit_file, gray_tif, tmp_path, capsys):
    out, mapped = tmp_path / "out.tif", tmp_path / "map.tif"
    assert main(["translate", str(munit_file), str(gray_tif), "-o", str(out), "--samples", "3", "--quiet",
                 "--diversity-map", str(mapped)]) == 0
    samples, written = tifffile.imread(out), tifffile.imread(mapped)
    assert samples.shape == (3, 24, 32, 3) and written.shape == (24, 32) and written.dtype == np.float32
    np.testing.assert_allclose(written, samples.astype(np.float32).std(0).mean(-1), rtol=1e-5, atol=1e-4)
    assert written.max() > 0
    assert str(mapped) in capsys.readouterr().out


@pytest.mark.parametrize("extra, two_inputs, message", [
    (["--samples", "1"], False, "--samples of 2 or more"),
    (["--samples", "3", "--reference", "{image}"], False, "random styles"),
    (["--samples", "3"], True, "one input's samples; 2 inputs"),
])
def test_cli_refuses_a_map_it_cannot_make_in_one_line(munit_file, gray_tif, tmp_path, capsys, extra,
                                                      two_inputs, message):
    second = tmp_path / "second.tif"
    tifffile.imwrite(second, np.zeros((16, 16), np.uint8))
    inputs = [str(gray_tif), *([str(second)] if two_inputs else [])]
    out = tmp_path / ("out" if two_inputs else "out.tif")
    code = main(["translate", str(munit_file), *inputs, "-o", str(out), "--quiet",
                 "--diversity-map", str(tmp_path / "map.tif"), *(a.format(image=gray_tif) for a in extra)])
    lines = error_lines(capsys)
    assert code == 2 and len(lines) == 1 and lines[0].startswith("napari-i2i: error: ") and message in lines[0]
    assert not (tmp_path / "map.tif").exists() and not out.exists()


def test_domain_picks_the_target_direction(unified_file, gray_tif, tmp_path, capsys):
    by_domain, by_direction = tmp_path / "domain.tif", tmp_path / "direction.tif"
    assert main(["translate", str(unified_file), str(gray_tif), "-o", str(by_domain), "--quiet",
                 "--domain", "ihc", "--seed", "2"]) == 0
    assert main(["translate", str(unified_file), str(gray_tif), "-o", str(by_direction), "--quiet",
                 "--direction", "to_ihc", "--seed", "2"]) == 0
    np.testing.assert_array_equal(tifffile.imread(by_domain), tifffile.imread(by_direction))
    assert main(["translate", str(unified_file), str(gray_tif), "-o", str(tmp_path / "he.tif"), "--quiet",
                 "--domain", "he", "--seed", "2"]) == 0
    assert not np.array_equal(tifffile.imread(tmp_path / "he.tif"), tifffile.imread(by_domain))


@pytest.mark.parametrize("model, extra, message", [
    ("unified", ["--domain", "dab"], "--domain 'dab': this model's domains are he, ihc"),
    ("unified", ["--domain", "he", "--direction", "to_he"], "not both"),
    ("munit", ["--domain", "b"], "use --direction"),
])
def test_domain_errors_are_one_line(unified_file, munit_file, gray_tif, tmp_path, capsys, model, extra, message):
    path = unified_file if model == "unified" else munit_file
    code = main(["translate", str(path), str(gray_tif), "-o", str(tmp_path / "out.tif"), "--quiet", *extra])
    lines = error_lines(capsys)
    assert code == 2 and len(lines) == 1 and lines[0].startswith("napari-i2i: error: ") and message in lines[0]


def test_widget_adds_a_map_over_the_source(make_napari_viewer, qtbot, munit_file):
    from napari_i2i.frontends.translate_widget import TranslateWidget

    viewer = make_napari_viewer()
    data = np.random.default_rng(1).random((20, 28), dtype=np.float32)
    source = viewer.add_image(data, name="cells", scale=(0.5, 2.0), translate=(3.0, -4.0))
    widget = TranslateWidget(viewer)
    widget.model_file.value = munit_file
    widget.sources.value = [source]
    widget.style_mode.value = StyleMode.RANDOM
    assert not widget.diversity_map.native.isHidden()
    widget.n_samples.value, widget.diversity_map.value = 3, True
    widget.run()
    qtbot.waitUntil(lambda: widget.run_button.enabled, timeout=60_000)
    result, mapped = viewer.layers[-2], viewer.layers[-1]
    assert "diversity map" in mapped.name and mapped.data.shape == (20, 28)
    np.testing.assert_allclose(mapped.data, result.data.std(0).mean(-1), rtol=1e-5, atol=1e-6)
    assert tuple(mapped.scale) == (0.5, 2.0) and tuple(mapped.translate) == (3.0, -4.0)
    np.testing.assert_array_equal(source.data, data)

    widget.style_mode.value = StyleMode.REFERENCE
    assert widget.diversity_map.native.isHidden()
    widget.style_mode.value = StyleMode.RANDOM
    widget.n_samples.value = 1
    layers = len(viewer.layers)
    widget.run()  # one sample: refused, nothing added
    assert len(viewer.layers) == layers and widget.run_button.enabled
