"""Tiled translation equals whole-image translation; memory follows the tile."""

import numpy as np
import pytest
import torch
from conftest import build_munit, drain
from skimage import data

from napari_i2i.contract.engine_api import StyleMode, StyleRequest
from napari_i2i.core.tiling import AxisPlan, TilePlan, minimum_size, reference_crops, translate_tiled


@pytest.fixture(scope="module")
def astronaut_512():
    image = data.astronaut()[:512, :512].astype(np.float32) / 127.5 - 1
    return torch.from_numpy(image).permute(2, 0, 1)[None]


def tiled(model, image, conditioning, tile, context=None, statistics=True, staged=True):
    capabilities = model.capabilities
    plan = TilePlan.make(
        image.shape[-2], image.shape[-1], tile=tile,
        context=capabilities.context if context is None else context,
        multiple=capabilities.size_multiple,
    )
    with torch.inference_mode():
        stages = model.stages(conditioning) if staged else [lambda t: model.translate(t, conditioning)]
        return drain(translate_tiled(
            stages, image, plan,
            model.shared_statistics() if statistics else None, torch.device("cpu"),
        ))


def test_tiled_equals_whole_on_512_with_128_tiles(astronaut_512):
    _, model = build_munit()
    conditioning = model.condition(StyleRequest(StyleMode.RANDOM, "a2b", n_samples=2, seed=3))
    with torch.inference_mode():
        whole = model.translate(astronaut_512, conditioning)
    out, steps = tiled(model, astronaut_512, conditioning, tile=128)
    assert out.shape == whole.shape
    assert (out - whole).abs().max() <= 1e-4  # the bar is 0.02
    assert steps == sorted(steps) and steps[-1] == pytest.approx(1.0)
    # without shared statistics, per-tile instance norm makes visible seams
    seams, _ = tiled(model, astronaut_512, conditioning, tile=128, statistics=False)
    assert (seams - whole).abs().max() > 0.1


def test_one_stage_gives_the_same_result_as_many():
    _, model = build_munit()
    conditioning = model.condition(StyleRequest(StyleMode.RANDOM, "b2a", n_samples=2, seed=5))
    image = torch.rand(1, 3, 200, 150) * 2 - 1
    staged, _ = tiled(model, image, conditioning, tile=64)
    single, _ = tiled(model, image, conditioning, tile=64, staged=False)
    torch.testing.assert_close(staged, single)
    with torch.inference_mode():
        composed = image
        for stage in model.stages(conditioning):
            composed = stage(composed)
        torch.testing.assert_close(composed, model.translate(image, conditioning))


def test_context_below_the_receptive_field_is_not_exact(astronaut_512):
    _, model = build_munit()
    conditioning = model.condition(StyleRequest(StyleMode.RANDOM, "a2b", seed=3))
    image = astronaut_512[..., :256, :256]
    with torch.inference_mode():
        whole = model.translate(image, conditioning)
    exact, _ = tiled(model, image, conditioning, tile=64)
    short, _ = tiled(model, image, conditioning, tile=64, context=8)
    assert (exact - whole).abs().max() < 1e-4
    assert (short - whole).abs().max() > 10 * (exact - whole).abs().max()


@pytest.mark.parametrize("height, width", [(37, 53), (130, 67), (5, 9)])
def test_odd_sizes_are_padded_and_cropped(height, width):
    _, model = build_munit()
    conditioning = model.condition(StyleRequest(StyleMode.RANDOM, "a2b"))
    image = torch.rand(1, 3, height, width) * 2 - 1
    out, _ = tiled(model, image, conditioning, tile=32)
    assert out.shape == (1, 3, height, width)
    assert torch.isfinite(out).all()


def test_axis_plan_owns_every_pixel_once_and_weights_sum_to_one():
    plan = AxisPlan.make(length=300, tile=64, context=20, blend=16, multiple=4)
    owned = np.zeros(300, int)
    weights = torch.zeros(300)
    for (start, size), (begin, end), index in zip(plan.windows, plan.owned, range(len(plan.windows))):
        owned[start + begin : start + end] += 1
        weights[start : start + size] += plan.weights(index)
        assert start % 4 == 0 and size % 4 == 0
    assert (owned == 1).all()
    torch.testing.assert_close(weights, torch.ones(300))


def test_small_images_are_one_window_and_bad_tiles_are_errors():
    assert TilePlan.make(100, 90, tile=128, context=50, multiple=4).n_tiles == 1
    with pytest.raises(ValueError, match="at least"):
        TilePlan.make(100, 100, tile=2, multiple=4)


def test_reference_crops_cover_a_large_reference():
    reference = torch.arange(300 * 200, dtype=torch.float32).reshape(1, 1, 300, 200)
    crops = reference_crops(reference, 128)
    assert crops.shape == (4, 1, 128, 128)
    assert crops[0, 0, 0, 0] == 0 and crops[-1, 0, -1, -1] == reference[0, 0, -1, -1]
    assert reference_crops(reference[..., :64, :64], 128).shape == (1, 1, 64, 64)


@pytest.mark.parametrize("multiple", [1, 2, 4, 8, 16])
def test_plans_of_large_enough_images_are_unchanged_by_the_minimum(multiple):
    """Only axes shorter than the minimum are padded more: larger images keep their plan (and output)."""
    shortest = minimum_size(multiple)
    assert shortest % multiple == 0 and shortest >= 4
    for length in range(shortest, shortest + 3 * multiple + 2):
        plan = TilePlan.make(length, 700, tile=256, context=40, multiple=multiple)
        assert plan.rows.length == -(-length // multiple) * multiple
    for length in range(1, shortest):
        assert TilePlan.make(length, length, tile=256, multiple=multiple).rows.length == shortest


@pytest.mark.parametrize("engine_name", ["munit", "unit", "funit", "step"])
def test_every_engine_translates_images_down_to_one_pixel(engine_name, tmp_path):
    """Each built-in engine's reflect padding is served by the minimum size (1×1 up to thin strips)."""
    from napari_i2i.contract.registry import default_registry
    from napari_i2i.core.layer_data import ImageData
    from napari_i2i.core.model_file import load_model, save_model
    from napari_i2i.core.translate import TranslateOptions, run_to_completion, run_translation

    engine = default_registry().get(engine_name)
    torch.manual_seed(0)
    model = engine.build(engine.config("small")).eval()
    direction, (_, out_channels) = next(iter(model.capabilities.directions.items()))
    mode = model.capabilities.style_modes[0]
    references = [ImageData(np.zeros((64, 64) if out_channels == 1 else (64, 64, 3), np.uint8), "ref",
                            rgb=out_channels == 3)] * (2 if mode is StyleMode.INTERPOLATE else 1)
    save_model(tmp_path / "model.safetensors", engine, model)
    loaded = load_model(tmp_path / "model.safetensors")
    options = TranslateOptions(direction=direction, mode=mode, n_samples=2 if mode is StyleMode.INTERPOLATE else 1)
    for shape in [(1, 1), (2, 2), (1, 500), (3, 200)]:
        source = ImageData(np.random.default_rng(0).random(shape, dtype=np.float32), "small")
        (result,) = run_to_completion(run_translation(loaded, [source], options, references))
        assert result.data.shape[-3 if result.rgb else -2:][:2] == shape
        assert np.isfinite(result.data).all()
