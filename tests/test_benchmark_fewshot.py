"""Few-shot glyph benchmark (benchmarks/tasks/fewshot.py, benchmarks/fewshot.py): split, draws,
determinism, baselines, metrics, and a smoke run of the command."""

from __future__ import annotations

import filecmp
import json
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # benchmarks/ is not an installed package
    sys.path.insert(0, str(ROOT))

from benchmarks import fewshot as bench  # noqa: E402
from benchmarks.tasks import fewshot as fs  # noqa: E402
from benchmarks.tasks import fewshot_baselines as baselines  # noqa: E402
from benchmarks.tasks import fonts as font_files  # noqa: E402

# A small configuration from the packages .ci/run installs: the source font's group
# (DejaVu Sans) and Courier for training, Palatino held out; 24 characters, tile 16.
TILE, SEED = 16, 0
TRAIN, TEST = ["DejaVu Sans", "Courier"], ["Palatino"]
CHARS = "ABCDEFGHJKMNabdeghkmn237"
SMALL = dict(tile=TILE, seed=SEED, train_groups=TRAIN, test_groups=TEST, chars=CHARS,
             n_example_chars=8, draws=2)


def _installed_groups() -> set[str]:
    return {face.group for face in font_files.discover_fonts(fs.FAMILIES)[0]}


needs_fonts = pytest.mark.skipif(
    not {*TRAIN, *TEST} <= _installed_groups(),
    reason="needs fonts-dejavu-core and fonts-urw-base35 "
           "(apt-get install -y fonts-dejavu-core fonts-urw-base35)",
)


@pytest.fixture(scope="module")
def small():
    return fs.build_task(**SMALL)


# ------------------------------------------------------------------------------- split

@needs_fonts
def test_split_is_by_family_group(small):
    faces = small.faces
    train_groups = {faces[f].group for f in small.train_fonts}
    test_groups = {faces[f].group for f in small.test_fonts}
    assert train_groups == set(TRAIN) and test_groups == set(TEST)
    assert not set(small.train_fonts) & set(small.test_fonts)
    # No family (and so no Bold/Italic of a test family) is on both sides.
    assert not {faces[f].family for f in small.train_fonts} & {faces[f].family for f in small.test_fonts}
    assert small.source in small.train_fonts
    # Every face of a test family on this machine is a test font, none is left in training.
    test_families = {faces[f].family for f in small.test_fonts}
    installed = [face for face in font_files.discover_fonts(fs.FAMILIES)[0] if face.family in test_families]
    assert {face.slug for face in installed} - set(small.manifest["excluded"]) == set(small.test_fonts)


def test_clone_families_share_a_group():
    groups = {family: group for family, (group, _) in fs.FAMILIES.items()}
    assert groups["Nimbus Sans"] == groups["FreeSans"] == groups["Liberation Sans Narrow"]
    assert groups["Nimbus Roman"] == groups["FreeSerif"] == groups["Liberation Serif"]
    assert groups["Nimbus Mono PS"] == groups["FreeMono"]
    assert groups["Noto Sans"] == groups["Noto Sans Display"]


@needs_fonts
def test_drawn_test_groups_never_include_the_source_group():
    for seed in range(4):
        train, test = fs._choose_groups(sorted(_installed_groups()), "DejaVu Sans", None, 2, None, seed)
        assert "DejaVu Sans" in train and "DejaVu Sans" not in test and len(test) == 2
        assert not set(train) & set(test)
    with pytest.raises(ValueError, match="source font's group"):
        fs._choose_groups(["Courier", "DejaVu Sans"], "DejaVu Sans", ["DejaVu Sans"], 1, None, 0)
    # named training groups: the drawn test groups are among the others
    train, test = fs._choose_groups(["A", "B", "C", "DejaVu Sans"], "DejaVu Sans", None, 1, ["A", "B"], 0)
    assert (train, test) == (["A", "B", "DejaVu Sans"], ["C"])
    with pytest.raises(ValueError, match="cannot hold out 2"):
        fs._choose_groups(["A", "B", "C", "DejaVu Sans"], "DejaVu Sans", None, 2, ["A", "B"], 0)


@needs_fonts
def test_example_and_test_characters_are_disjoint(small):
    assert set(small.example_chars).isdisjoint(small.test_chars)
    assert set(small.example_chars) | set(small.test_chars) == set(CHARS)
    assert len(small.example_chars) == 8
    for font in small.test_fonts:
        assert len(small.draws[font]) == 2
        for draw in range(2):
            five = small.examples(font, draw, 5)
            assert len(set(five)) == 5 and set(five) <= set(small.example_chars)
            assert small.examples(font, draw, 1) == five[0]  # the 1-shot example is one of the 5


@needs_fonts
def test_glyphs_are_real_and_match_the_generator(small):
    for font in (small.source, small.test_fonts[0]):
        face = small.faces[font]
        loaded = font_files.load_font(face.path, TILE)
        for char in CHARS:
            image = small.glyphs[font][char]
            assert image.shape == (TILE, TILE) and image.dtype == np.uint8 and image.min() < 128
            assert np.array_equal(image, font_files.render_glyph(loaded, char, TILE))


# -------------------------------------------------------------------------- determinism

@needs_fonts
def test_same_seed_gives_identical_files(small, tmp_path):
    first = fs.write_task(small, tmp_path / "a")
    second = fs.write_task(fs.build_task(**SMALL), tmp_path / "b")
    assert (first / "manifest.json").read_bytes() == (second / "manifest.json").read_bytes()
    for split in ("train", "test"):
        fonts = sorted(p.name for p in (first / split).iterdir())
        assert fonts == sorted(p.name for p in (second / split).iterdir())
        for font in fonts:
            files = sorted(p.name for p in (first / split / font).iterdir())
            assert len(files) == len(CHARS)
            _, mismatch, errors = filecmp.cmpfiles(first / split / font, second / split / font, files,
                                                   shallow=False)
            assert not mismatch and not errors
    manifest = json.loads((first / "manifest.json").read_text())
    assert manifest["split"] == {"train": small.train_fonts, "test": small.test_fonts}
    for record in manifest["fonts"].values():
        assert len(record["file_sha256"]) == 64 and len(record["glyphs_sha256"]) == 64
    # read back: the class folders are the training fonts
    assert set(fs.read_glyphs(first / "train")) == set(small.train_fonts)
    other = fs.build_task(**{**SMALL, "seed": SEED + 1})
    assert (other.example_chars, other.draws) != (small.example_chars, small.draws)


@needs_fonts
def test_rewriting_removes_stale_font_folders(small, tmp_path):
    (tmp_path / "train" / "Old_Font").mkdir(parents=True)
    (tmp_path / "train" / "Old_Font" / "u0041.png").write_bytes(b"")
    fs.write_task(small, tmp_path)
    assert not (tmp_path / "train" / "Old_Font").exists()


# ---------------------------------------------------------------------------- baselines

def test_nearest_font_picks_the_closest_on_the_examples():
    blank = np.full((8, 8), 255, np.uint8)

    def font(value_a: int, value_b: int, value_c: int) -> dict[str, np.ndarray]:
        return {"a": blank - value_a, "b": blank - value_b, "c": blank - value_c}

    unseen = font(100, 50, 0)
    candidates = {
        "far": font(0, 0, 0),  # L1 on a, b: 100, 50
        "close_on_a": font(95, 0, 200),  # 5, 50 (c differs a lot: c is not an example)
        "close_on_ab": font(90, 45, 255),  # 10, 5
    }
    assert baselines.nearest_font({"a": unseen["a"]}, candidates) == "close_on_a"
    assert baselines.nearest_font({"a": unseen["a"], "b": unseen["b"]}, candidates) == "close_on_ab"
    # ties go to the first name in sorted order
    assert baselines.nearest_font({"a": unseen["a"]}, {"z": font(95, 0, 0), "y": font(105, 0, 0)}) == "y"
    with pytest.raises(ValueError):
        baselines.nearest_font({}, candidates)


@needs_fonts
def test_baselines_on_the_task(small):
    font = small.test_fonts[0]
    identity = baselines.identity_prediction(small)
    assert set(identity) == set(small.test_chars)
    assert all(np.array_equal(identity[c], small.glyphs[small.source][c]) for c in identity)
    chosen, nearest = baselines.nearest_font_prediction(small, font, 0, 5)
    assert chosen in small.train_fonts
    assert all(np.array_equal(nearest[c], small.glyphs[chosen][c]) for c in small.test_chars)
    # a training font given as the "unseen" font is its own nearest font
    examples = {c: small.glyphs["DejaVu_Sans_Bold"][c] for c in small.example_chars[:3]}
    assert baselines.nearest_font(examples, {f: small.glyphs[f] for f in small.train_fonts}) == "DejaVu_Sans_Bold"


# ------------------------------------------------------------------------------ metrics

def test_score_method_on_known_inputs():
    a = np.full((16, 16), 255, np.uint8)
    a[4:12, 6:10] = 0
    b = a.copy()
    b[4:12, 6:10] = 40  # 32 pixels off by 40: L1 = 32*40/256 = 5
    targets = {"A": a, "B": b}

    def oracle(images):  # reads a glyph as the character whose target it equals
        return ["A" if np.array_equal(x, a) else "B" if np.array_equal(x, b) else "?" for x in images]

    exact = bench.score_method(targets, {"A": a, "B": b}, oracle)
    assert (exact["l1"], exact["ssim"], exact["content"], exact["n"]) == (0.0, 1.0, 1.0, 2)
    swapped = bench.score_method(targets, {"A": b, "B": a}, oracle)
    assert swapped["l1"] == pytest.approx(5.0) and swapped["content"] == 0.0 and swapped["ssim"] < 1
    half = bench.score_method(targets, {"A": a, "B": a}, oracle)
    assert half["l1"] == pytest.approx(2.5) and half["content"] == 0.5

    keys = ("method", "k", "font", "n", "l1", "ssim", "psnr", "content")
    cases = [dict(zip(keys, values)) for values in (("m", 1, "f", 2, 1.0, 0.5, 20.0, 1.0),
                                                    ("m", 1, "g", 6, 3.0, 0.9, 30.0, 0.5),
                                                    ("id", 1, "f", 2, 9.0, 0.1, 10.0, 1.0),
                                                    ("m", 5, "f", 2, 0.5, 0.6, 25.0, 1.0))]
    rows = bench.summarise(cases)
    assert [(r["method"], r["k"]) for r in rows] == [("m", 1), ("m", 5), ("id", 1)]
    assert rows[0]["l1"] == pytest.approx(2.5) and rows[0]["content"] == pytest.approx(0.625)
    assert rows[0]["n"] == 8 and rows[0]["fonts"] == 2
    assert bench.bar(rows, "m") is None  # no identity row for K=1 under the benchmark's name
    rows.append({"method": "identity (source font)", "k": 1, "l1": 9.0})
    assert bench.bar(rows, "m")["met"]


def test_classifier_learns_separable_glyphs():
    images = np.full((40, 16, 16), 255, np.uint8)
    images[:20, 3:13, 7:9] = 0  # "I"
    images[20:, 7:9, 3:13] = 0  # "-"
    labels = np.array([0] * 20 + [1] * 20)
    model = bench.train_classifier(images, labels, 2, epochs=15, seed=0, batch=8)
    assert list(bench.classify(model, [images[0], images[-1]])) == [0, 1]


# ---------------------------------------------------------------------------- host API

@needs_fonts
def test_funit_translate_uses_the_host_api_like_the_model(small):
    import torch

    from engines.funit import FunitEngine
    from napari_i2i.contract.engine_api import StyleMode, StyleRequest
    from napari_i2i.core.model_file import LoadedModel, ModelInfo

    engine = FunitEngine()
    torch.manual_seed(0)
    model = engine.build(engine.config("small", channels=1)).eval()
    loaded = LoadedModel(Path("<test>"), ModelInfo("funit", model.config, [], {}), engine, model)
    sources = {c: small.glyphs[small.source][c] for c in small.test_chars[:3]}
    font = small.test_fonts[0]
    examples = {c: small.glyphs[font][c] for c in small.examples(font, 0, 5)}
    out = bench.funit_translate(loaded, sources, examples)

    def tensor(image):
        return torch.from_numpy(image.astype(np.float32) / 255.0 * 2 - 1)[None, None]

    with torch.inference_mode():
        cond = model.condition(StyleRequest(StyleMode.FEW_SHOT, "translate",
                                            references=[tensor(x) for x in examples.values()]))
        for char, image in sources.items():
            direct = model.translate(tensor(image), cond)[0, 0].numpy()
            expected = np.clip(np.rint((direct + 1) / 2 * 255), 0, 255)
            assert out[char].shape == image.shape and out[char].dtype == np.uint8
            assert np.abs(out[char].astype(float) - expected).max() <= 1  # rounding only


# ------------------------------------------------------------------------------ command

@needs_fonts
def test_command_smoke(tmp_path, capsys):
    code = bench.main(["--out", str(tmp_path), "--iters", "2", "--tile", str(TILE), "--seed", str(SEED),
                       "--train-groups", *TRAIN, "--test-groups", *TEST, "--chars", CHARS,
                       "--example-chars", "8", "--draws", "1", "--classifier-epochs", "1",
                       "--set", "classmate_weight=3"])
    assert code == 0
    out = capsys.readouterr().out
    assert "| method | K |" in out and "Wall time" in out
    trained = "FUNIT small, classmate_weight=3, 2 it"
    for method in (trained, "identity (source font)", "nearest training font"):
        for k in (1, 5):
            assert f"| {method} | {k} |" in out
    results = json.loads((tmp_path / "results.json").read_text())
    methods = (trained, "identity (source font)", "nearest training font")
    assert {(r["method"], r["k"]) for r in results["rows"]} == {(m, k) for m in methods for k in (1, 5)}
    assert (tmp_path / "run" / "model.safetensors").is_file()
    assert sorted(p.name for p in (tmp_path / "data" / "train").iterdir()) == results["task"]["train_fonts"]
    run = json.loads((tmp_path / "run" / "run.json").read_text())
    assert run["engine"] == "funit" and run["size"] == TILE and run["inputs"]["holdout_classes"] == []
    assert run["training"]["classmate_weight"] == 3  # --set reaches the trainer
    # --model: evaluate the trained file again without training
    model = str(tmp_path / "run" / "model.safetensors")
    code = bench.main(["--out", str(tmp_path / "again"), "--model", model, "--tile", str(TILE),
                       "--train-groups", *TRAIN, "--test-groups", *TEST, "--chars", CHARS,
                       "--example-chars", "8", "--draws", "1", "--classifier-epochs", "1"])
    assert code == 0 and not (tmp_path / "again" / "run").exists()
    with pytest.raises(SystemExit):
        bench.main(["--out", str(tmp_path / "none"), "--model", model, "--set", "classmate_weight=1"])
    assert "with --model nothing is trained" in capsys.readouterr().err
