"""The quality-benchmark tasks (benchmarks/tasks): determinism, splits, exact pairs, metrics, baselines."""

from __future__ import annotations

import filecmp
import hashlib
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # benchmarks/ is not an installed package
    sys.path.insert(0, str(ROOT))

from benchmarks.tasks import fluo2bf, glyphs, metrics, stardist_data  # noqa: E402
from benchmarks.tasks import fonts as font_files  # noqa: E402
from benchmarks.tasks import generate as gen  # noqa: E402
from benchmarks.tasks import task as task_files  # noqa: E402

TILE, SEED = 64, 0
HAS_STARDIST_DATA = stardist_data.stardist_data_file("img2d.tif") is not None
needs_stardist = pytest.mark.skipif(
    not HAS_STARDIST_DATA,
    reason="stardist's sample data (stardist/data/images/img2d.tif) is not installed: "
           "pip install --no-deps stardist",
)


def _fonts_available() -> bool:
    try:
        font_files.find_font(glyphs.FONT_A_CANDIDATES)
        font_files.find_font(glyphs.FONT_B_CANDIDATES)
    except task_files.MissingData:
        return False
    return True


needs_fonts = pytest.mark.skipif(not _fonts_available(),
                                 reason="no DejaVu Sans / serif font installed (apt-get install fonts-dejavu-core)")

TASK_PARAMS = [
    pytest.param("stain"),
    pytest.param("fluo2bf", marks=needs_stardist),
    pytest.param("glyphs", marks=needs_fonts),
]


@pytest.fixture(scope="module")
def built():
    """Each available task, generated once in memory (tile 64, seed 0)."""
    cache = {}

    def get(name):
        if name not in cache:
            cache[name] = gen.generate(name, tile=TILE, seed=SEED)
        return cache[name]

    return get


@pytest.fixture(scope="module")
def written(built, tmp_path_factory):
    """Each task written to disk once and read back."""
    root = tmp_path_factory.mktemp("tasks")
    cache = {}

    def get(name):
        if name not in cache:
            folder = task_files.write_task(built(name), root / name)
            cache[name] = (folder, task_files.load_task(folder))
        return cache[name]

    return get


def _digest(array: np.ndarray) -> str:
    return hashlib.sha256(array.tobytes()).hexdigest()


# ------------------------------------------------------------------------- determinism

@pytest.mark.parametrize("name", TASK_PARAMS)
def test_same_seed_gives_identical_files(name, written, tmp_path):
    folder, _ = written(name)
    again = task_files.write_task(gen.generate(name, tile=TILE, seed=SEED), tmp_path / name)
    for split in task_files.SPLITS:
        files = sorted(p.name for p in (folder / split).iterdir())
        assert files == sorted(p.name for p in (again / split).iterdir())
        match, mismatch, errors = filecmp.cmpfiles(folder / split, again / split, files, shallow=False)
        assert not mismatch and not errors, (split, mismatch, errors)
    assert (folder / "manifest.json").read_bytes() == (again / "manifest.json").read_bytes()


def test_other_seed_gives_other_split(built):
    other = gen.generate("stain", tile=TILE, seed=SEED + 1)
    assert set(other.splits["test_a"]) != set(built("stain").splits["test_a"])


# ------------------------------------------------------------------------------ splits

@pytest.mark.parametrize("name", TASK_PARAMS)
def test_splits_are_disjoint_and_test_is_paired(name, built):
    task = built(name)
    train_a, train_b, test = (set(task.splits[s]) for s in ("train_a", "train_b", "test_a"))
    assert set(task.splits["test_b"]) == test, "test_a and test_b must hold the same names"
    assert train_a and train_b and test
    assert not train_a & train_b and not train_a & test and not train_b & test
    # No image content is shared either (names could hide a duplicate source).
    a_hashes = {_digest(x) for x in task.splits["train_a"].values()}
    b_hashes = {_digest(x) for x in task.splits["train_b"].values()}
    assert not a_hashes & {_digest(x) for x in task.splits["test_a"].values()}
    assert not b_hashes & {_digest(x) for x in task.splits["test_b"].values()}


@pytest.mark.parametrize("name", [p for p in TASK_PARAMS if p.values[0] != "glyphs"])
def test_tiled_tasks_use_disjoint_cells(name, built):
    task = built(name)
    for source, record in task.manifest["cells"].items():
        cells = {split: {tuple(c) for c in record[split]} for split in ("train_a", "train_b", "test")}
        assert not cells["train_a"] & cells["train_b"]
        assert not (cells["train_a"] | cells["train_b"]) & cells["test"]
        rows, cols = record["grid"]
        assert len(cells["train_a"]) + len(cells["train_b"]) + len(cells["test"]) == rows * cols
        for split, files in (("train_a", "train_a"), ("train_b", "train_b"), ("test", "test_a")):
            named = {f for f in task.splits[files] if f.startswith(source + "_")}
            assert named == {f"{source}_r{r:02d}c{c:02d}.png" for r, c in cells[split]}


@needs_fonts
def test_glyph_splits_use_disjoint_characters(built):
    chars = built("glyphs").manifest["characters"]
    a, b, test = set(chars["train_a"]), set(chars["train_b"]), set(chars["test_a"])
    assert not a & b and not (a | b) & test
    assert len(a) > 100 and len(test) > 50


# ------------------------------------------------------------------- exact test pairs

def test_stain_test_pairs_are_exact(written):
    _, task = written("stain")  # read back from PNG: lossless
    for file, a in task.splits["test_a"].items():
        assert np.array_equal(gen.stain_transform(a), task.splits["test_b"][file]), file


@needs_stardist
def test_fluo2bf_test_pairs_are_exact(written):
    _, task = written("fluo2bf")
    for file, a in task.splits["test_a"].items():
        assert np.array_equal(gen.fluo_transform(a), task.splits["test_b"][file]), file


@needs_fonts
def test_glyph_test_pairs_are_exact(written):
    _, task = written("glyphs")
    fonts = task.manifest["fonts"]
    font_a, font_b = font_files.load_font(fonts["a"]["file"], TILE), font_files.load_font(fonts["b"]["file"], TILE)
    for file in task.splits["test_a"]:
        char = font_files.glyph_char(file)
        assert np.array_equal(font_files.render_glyph(font_a, char, TILE), task.splits["test_a"][file]), char
        assert np.array_equal(font_files.render_glyph(font_b, char, TILE), task.splits["test_b"][file]), char


def test_stain_transform_moves_dab_to_eosin(built):
    from skimage.color import rgb2hed

    task = built("stain")
    ihc = [f for f in task.splits["test_a"] if f.startswith("ihc_")]
    assert ihc
    dab_a = np.mean([rgb2hed(task.splits["test_a"][f])[..., 2].mean() for f in ihc])
    hed_b = np.stack([rgb2hed(task.splits["test_b"][f]) for f in ihc])
    assert hed_b[..., 2].mean() < 0.01 * dab_a  # DAB gone (up to 8-bit rounding)
    assert hed_b[..., 1].mean() > 0.3 * dab_a  # ... into eosin


def test_fluo_transform_is_beer_lambert():
    a = np.array([[0, 255], [128, 64]], np.uint8)
    b = gen.fluo_transform(a)
    assert b.shape == (2, 2, 3) and b.dtype == np.uint8
    assert (b[0, 0] == 255).all()  # no fluorescence: white
    expected = np.round(255 * np.exp(-fluo2bf.FLUO_K * np.array([0.65, 0.70, 0.29])))
    assert np.array_equal(b[0, 1], expected)  # full fluorescence: haematoxylin at OD k·v
    assert (b[0, 1] < b[1, 0]).all() and (b[1, 0] < b[1, 1]).all()  # darker with more signal


# ------------------------------------------------------------------ shapes / channels

@pytest.mark.parametrize("name, shape_a, shape_b", [
    pytest.param("stain", (TILE, TILE, 3), (TILE, TILE, 3)),
    pytest.param("fluo2bf", (TILE, TILE), (TILE, TILE, 3), marks=needs_stardist),
    pytest.param("glyphs", (TILE, TILE), (TILE, TILE), marks=needs_fonts),
])
def test_shapes_and_channels(name, shape_a, shape_b, written):
    _, task = written(name)  # as read back from disk
    for split, shape in (("train_a", shape_a), ("test_a", shape_a), ("train_b", shape_b), ("test_b", shape_b)):
        for array in task.splits[split].values():
            assert array.shape == shape and array.dtype == np.uint8, (split, array.shape)
    assert task.manifest["counts"] == task.counts()


def test_tile_size_is_configurable():
    task = gen.generate("stain", tile=128, seed=SEED, use_stardist=False)
    assert next(iter(task.splits["train_a"].values())).shape == (128, 128, 3)
    assert sum(task.counts()[s] for s in ("train_a", "train_b", "test_a")) == (512 // 128) ** 2


# ------------------------------------------------------------------------ stardist data

def test_stardist_is_located_without_importing_it():
    code = ("import sys; from benchmarks.tasks.stardist_data import stardist_data_file as f; "
            "f('img2d.tif'); f('histo.jpg'); "
            "assert 'stardist' not in sys.modules and 'tensorflow' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)


def test_missing_stardist_fails_clearly_and_stain_falls_back(monkeypatch):
    monkeypatch.setattr(stardist_data, "stardist_data_file", lambda name: None)
    with pytest.raises(task_files.MissingData, match=r"stardist.*--no-deps"):
        gen.generate("fluo2bf", tile=TILE, seed=SEED)
    task = gen.generate("stain", tile=TILE, seed=SEED)
    assert all(f.startswith("ihc_") for split in task_files.SPLITS for f in task.splits[split])
    assert "skipped" in task.manifest["sources"]["he"]


# ------------------------------------------------------------------------------ glyphs

@needs_fonts
def test_glyphs_use_two_really_different_fonts(built):
    task = built("glyphs")
    fonts = task.manifest["fonts"]
    assert fonts["a"]["name"] != fonts["b"]["name"]
    assert fonts["a"]["file_sha256"] != fonts["b"]["file_sha256"]
    ious = []
    for file, a in task.splits["test_a"].items():
        ink_a, ink_b = a < 128, task.splits["test_b"][file] < 128
        assert not np.array_equal(a, task.splits["test_b"][file]), font_files.glyph_char(file)
        ious.append((ink_a & ink_b).sum() / (ink_a | ink_b).sum())
    assert np.mean(ious) < 0.75  # DejaVu Sans vs Nimbus Roman: ~0.35


# ----------------------------------------------------------------------------- metrics

def test_psnr_of_identical_images_is_capped():
    image = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    assert metrics.psnr(image, image) == metrics.PSNR_CAP_DB
    assert metrics.ssim(image, image) == pytest.approx(1.0)
    assert metrics.l1(image, image) == 0.0


def test_psnr_of_known_noise():
    rng = np.random.default_rng(0)
    clean = np.full((64, 64), 128, np.uint8)
    noisy = (clean + 5 * rng.choice([-1, 1], clean.shape)).astype(np.uint8)  # MSE exactly 25
    assert metrics.psnr(clean, noisy) == pytest.approx(20 * math.log10(255 / 5), abs=1e-9)
    assert metrics.l1(clean, noisy) == 5.0
    gaussian = np.clip(clean + rng.normal(0, 10, clean.shape), 0, 255).round().astype(np.uint8)
    assert metrics.psnr(clean, gaussian) == pytest.approx(20 * math.log10(255 / 10), abs=0.15)
    assert metrics.ssim(clean, gaussian) < 1.0


def test_diversity_and_samples():
    x = np.zeros((16, 16), np.uint8)
    assert metrics.diversity([x, x, x]) == 0.0
    assert metrics.diversity([x, x + 10]) == 10.0
    result = metrics.score({"t.png": x}, {"t.png": [x, x + 10]})
    assert result["diversity"] == 10.0 and result["l1"] == 5.0 and result["n"] == 1
    assert metrics.score({"t.png": x}, {"t.png": x})["diversity"] is None
    with pytest.raises(KeyError):
        metrics.score({"t.png": x}, {})


def test_to_channels():
    gray = np.arange(16, dtype=np.uint8).reshape(4, 4)
    rgb = metrics.to_channels(gray, 3)
    assert rgb.shape == (4, 4, 3) and all(np.array_equal(rgb[..., c], gray) for c in range(3))
    assert np.array_equal(metrics.to_channels(rgb, 1), gray)


@pytest.mark.parametrize("name", TASK_PARAMS)
def test_baselines(name, built):
    task = built(name)
    perfect = metrics.score(task.splits["test_b"], task.splits["test_b"])
    assert (perfect["psnr"], perfect["ssim"], perfect["l1"]) == (metrics.PSNR_CAP_DB, 1.0, 0.0)
    for method, baseline in metrics.BASELINES.items():
        out = baseline(task)
        assert set(out) == set(task.splits["test_b"])
        for file, array in out.items():
            assert array.shape == task.splits["test_b"][file].shape and array.dtype == np.uint8
        result = metrics.score(task.splits["test_b"], out)
        # Every baseline is worse than the exact transform on every task.
        assert result["psnr"] < 40 and result["ssim"] < 0.95 and result["l1"] > 1, (method, result)


def test_markdown_table(built):
    rows = metrics.run_baselines([built("stain")])
    table = metrics.markdown_table(rows)
    assert table.splitlines()[0].startswith("| task | method |")
    assert "| stain | identity |" in table and "| stain | histogram matching |" in table


# --------------------------------------------------------------------------------- CLIs

def test_clis(tmp_path, capsys):
    assert gen.main(["stain", "--out", str(tmp_path), "--tile", "128", "--no-stardist-he"]) == 0
    assert "stain: train_a" in capsys.readouterr().out
    # score: a method's predictions as style samples, here the exact targets and identity
    task = task_files.load_task(tmp_path / "stain")
    for k, outputs in enumerate((task.splits["test_b"], metrics.identity_baseline(task))):
        (tmp_path / "pred" / f"sample_{k}").mkdir(parents=True)
        for file, array in outputs.items():
            Image.fromarray(array).save(tmp_path / "pred" / f"sample_{k}" / file)
    assert metrics.main(["score", str(tmp_path / "stain"), str(tmp_path / "pred"), "--method", "m"]) == 0
    out = capsys.readouterr().out
    assert "| stain | m |" in out and "diversity" in out
    assert metrics.main(["baselines", str(tmp_path), "--tasks", "stain"]) == 0
    assert "| stain | histogram matching |" in capsys.readouterr().out


# ------------------------------------------------------------------------- quality.py reference styles

def test_quality_mean_train_b_style_is_the_mean_code_of_every_train_b_tile(built):
    """``predict(..., "train_b_mean")`` decodes every input with the mean style code of all
    train_b tiles (the host's several-references path), never with a test target."""
    import torch

    from benchmarks.quality import predict
    from engines.munit import MunitEngine

    task = built("stain")
    torch.manual_seed(0)
    engine = MunitEngine()
    model = engine.build(engine.config("small"))
    predictions = predict("munit", model, task, 1, "train_b_mean")
    assert sorted(predictions) == sorted(task.splits["test_a"]) and model.training

    def tensor(array):
        return torch.from_numpy(array).permute(2, 0, 1)[None].float() / 127.5 - 1

    model.eval()
    with torch.inference_mode():
        codes = torch.cat([model.gen_b.style_encoder(tensor(task.splits["train_b"][n]))
                           for n in sorted(task.splits["train_b"])])
        name = min(task.splits["test_a"])
        expected = model.gen_b.decode(model.gen_a.content_encoder(tensor(task.splits["test_a"][name])),
                                      codes.mean(0, keepdim=True))
    expected = ((expected[0].permute(1, 2, 0).numpy() + 1) * 127.5).clip(0, 255)
    (prediction,) = predictions[name]
    assert np.abs(prediction.astype(float) - expected).max() <= 1.0  # rounding to 8 bits


def test_quality_matched_style_is_the_train_b_tile_of_closest_content(built):
    """``predict(..., "train_b_matched")``: each input gets the style code of the train_b tile
    whose content code has the nearest per-channel mean and spread (never a test target)."""
    import torch

    from benchmarks.quality import predict
    from engines.munit import MunitEngine

    task = built("stain")
    torch.manual_seed(0)
    engine = MunitEngine()
    model = engine.build(engine.config("small"))
    predictions = predict("munit", model, task, 1, "train_b_matched")

    def tensor(array):
        return torch.from_numpy(array).permute(2, 0, 1)[None].float() / 127.5 - 1

    def signature(code):
        return torch.cat([code.mean((2, 3)), code.std((2, 3))], 1)[0]

    model.eval()
    train_b = [tensor(task.splits["train_b"][n]) for n in sorted(task.splits["train_b"])]
    with torch.inference_mode():
        signatures = torch.stack([signature(model.gen_b.content_encoder(x)) for x in train_b])
        chosen = set()
        for name in sorted(task.splits["test_a"]):
            content = model.gen_a.content_encoder(tensor(task.splits["test_a"][name]))
            nearest = int((signatures - signature(content)).norm(dim=1).argmin())
            chosen.add(nearest)
            expected = model.gen_b.decode(content, model.gen_b.style_encoder(train_b[nearest]))
            expected = ((expected[0].permute(1, 2, 0).numpy() + 1) * 127.5).clip(0, 255)
            (prediction,) = predictions[name]
            assert np.abs(prediction.astype(float) - expected).max() <= 1.0, name
    assert len(chosen) > 1  # inputs of different content take different references
