"""Training datasets: every file type, up-front validation, aligned augmentation, workers."""

import pickle

import numpy as np
import pytest
import tifffile
import torch
from PIL import Image
from torch.utils.data import DataLoader

from trainers.datasets import (
    ClassFolders,
    DatasetError,
    ImageFolder,
    InfiniteSampler,
    PairedFolders,
    UnpairedDomains,
)

H, W = 40, 56


def noise(shape, dtype, seed=0):
    rng = np.random.default_rng(seed)
    if dtype == np.float32:
        return (rng.random(shape) * 7 - 3).astype(np.float32)
    return rng.integers(0, np.iinfo(dtype).max, size=shape, endpoint=True, dtype=dtype)


def save(path, data, photometric=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix in (".tif", ".tiff"):
        tifffile.imwrite(path, data, photometric=photometric or "minisblack")
    else:
        Image.fromarray(data).save(path, **({"quality": 95} if path.suffix == ".jpg" else {}))
    return path


def one_image(tmp_path, name, data, **options):
    save(tmp_path / name, data, options.pop("photometric", None))
    return ImageFolder(tmp_path, **{"size": None, "flip": False, **options})


@pytest.mark.parametrize(
    "name, shape, dtype, photometric, channels",
    [
        ("gray8.png", (H, W), np.uint8, None, 1),
        ("gray16.png", (H, W), np.uint16, None, 1),
        ("rgb.png", (H, W, 3), np.uint8, None, 3),
        ("rgba.png", (H, W, 4), np.uint8, None, 3),  # alpha dropped
        ("rgb.jpg", (H, W, 3), np.uint8, None, 3),
        ("gray8.tif", (H, W), np.uint8, None, 1),
        ("gray16.tiff", (H, W), np.uint16, None, 1),
        ("float.tif", (H, W), np.float32, None, 1),
        ("rgb16.tif", (H, W, 3), np.uint16, "rgb", 3),
        ("planar_rgb.tif", (3, H, W), np.uint8, "rgb", 3),
        ("two_first.tif", (2, H, W), np.uint16, None, 2),  # C, Y, X
        ("five_first.tif", (5, H, W), np.uint16, None, 5),
        ("singleton.tif", (1, 1, H, W), np.uint16, None, 1),
    ],
)
def test_reads_each_file_type_and_depth(tmp_path, name, shape, dtype, photometric, channels):
    dataset = one_image(tmp_path, name, noise(shape, dtype), photometric=photometric)
    image = dataset[0]
    assert dataset.channels == channels and len(dataset) == 1
    assert image.shape == (channels, H, W) and image.dtype == torch.float32
    assert image.min() >= -1 and image.max() <= 1
    assert image.min() < -0.9 and image.max() > 0.9  # the full range is used


def test_uint8_uses_the_fixed_range(tmp_path):
    data = np.full((H, W), 51, np.uint8)
    data[0, 0], data[0, 1] = 0, 255
    image = one_image(tmp_path, "a.png", data)[0][0]
    assert image[0, 0] == -1 and image[0, 1] == 1
    assert image[5, 5].item() == pytest.approx(51 / 255 * 2 - 1, abs=1e-6)


def test_sixteen_bit_uses_percentiles_not_dtype_range(tmp_path):
    data = np.linspace(0, 4095, H * W).reshape(H, W).astype(np.uint16)  # a 12-bit camera
    data[0, 0] = 65535  # one hot pixel
    image = one_image(tmp_path, "a.tif", data)[0][0]
    assert image[0, 0] == 1  # clipped, not stretching the rest
    assert image.median().item() == pytest.approx(0, abs=0.01)
    assert image.flatten()[1].item() == pytest.approx(-1, abs=0.01)


def test_multichannel_tiff_is_scaled_per_channel(tmp_path):
    data = np.stack([noise((H, W), np.uint16, 1) // 64, noise((H, W), np.uint16, 2)])
    image = one_image(tmp_path, "a.tif", data)[0]
    for channel in image:
        assert channel.min() < -0.99 and channel.max() > 0.99


def test_gray_to_rgb_repeats_and_rgb_to_gray_takes_luminance(tmp_path):
    gray = noise((H, W), np.uint8, 1)
    rgb = noise((H, W, 3), np.uint8, 2)
    save(tmp_path / "a_gray.png", gray)
    save(tmp_path / "b_rgb.png", rgb)
    as_rgb = ImageFolder(tmp_path, channels=3, size=None, flip=False)
    assert as_rgb.names == ["a_gray.png", "b_rgb.png"]
    assert torch.equal(as_rgb[0][0], as_rgb[0][1]) and torch.equal(as_rgb[0][0], as_rgb[0][2])
    as_gray = ImageFolder(tmp_path, size=None, flip=False)  # channels from the first file
    assert as_gray.channels == 1 and as_gray[1].shape == (1, H, W)
    luminance = (rgb.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)) / 255 * 2 - 1
    np.testing.assert_allclose(as_gray[1][0].numpy(), luminance, atol=1e-5)


def test_channel_mismatches_are_named_all_at_once(tmp_path):
    save(tmp_path / "a.png", noise((H, W), np.uint8))
    save(tmp_path / "b_rgb.png", noise((H, W, 3), np.uint8))  # RGB → gray: fine
    save(tmp_path / "c_two.tif", noise((2, H, W), np.uint16))
    save(tmp_path / "d_three.tif", noise((3, H, W), np.uint16))  # three channels, not RGB
    save(tmp_path / "e_stack.tif", noise((12, H, W), np.uint16))  # a z-stack
    gray = ImageFolder(tmp_path, size=32)  # a gray dataset: other leading axes are planes, as at inference
    assert gray.channels == 1 and len(gray) == 1 + 1 + 2 + 3 + 12
    assert gray.names[2:4] == ["c_two.tif plane 0", "c_two.tif plane 1"]
    with pytest.raises(DatasetError) as caught:
        ImageFolder(tmp_path, channels=2, size=32)  # a requested count is checked
    message = str(caught.value)
    assert len(caught.value.problems) == 4 and "c_two.tif" not in message
    assert "a.png: has 1 channel(s), the model takes 2" in message
    assert "b_rgb.png: has 3 channel(s), the model takes 2" in message
    assert "d_three.tif: has 1 channel(s)" in message  # 3 ≠ 2: three gray planes
    assert [p.split(":")[0] for p in caught.value.problems] == [
        "a.png", "b_rgb.png", "d_three.tif", "e_stack.tif"
    ]


def test_channels_come_from_the_first_image(tmp_path):
    save(tmp_path / "a_two.tif", noise((2, H, W), np.uint16))
    save(tmp_path / "b_gray.png", noise((H, W), np.uint8))
    save(tmp_path / "c_stack.tif", noise((3, 2, H, W), np.uint16))  # 3 planes of 2 channels
    with pytest.raises(DatasetError) as caught:
        ImageFolder(tmp_path, size=32)
    assert caught.value.problems == [
        "b_gray.png: has 1 channel(s), the model takes 2; no conversion between these counts"
    ]
    (tmp_path / "b_gray.png").unlink()
    dataset = ImageFolder(tmp_path, size=None, flip=False)
    assert dataset.channels == 2 and len(dataset) == 1 + 3
    assert all(dataset[i].shape == (2, H, W) for i in range(4))


def test_a_stack_is_one_image_per_plane_scaled_over_the_whole_file(tmp_path):
    stack = np.stack([np.full((H, W), 1000 * (z + 1), np.uint16) for z in range(12)])
    stack[:, 0, 0] = 0
    dataset = one_image(tmp_path, "z.tif", stack)
    assert dataset.channels == 1 and len(dataset) == 12
    middles = [dataset[z][0, 5, 5].item() for z in range(12)]
    assert middles == sorted(middles) and middles[0] < -0.5 < 0.5 < middles[-1]  # one range for all planes


def test_channels_last_tiff_only_when_its_samples_say_so(tmp_path):
    data = noise((H, W, 2), np.uint16)
    save(tmp_path / "pages" / "x.tif", data)  # tifffile writes H pages of W×2, as napari shows it
    assert len(ImageFolder(tmp_path / "pages", size=None)) == H
    (tmp_path / "samples").mkdir()
    tifffile.imwrite(tmp_path / "samples" / "x.tif", data, photometric="minisblack",
                     planarconfig="contig", extrasamples=["unspecified"])  # two samples per pixel
    dataset = ImageFolder(tmp_path / "samples", size=None, flip=False)
    assert dataset.channels == 2 and len(dataset) == 1 and dataset[0].shape == (2, H, W)


def test_corrupt_files_are_named(tmp_path):
    good = save(tmp_path / "good.png", noise((H, W, 3), np.uint8)).read_bytes()
    (tmp_path / "cut.png").write_bytes(good[: len(good) // 2])  # header fine, pixels missing
    (tmp_path / "text.png").write_text("not an image")
    tiff = save(tmp_path / "full.tif", noise((H, W), np.uint16)).read_bytes()
    (tmp_path / "full.tif").unlink()
    (tmp_path / "cut.tif").write_bytes(tiff[: len(tiff) // 2])
    for cache_bytes in (2**30, 0):  # cached or read lazily: decoded up front either way
        with pytest.raises(DatasetError) as caught:
            ImageFolder(tmp_path, size=32, cache_bytes=cache_bytes)
        assert [p.split(":")[0] for p in caught.value.problems] == ["cut.png", "cut.tif", "text.png"]
        assert "truncated" in str(caught.value)


def test_unverified_lazy_folder_names_a_bad_file_when_read(tmp_path):
    tiff = save(tmp_path / "a.tif", noise((H, W), np.uint16)).read_bytes()
    (tmp_path / "a.tif").write_bytes(tiff[: len(tiff) // 2])
    dataset = ImageFolder(tmp_path, size=32, verify=False, cache_bytes=0)
    with pytest.raises(DatasetError, match="a.tif"):
        dataset[0]


def test_empty_or_missing_folder(tmp_path):
    with pytest.raises(DatasetError, match=f"{tmp_path}: no image files"):
        ImageFolder(tmp_path)
    (tmp_path / "notes.txt").write_text("no images here")
    (tmp_path / "._hidden.png").write_bytes(b"macOS metadata")
    with pytest.raises(DatasetError, match="no image files"):
        ImageFolder(tmp_path)
    with pytest.raises(DatasetError, match="missing: no such folder"):
        ImageFolder(tmp_path / "missing")


def test_too_small_images_are_rejected_unless_resized(tmp_path):
    save(tmp_path / "small.png", noise((30, 80), np.uint8))
    with pytest.raises(DatasetError, match=r"small.png: 30×80 pixels, smaller than the 32×32 crop; upscale with --resize 32"):
        ImageFolder(tmp_path, size=32)
    assert ImageFolder(tmp_path, size=32, resize=32)[0].shape == (1, 32, 32)
    assert ImageFolder(tmp_path, size=None, resize=15)[0].shape == (1, 15, 40)  # short side to 15
    with pytest.raises(ValueError, match="at least the crop size"):
        ImageFolder(tmp_path, size=32, resize=16)


def test_crop_and_flip_are_deterministic_with_a_seed(tmp_path):
    ramp = np.tile(np.arange(W, dtype=np.uint8) * 4, (H, 1))  # brighter to the right
    save(tmp_path / "ramp.png", ramp)
    first = ImageFolder(tmp_path, size=(24, 16), seed=7)
    second = ImageFolder(tmp_path, size=(24, 16), seed=7)
    crops = [first[i] for i in range(40)]  # indices past len wrap with new crops
    assert all(crop.shape == (1, 24, 16) for crop in crops)
    assert all(torch.equal(crop, second[i]) for i, crop in enumerate(crops))
    assert len({crop[0, 0, 0].item() for crop in crops}) > 5
    flipped = [bool(crop[0, 0, 0] > crop[0, 0, -1]) for crop in crops]
    assert 5 < sum(flipped) < 35
    unflipped = ImageFolder(tmp_path, size=(24, 16), seed=7, flip=False)
    assert all(bool(unflipped[i][0, 0, 0] < unflipped[i][0, 0, -1]) for i in range(40))
    other_seed = ImageFolder(tmp_path, size=(24, 16), seed=8)
    assert any(not torch.equal(other_seed[i], crops[i]) for i in range(10))


def test_items_never_alias_the_cache(tmp_path):
    save(tmp_path / "a.png", noise((H, W), np.uint8))
    dataset = ImageFolder(tmp_path, size=None, flip=False)
    dataset[0].fill_(0)
    assert dataset[0].abs().sum() > 0


def test_files_of_each_kind_in_one_folder(tmp_path):
    save(tmp_path / "a_gray16.tif", noise((H, W), np.uint16))
    save(tmp_path / "b_rgba.png", noise((H, W, 4), np.uint8))
    save(tmp_path / "c_three.tif", noise((3, H, W), np.float32))
    dataset = ImageFolder(tmp_path, channels=3, size=32, seed=0)
    assert len(dataset) == 3 and all(dataset[i].shape == (3, 32, 32) for i in range(3))
    bad = tmp_path / "bad"
    save(bad / "ok.png", noise((H, W), np.uint8))
    save(bad / "stack.tif", noise((2, 4, H, W), np.uint8))  # 8 gray planes
    save(bad / "two.tif", noise((2, H, W), np.uint8))
    assert len(ImageFolder(bad, size=32)) == 1 + 8 + 2
    with pytest.raises(DatasetError) as caught:
        ImageFolder(bad, channels=2, size=32)
    assert [p.split(":")[0] for p in caught.value.problems] == ["ok.png", "stack.tif"]
    save(tmp_path / "complex" / "c.tif", np.zeros((H, W), np.complex64))
    with pytest.raises(DatasetError, match="c.tif: cannot translate or train on complex64"):
        ImageFolder(tmp_path / "complex", size=32)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="no image files"):
        ImageFolder(tmp_path / "empty")


def test_unpaired_domains(tmp_path):
    for i in range(3):
        save(tmp_path / "a" / f"{i}.png", noise((H, W), np.uint8, i))
    for i in range(5):
        save(tmp_path / "b" / f"{i}.png", np.full((H, W, 3), 40 * i, np.uint8))
    domain_a = ImageFolder(tmp_path / "a", size=32, seed=1)
    domain_b = ImageFolder(tmp_path / "b", size=32, seed=2)
    pairs = UnpairedDomains(domain_a, domain_b, seed=3)
    assert len(pairs) == 5
    x_a, x_b = pairs[4]
    assert x_a.shape == (1, 32, 32) and x_b.shape == (3, 32, 32)
    assert torch.equal(x_a, domain_a[4])  # A wraps: image 1, its own crop
    again = UnpairedDomains(domain_a, domain_b, seed=3)
    b_images = []
    for index in range(60):
        assert torch.equal(pairs[index][1], again[index][1])
        b_images.append(round((pairs[index][1][0, 0, 0].item() + 1) / 2 * 255 / 40))
    assert set(b_images) == {0, 1, 2, 3, 4}  # B drawn independently of A


def make_classes(root, counts):
    for label, count in enumerate(counts):
        for i in range(count):
            save(root / f"class{label}" / f"{i}.png", np.full((H, W), 10 * label + i, np.uint8))


def test_class_folders(tmp_path):
    make_classes(tmp_path, [3, 1, 2])
    (tmp_path / "stray.png").write_bytes(b"files at the root are not used")
    with pytest.warns(UserWarning, match="1 file\\(s\\) skipped.*in a class subfolder: .*/stray.png"):
        dataset = ClassFolders(tmp_path, size=32, seed=0)
    assert dataset.classes == ["class0", "class1", "class2"] and dataset.counts == [3, 1, 2]
    assert [dataset[i][1] for i in range(len(dataset))] == [0, 0, 0, 1, 2, 2]
    image, label = dataset[4]
    assert image.shape == (1, 32, 32) and label == 2
    shots = dataset.sample(0, 3, key=5)
    assert shots.shape == (3, 1, 32, 32)
    values = sorted(round((v + 1) / 2 * 255) for v in shots[:, 0, 0, 0].tolist())
    assert values == [0, 1, 2]  # three different images of class 0
    assert torch.equal(shots, dataset.sample(0, 3, key=5))
    with pytest.raises(ValueError, match="'class1' has 1 image"):
        dataset.sample(1, 2)


def test_class_folder_problems_are_named(tmp_path):
    make_classes(tmp_path, [2, 0, 1])
    (tmp_path / "class1").mkdir()
    (tmp_path / "class2" / "bad.png").write_text("not an image")
    with pytest.raises(DatasetError) as caught:
        ClassFolders(tmp_path, size=32)
    assert "class1/: class has no image files" in caught.value.problems
    assert any(p.startswith("class2/bad.png: cannot read") for p in caught.value.problems)


def paired_data(seed=0):
    a = noise((H, W), np.uint8, seed)
    return a, 255 - a  # B = f(A) pixelwise, and f commutes with crop, flip and resize


def assert_aligned(dataset, count=20):
    for index in range(count):
        x_a, x_b = dataset[index]
        assert x_a.shape == x_b.shape == (1, 24, 24)
        torch.testing.assert_close(x_b, -x_a, atol=1e-5, rtol=0)


def test_paired_folders_stay_aligned(tmp_path):
    for i in range(3):
        a, b = paired_data(i)
        save(tmp_path / "A" / f"{i}.png", a)
        save(tmp_path / "B" / f"{i}.tif", b)  # pairs match by name, not suffix
    dataset = PairedFolders(tmp_path / "A", tmp_path / "B", size=24, seed=0)
    assert len(dataset) == 3 and dataset.channels_a == dataset.channels_b == 1
    assert_aligned(dataset)
    assert_aligned(PairedFolders(tmp_path / "A", tmp_path / "B", size=24, resize=30, seed=1))
    assert_aligned(PairedFolders(tmp_path / "A", tmp_path / "B", size=24, cache_bytes=0))


def test_side_by_side_pairs_stay_aligned(tmp_path):
    for i in range(2):
        save(tmp_path / f"{i}.png", np.concatenate(paired_data(i), axis=1))
    dataset = PairedFolders(tmp_path, size=24, seed=0)
    assert len(dataset) == 2
    assert_aligned(dataset)
    save(tmp_path / "odd.png", noise((H, 2 * W + 1), np.uint8))
    with pytest.raises(DatasetError) as caught:
        PairedFolders(tmp_path, size=24)
    assert caught.value.problems == ["odd.png: width 113 is odd; a side-by-side A|B image splits in the middle"]


def test_paired_folder_problems_are_named(tmp_path):
    for name in ("x", "only_a"):
        save(tmp_path / "A" / f"{name}.png", noise((H, W), np.uint8))
    for name in ("x", "only_b"):
        save(tmp_path / "B" / f"{name}.png", noise((H, W), np.uint8))
    save(tmp_path / "A" / "sized.png", noise((H, W), np.uint8))
    save(tmp_path / "B" / "sized.png", noise((H, W + 2), np.uint8))
    with pytest.raises(DatasetError) as caught:
        PairedFolders(tmp_path / "A", tmp_path / "B", size=24)
    problems = caught.value.problems
    assert any(p.startswith("A/only_a: no image of that name") for p in problems)
    assert any(p.startswith("B/only_b: no image of that name") for p in problems)
    assert any(p.startswith("A/sized.png: A is 40×56 pixels, B 40×58") for p in problems)
    assert len(problems) == 3


def test_infinite_sampler_reshuffles_and_resumes():
    stream = InfiniteSampler(5, seed=1)
    first = [index for _, index in zip(range(15), stream)]
    for rounds in range(3):
        assert sorted(i - 5 * rounds for i in first[5 * rounds : 5 * rounds + 5]) == list(range(5))
    assert first[:5] != [i - 5 for i in first[5:10]]
    resumed = InfiniteSampler(5, seed=1, start=7)
    assert [index for _, index in zip(range(8), resumed)] == first[7:]


def test_dataloader_workers_give_the_same_batches(tmp_path):
    for i in range(4):
        save(tmp_path / f"{i}.png", noise((H, W, 3), np.uint8, i))
    for cache_bytes in (2**30, 0):
        dataset = ImageFolder(tmp_path, size=32, seed=0, cache_bytes=cache_bytes)
        pickle.loads(pickle.dumps(dataset))

        def batches(workers):
            loader = DataLoader(dataset, batch_size=3, sampler=InfiniteSampler(len(dataset), 0), num_workers=workers)
            return [batch for _, batch in zip(range(3), loader)]

        for parallel, serial in zip(batches(2), batches(0)):
            assert parallel.shape == (3, 3, 32, 32)
            assert torch.equal(parallel, serial)


def test_paired_stacks_pair_plane_by_plane(tmp_path):
    a = np.stack([paired_data(i)[0] for i in range(2)])
    save(tmp_path / "A" / "x.tif", a)
    save(tmp_path / "B" / "x.tif", 255 - a)
    gray = {"channels_a": 1, "channels_b": 1}  # (2, Y, X) alone would make a 2-channel image
    dataset = PairedFolders(tmp_path / "A", tmp_path / "B", size=24, seed=0, **gray)
    assert len(dataset) == 2
    assert_aligned(dataset)
    save(tmp_path / "B" / "x.tif", np.concatenate([255 - a, a[:1]]))
    with pytest.raises(DatasetError) as caught:
        PairedFolders(tmp_path / "A", tmp_path / "B", size=24, **gray)
    assert caught.value.problems == ["A/x.tif: A has 2 plane(s), B 3; plane i of A pairs with plane i of B"]


def test_files_that_are_not_images_are_named_in_one_warning_per_dataset(tmp_path):
    """Class folders, their root and pair folders alike; hidden files stay unmentioned."""
    for name in ("cats/a.png", "cats/b.png", "dogs/a.png", "dogs/b.png"):
        save(tmp_path / "classes" / name, noise((8, 8), np.uint8))
    (tmp_path / "classes" / "cats" / "notes.txt").write_text("x")
    (tmp_path / "classes" / "README.md").write_text("x")
    (tmp_path / "classes" / ".DS_Store").write_text("x")
    with pytest.warns(UserWarning, match=r"classes in .*: 2 file\(s\) skipped, not .* images in a class "
                      r"subfolder: classes/README.md, cats/notes.txt$"):
        assert ClassFolders(tmp_path / "classes", size=None).classes == ["cats", "dogs"]
    for side in "AB":
        save(tmp_path / side / "x.png", noise((8, 8), np.uint8))
        (tmp_path / side / "x.csv").write_text("1,2")
    with pytest.warns(UserWarning, match=r"image pairs in .*: 2 file\(s\) skipped.*: A/x.csv, B/x.csv$") as caught:
        assert len(PairedFolders(tmp_path / "A", tmp_path / "B", size=None)) == 1
    assert len(caught) == 1


def test_zarr_stores_in_a_training_folder_are_neither_images_nor_skipped_files(tmp_path):
    """Translation reads .zarr stores; training reads image files, and a store's chunks are no concern of it."""
    import zarr

    from trainers.datasets.sources import image_files

    save(tmp_path / "a.png", noise((8, 8), np.uint8))
    zarr.create_array(tmp_path / "result.ome.zarr", shape=(8, 8), dtype=np.uint8, chunks=(4, 4), fill_value=1)
    (tmp_path / "result.ome.zarr" / "notes.txt").write_text("x")
    for recursive in (False, True):
        skipped = []
        assert image_files(tmp_path, recursive, skipped) == [tmp_path / "a.png"]
        assert skipped == []
