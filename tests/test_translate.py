"""The translation job: every kind of source image, in and out, never modified."""

import numpy as np
import pytest
import tifffile
from conftest import build_munit, drain

from napari_i2i.contract.engine_api import EngineError, StyleMode
from napari_i2i.core.layer_data import ImageData, LayerDataError, iter_planes, layout
from napari_i2i.core.model_file import load_model, save_model
from napari_i2i.core.translate import TranslateOptions, run_to_completion, run_translation


def translate(path, source, references=(), **options):
    options = TranslateOptions(**{"direction": "a2b", "tile": 64, **options})
    loaded = load_model(path)
    return run_to_completion(run_translation(loaded, [source], options, list(references)))[0]


def gray_model(tmp_path):
    engine, model = build_munit(channels_a=1, channels_b=1)
    path = tmp_path / "gray.safetensors"
    save_model(path, engine, model)
    return path


@pytest.mark.parametrize(
    "shape, dtype, rgb, out_shape",
    [
        ((45, 61), np.uint8, False, (45, 61, 3)),  # gray → RGB model: repeated
        ((45, 61), np.uint16, False, (45, 61, 3)),
        ((45, 61), np.float32, False, (45, 61, 3)),
        ((45, 61, 3), np.uint8, True, (45, 61, 3)),
        ((45, 61, 4), np.uint8, True, (45, 61, 3)),  # alpha dropped
        ((3, 45, 61), np.float32, False, (45, 61, 3)),  # channel axis before Y/X
        ((2, 45, 61), np.uint16, False, (2, 45, 61, 3)),  # stack of gray planes
        ((2, 3, 33, 30, 3), np.uint8, True, (2, 3, 33, 30, 3)),  # 4-D RGB stack
    ],
)
def test_conversion_matrix(munit_file, rng, shape, dtype, rgb, out_shape):
    if np.issubdtype(dtype, np.integer):
        data = rng.integers(0, np.iinfo(dtype).max, size=shape, dtype=dtype)
    else:
        data = rng.random(shape, dtype=np.float32) * 5 - 1
    original = data.copy()
    result = translate(munit_file, ImageData(data, "src", rgb=rgb))
    assert result.data.shape == out_shape and result.rgb
    assert result.data.dtype == (np.float32 if dtype == np.float32 else dtype)
    np.testing.assert_array_equal(data, original)


def test_rgb_to_gray_model_and_samples_axis(tmp_path, rng):
    path = gray_model(tmp_path)
    data = rng.integers(0, 255, size=(2, 40, 50, 3), dtype=np.uint8)
    result = translate(path, ImageData(data, "rgb stack", rgb=True), n_samples=3)
    assert result.data.shape == (3, 2, 40, 50) and not result.rgb
    assert result.axes == [None, 0, 1, 2]
    assert result.metadata["n_samples"] == 3 and result.description == "a2b, 3 random styles (seed 0)"


def test_contrast_limits_define_the_intensity_range(rng):
    data = np.array([[0, 1000], [2000, 4000]], dtype=np.uint16)
    plan = layout(ImageData(data, contrast_limits=(1000, 3000)), 1)
    plane = next(iter_planes(ImageData(data, contrast_limits=(1000, 3000)), plan, 1))
    np.testing.assert_allclose(plane[0, 0].numpy(), [[-1, -1], [0, 1]])
    assert layout(ImageData(data.astype(np.uint8)), 1).intensity_range == (0, 255)


def test_without_contrast_limits_inference_normalises_like_training(tmp_path):
    """A 16-bit file must reach the model with the values it was trained on."""
    from trainers.datasets import ImageFolder

    rng = np.random.default_rng(0)
    gray = (rng.gamma(2.0, 300.0, (40, 50)) + 100).astype(np.uint16)
    gray[0, 0] = 65000  # a hot pixel: min–max would squash everything else
    channels = np.stack([gray, (gray // 20).astype(np.uint16)])  # two channels, 20× apart
    for name, data in {"gray": gray, "channels": channels}.items():
        folder = tmp_path / name
        folder.mkdir()
        tifffile.imwrite(folder / "x.tif", data)
        trained_on = ImageFolder(folder, size=None, flip=False)[0].numpy()
        plan = layout(ImageData(data), len(trained_on))
        seen = next(iter_planes(ImageData(data), plan, len(trained_on)))[0].numpy()
        np.testing.assert_allclose(seen, trained_on, atol=1e-5)
        assert np.median(seen) > -0.9  # not squashed by the hot pixel


@pytest.mark.parametrize(
    "data, rgb, message",
    [
        (np.zeros((2, 30, 30), np.uint8), False, None),  # 2 gray planes: fine
        (np.zeros((30, 30, 2), np.uint8), True, "3 or 4 values"),
        (np.zeros((30,), np.uint8), False, "at least 2 dimensions"),
        (np.zeros((0, 30), np.uint8), False, "empty"),
        (np.array([["a"]]), False, "cannot translate"),
        (np.full((8, 8), np.nan, np.float32), False, "not finite"),
    ],
)
def test_bad_sources_are_named_errors(data, rgb, message):
    if message is None:
        assert layout(ImageData(data, "ok", rgb=rgb), 3).n_planes == 2
        return
    with pytest.raises(LayerDataError, match=message):
        layout(ImageData(data, "bad", rgb=rgb), 3)


def test_channel_count_without_conversion_is_an_error(tmp_path, rng):
    engine, model = build_munit(channels_a=2, channels_b=2)
    path = tmp_path / "two.safetensors"
    save_model(path, engine, model)
    with pytest.raises(LayerDataError, match="has 3 channel.*takes 2"):
        translate(path, ImageData(rng.integers(0, 255, (20, 20, 3), dtype=np.uint8), "rgb", rgb=True))
    two = translate(path, ImageData(rng.random((2, 20, 20), dtype=np.float32), "two"))
    assert two.data.shape == (2, 20, 20) and two.axes == [0, 1, 2]


def test_reference_mode_and_request_errors(munit_file, rng):
    source = ImageData(rng.integers(0, 255, (40, 40), dtype=np.uint8), "src")
    reference = ImageData(rng.integers(0, 255, (300, 200, 3), dtype=np.uint8), "ref", rgb=True)
    result = translate(munit_file, source, [reference], mode=StyleMode.REFERENCE)
    assert result.metadata["references"] == ["ref"] and result.description == "a2b, style of ref"
    with pytest.raises(EngineError, match="not 'a2c'"):
        translate(munit_file, source, direction="a2c")
    with pytest.raises(EngineError, match="not 'few_shot'"):
        translate(munit_file, source, mode=StyleMode.FEW_SHOT)
    with pytest.raises(EngineError, match="at least one reference"):
        translate(munit_file, source, mode=StyleMode.REFERENCE)
    speck = ImageData(rng.integers(0, 255, (8, 30, 3), dtype=np.uint8), "speck", rgb=True)
    with pytest.raises(EngineError, match=r"at least 16×16 pixels, reference 2 is \(8, 30\) \(image 'speck'\)"):
        translate(munit_file, source, [reference, speck], mode=StyleMode.REFERENCE)


def test_matched_mode_gives_each_plane_its_closest_reference(tmp_path, rng):
    engine, model = build_munit(channels_a=1, channels_b=1)
    model.gen_a.content_encoder.load_state_dict(model.gen_b.content_encoder.state_dict())
    path = tmp_path / "shared_content.safetensors"
    save_model(path, engine, model)
    planes = rng.random((2, 40, 40), dtype=np.float32)
    planes[1] = np.where(planes[1] > 0.5, 1, 0)  # a different texture
    limits = (0.0, 1.0)
    source = ImageData(planes.copy(), "src", contrast_limits=limits)
    references = [ImageData(rng.random((40, 40), dtype=np.float32), "noise", contrast_limits=limits),
                  ImageData(planes[::-1].copy(), "stack", contrast_limits=limits)]
    result = translate(path, source, references, mode=StyleMode.MATCHED)
    assert result.metadata["matched_references"] == ["stack plane 2", "stack plane 1"]
    assert result.description == "a2b, style of stack plane 2, stack plane 1 (closest of 3 references)"
    assert result.data.shape == (2, 40, 40)
    np.testing.assert_array_equal(source.data, planes)  # the source is not modified
    for index, reference in enumerate(planes):
        alone = translate(path, ImageData(planes[index], "one", contrast_limits=limits),
                          [ImageData(reference, "ref", contrast_limits=limits)], mode=StyleMode.REFERENCE)
        np.testing.assert_array_equal(result.data[index], alone.data)
    with pytest.raises(EngineError, match="choose from"):
        translate(path, source, mode=StyleMode.MATCHED)


def test_progress_is_monotonic_and_ends_at_one(munit_file, rng):
    loaded = load_model(munit_file)
    sources = [ImageData(rng.random((2, 100, 90), dtype=np.float32), "a"),
               ImageData(rng.random((50, 50), dtype=np.float32), "b")]
    steps = run_translation(loaded, sources, TranslateOptions("a2b", tile=32))
    results, progress = drain(steps)
    fractions = [step.fraction for step in progress]
    assert fractions == sorted(fractions) and fractions[-1] == pytest.approx(1.0)
    assert [r.source for r in results] == ["a", "b"]


@pytest.mark.parametrize("shape, dtype, rgb, n_samples", [
    ((20, 24), np.uint16, False, 1),
    ((20, 24, 3), np.uint8, True, 3),
    ((2, 20, 24), np.float32, False, 2),
    ((20, 24), np.bool_, False, 1),
    ((20, 24), np.int32, False, 1),
])
def test_the_planned_output_is_what_the_job_returns(munit_file, rng, shape, dtype, rgb, n_samples):
    """Front ends check output files from this plan before any work: it must not drift."""
    from napari_i2i.core.translate import planned_output

    data = (rng.random(shape) * 100).astype(dtype)
    loaded = load_model(munit_file)
    options = TranslateOptions(direction="a2b", tile=64, n_samples=n_samples)
    plan = planned_output(loaded, options, "src", shape, rgb, np.dtype(dtype))
    result = run_to_completion(run_translation(loaded, [ImageData(data, "src", rgb=rgb)], options))[0]
    assert result.data.dtype == plan.dtype and result.rgb == plan.rgb
    assert result.data.shape[: len(plan.leading_shape)] == plan.leading_shape
    assert result.data.ndim == len(plan.leading_shape) + (3 if plan.rgb else 2)
    assert plan.axes == tuple(result.axes) and plan.samples_axis == (n_samples > 1)
