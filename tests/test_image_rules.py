"""One rule set: every kind of image file becomes the same tensors at inference and in training."""

import numpy as np
import pytest
import tifffile
import torch
from PIL import Image

from napari_i2i.core.image_io import read_image
from napari_i2i.core.layer_data import LayerDataError, iter_planes, layout
from trainers.datasets import DatasetError, ImageFolder

H, W = 12, 16


def pixels(shape, dtype, seed=0):
    rng = np.random.default_rng(seed)
    if dtype == np.bool_:
        return rng.random(shape) < 0.5
    if np.issubdtype(dtype, np.floating):
        return (rng.gamma(2.0, 30.0, shape) - 10).astype(dtype)
    return rng.integers(0, np.iinfo(dtype).max, size=shape, endpoint=True, dtype=dtype)


# name, array, how it is written, and what it becomes: (2-D images, channels), or None: refused
KINDS = [
    ("gray8.png", pixels((H, W), np.uint8), {}, (1, 1)),
    ("rgb.png", pixels((H, W, 3), np.uint8), {}, (1, 3)),
    ("rgba.png", pixels((H, W, 4), np.uint8), {}, (1, 3)),
    ("planar_rgb.tif", pixels((3, H, W), np.uint8), {"photometric": "rgb"}, (1, 3)),
    ("rgb16.tif", pixels((H, W, 3), np.uint16), {"photometric": "rgb"}, (1, 3)),
    ("four_channels.tif", pixels((4, H, W), np.uint16), {}, (1, 4)),
    ("gray16.tif", pixels((H, W), np.uint16), {}, (1, 1)),
    ("float32.tif", pixels((H, W), np.float32), {}, (1, 1)),
    ("stack.tif", pixels((10, H, W), np.uint16), {}, (10, 1)),  # z, Y, X: longer than MAX_CHANNELS
    ("channel_stack.tif", pixels((3, 2, H, W), np.uint16), {}, (3, 2)),  # z, C, Y, X
    ("bool.tif", pixels((H, W), np.bool_), {}, (1, 1)),
    ("nan.tif", np.full((H, W), np.nan, np.float32), {}, None),
    ("complex.tif", np.zeros((H, W), np.complex64), {}, None),
]


def write(path, data, options):
    if path.suffix == ".tif":
        tifffile.imwrite(path, data, **{"photometric": "minisblack", **options})
    else:
        Image.fromarray(data).save(path)


def inference(path, channels):
    image = read_image(path)
    plan = layout(image, channels)
    return [plane[0] for plane in iter_planes(image, plan, channels)]


@pytest.mark.parametrize("name, data, options, becomes", KINDS, ids=[kind[0] for kind in KINDS])
def test_inference_and_training_agree(tmp_path, name, data, options, becomes):
    write(tmp_path / name, data, options)
    if becomes is None:
        with pytest.raises(DatasetError, match=name):
            ImageFolder(tmp_path, size=None, flip=False, seed=0)
        with pytest.raises(LayerDataError):
            inference(tmp_path / name, 1)
        return
    training = ImageFolder(tmp_path, size=None, flip=False, seed=0)
    trained_on = [training[i] for i in range(len(training))]
    seen = inference(tmp_path / name, training.channels)
    assert (len(trained_on), training.channels) == becomes
    assert len(seen) == len(trained_on)
    for plane, item in zip(seen, trained_on):
        assert plane.shape == item.shape == (training.channels, H, W)
        torch.testing.assert_close(plane, item, atol=1e-5, rtol=0)
        assert item.min() >= -1 and item.max() <= 1


@pytest.mark.parametrize("channels", [1, 3])
def test_conversions_agree(tmp_path, channels):
    """Gray → RGB repeats, RGB → gray takes the luminance, on both paths."""
    for name, data in (("gray.png", pixels((H, W), np.uint8)), ("rgb.png", pixels((H, W, 3), np.uint8))):
        folder = tmp_path / name
        folder.mkdir()
        write(folder / name, data, {})
        trained_on = ImageFolder(folder, channels=channels, size=None, flip=False, seed=0)[0]
        (seen,) = inference(folder / name, channels)
        assert seen.shape == trained_on.shape == (channels, H, W)
        torch.testing.assert_close(seen, trained_on, atol=1e-5, rtol=0)


def test_unconvertible_channel_counts_are_refused_by_both(tmp_path):
    write(tmp_path / "rgb.png", pixels((H, W, 3), np.uint8), {})
    with pytest.raises(DatasetError, match="rgb.png: has 3 channel"):
        ImageFolder(tmp_path, channels=2, size=None)
    with pytest.raises(LayerDataError, match="rgb: has 3 channel"):
        inference(tmp_path / "rgb.png", 2)
