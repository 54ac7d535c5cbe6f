"""FUNIT training: loss terms and weights, the multi-task discriminator, R1, the
generator average, class-folder runs (held-out classes, errors, resume, model files)."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from engines.funit import FunitEngine
from napari_i2i.contract.engine_api import StyleMode, StyleRequest
from napari_i2i.core.model_file import load_model, read_model_info
from trainers.class_folders import ClassPairs, ClassSubset, split_classes
from trainers.datasets import ClassFolders, DatasetError
from trainers.discriminators import MultiTaskDiscriminator
from trainers.funit import TRAIN_PRESETS, FunitTrainConfig, build_trainer
from trainers.losses import r1_penalty
from trainers.run import make_settings, train

TINY_MODEL = {"dim": 8, "n_res": 1, "mlp_dim": 16, "class_dim": 8}
TINY_TRAINING = {"dis_dim": 8, "dis_blocks": 4}
TINY_RUN = {"size": 16, "batch": 2, "log_every": 1, "model": TINY_MODEL, "training": TINY_TRAINING}


def make_trainer(seed=0, num_classes=3, model_config=None, **training):
    torch.manual_seed(seed)
    engine = FunitEngine()
    model = engine.build(engine.config("small", **TINY_MODEL, **(model_config or {})))
    settings = {**TRAIN_PRESETS["small"], **TINY_TRAINING, "num_classes": num_classes, **training}
    return build_trainer(model, settings, torch.device("cpu"))


def shape_batches(start, size=16, batch=4, classes=3):
    """Class k: a bright square on a dark ground, tinted by k; content: the square's place.
    Batches as the ``classes`` data kind serves them with the class-mate term on (``small-colour``):
    content images, class images, and a class mate of each content image."""
    iteration = start
    while True:
        rng = np.random.default_rng(iteration)
        labels = [int(label) for label in rng.integers(classes, size=2 * batch)]
        images = []
        for label in labels + labels[:batch]:  # the last batch: class mates of the first
            top, left = rng.integers(0, size - 6, 2)
            picture = np.full((3, size, size), -0.8, np.float32)
            picture[:, top : top + 6, left : left + 6] = 0.8
            picture[label] *= -1
            images.append(torch.from_numpy(picture))
        images, labels = torch.stack(images), torch.tensor(labels + labels[:batch])
        yield tuple((images[i:i + batch], labels[i:i + batch]) for i in range(0, 3 * batch, batch))
        iteration += 1


def test_step_reports_every_term_with_the_published_weights():
    trainer = make_trainer()
    losses = trainer.step(next(shape_batches(0)), 0)
    assert set(losses) == {"dis", "gen", "gan_dis", "r1", "gan", "reconstruction", "feature"}
    weight = trainer.config.reconstruction_at(0)  # the small preset's λR (20, no warm-up)
    assert losses["gen"] == pytest.approx(losses["gan"] + weight * losses["reconstruction"] + losses["feature"], rel=1e-5)
    assert TRAIN_PRESETS["small-colour"] == {**TRAIN_PRESETS["small"], "classmate_weight": 20.0}
    assert losses["dis"] == pytest.approx(losses["gan_dis"] + 10 * losses["r1"], rel=1e-5)
    paper = FunitTrainConfig.from_mapping(TRAIN_PRESETS["paper"])
    assert (paper.optimizer, paper.lr, paper.weight_decay, paper.ema_beta) == ("rmsprop", 1e-4, 1e-4, 0.999)
    assert (paper.reconstruction_weight, paper.feature_weight, paper.r1_weight) == (0.1, 1.0, 10.0)
    assert paper.classmate_weight == 0  # not in the paper
    assert paper.reconstruction_at(0) == paper.reconstruction_at(10**6) == 0.1  # no warm-up in the paper
    published = make_trainer(reconstruction_weight=0.1)  # small uses λR 20, the paper 0.1
    losses = published.step(next(shape_batches(0)), 0)
    assert losses["gen"] == pytest.approx(losses["gan"] + 0.1 * losses["reconstruction"] + losses["feature"], rel=1e-5)
    assert isinstance(make_trainer(optimizer="rmsprop").gen_optimizer, torch.optim.RMSprop)
    with pytest.raises(ValueError, match="num_classes"):
        make_trainer(num_classes=0)
    with pytest.raises(ValueError, match="optimizer"):
        make_trainer(optimizer="sgd")


def test_reconstruction_warm_up_decays_linearly_to_the_published_weight():
    config = FunitTrainConfig.from_mapping({"reconstruction_start": 5.0, "reconstruction_warmup": 100})
    assert config.reconstruction_at(0) == 5.0
    assert config.reconstruction_at(50) == pytest.approx(0.1 + 4.9 * 0.5)
    assert config.reconstruction_at(100) == config.reconstruction_at(10**6) == 0.1
    trainer = make_trainer(reconstruction_weight=0.1, reconstruction_start=5.0, reconstruction_warmup=100)
    losses = trainer.step(next(shape_batches(0)), 50)
    assert losses["gen"] == pytest.approx(
        losses["gan"] + config.reconstruction_at(50) * losses["reconstruction"] + losses["feature"], rel=1e-5)
    with pytest.raises(ValueError, match="reconstruction_warmup"):
        FunitTrainConfig.from_mapping({"reconstruction_warmup": -1})


def test_reconstruction_loss_decreases():
    """With the adversarial terms off a step is plain autoencoding ``G(x, {x}) ≈ x``: it must learn.
    (How the full losses fall with the `small` preset is measured in docs/training.md.)"""
    trainer = make_trainer(gan_weight=0.0, feature_weight=0.0, lr=1e-3)
    batches = shape_batches(0)
    losses = [trainer.step(next(batches), i)["reconstruction"] for i in range(48)]
    assert np.mean(losses[-8:]) < 0.75 * np.mean(losses[:8])


def test_the_average_generator_is_what_is_saved_and_follows_the_formula():
    trainer = make_trainer(ema_beta=0.75, ema_warmup=False)
    assert trainer.modules()["generator_ema"] is trainer.model is not trainer.generator
    before = [p.clone() for p in trainer.model.parameters()]
    trainer.step(next(shape_batches(0)), 0)
    after = list(trainer.generator.parameters())
    for average, old, new in zip(trainer.model.parameters(), before, after):
        torch.testing.assert_close(average, 0.75 * old + 0.25 * new)
    assert not any(p.requires_grad for p in trainer.model.parameters())
    warm = make_trainer(ema_beta=0.999, ema_warmup=True)
    assert warm.ema_beta(0) == pytest.approx(0.1) and warm.ema_beta(10**6) == 0.999


def test_multi_task_discriminator_uses_the_channel_of_each_images_class():
    torch.manual_seed(0)
    dis = MultiTaskDiscriminator(3, n_classes=5, dim=8, n_blocks=4)
    x = torch.randn(3, 3, 16, 16)
    labels = torch.tensor([4, 0, 2])
    with torch.no_grad():
        everything = dis.head(dis.features(x))
        picked = dis(x, labels)
    assert everything.shape[:2] == (3, 5)
    for i, label in enumerate(labels):
        assert torch.equal(picked[i], everything[i, label])
    paper = MultiTaskDiscriminator(3, n_classes=119)  # the paper's 119 training classes
    with torch.no_grad():
        assert paper.features(torch.zeros(1, 3, 128, 128)).shape == (1, 1024, 8, 8)
    with pytest.raises(ValueError, match="even number"):
        MultiTaskDiscriminator(3, 2, n_blocks=3)


def test_r1_penalty_is_the_squared_gradient_norm_per_image():
    x = torch.randn(2, 3, 4, 5, requires_grad=True)
    logits = 2 * x.sum(1)  # (N, 4, 5) patch logits; an image's logit is their mean
    # d(mean of 20 patches of 2·Σ_c x)/dx = 2/20 everywhere: ‖∇‖² = 60 · 0.01
    assert r1_penalty(logits, x).item() == pytest.approx(60 * 0.1**2)
    assert r1_penalty(logits, x, scale=1024.0).item() == pytest.approx(60 * 0.1**2)
    quadratic = (x**2).sum(1)
    expected = ((2 * x / 20) ** 2).flatten(1).sum(1).mean()
    penalty = r1_penalty(quadratic, x)
    torch.testing.assert_close(penalty, expected)
    assert penalty.requires_grad  # backpropagated into the discriminator


def test_split_classes_by_number_or_name():
    classes = [f"c{i}" for i in range(10)]
    train_classes, held = split_classes(classes, 3, seed=0)
    assert len(held) == 3 and sorted(train_classes + held) == classes
    assert split_classes(classes, 3, seed=0) == (train_classes, held)
    assert split_classes(classes, 3, seed=1) != (train_classes, held)
    assert split_classes(classes, ["c9", "c2"]) == ([c for c in classes if c not in ("c2", "c9")], ["c2", "c9"])
    assert split_classes(classes, None) == (classes, [])
    with pytest.raises(ValueError, match="not found: c11"):
        split_classes(classes, ["c11"])
    with pytest.raises(ValueError, match="at least one must stay"):
        split_classes(classes, 10)
    with pytest.raises(ValueError, match="every class"):
        split_classes(classes, classes)


# --- class folders on disk ------------------------------------------------------------


def make_classes(root, n_classes=4, per_class=3, size=20, gray=False):
    rng = np.random.default_rng(0)
    for k in range(n_classes):
        folder = root / f"class{k}"
        folder.mkdir(parents=True)
        for i in range(per_class):
            shape = (size, size) if gray else (size, size, 3)
            pixels = rng.integers(40 * k, 40 * k + 60, shape, dtype=np.uint8)
            Image.fromarray(pixels).save(folder / f"{i}.png")
    return root


def test_class_pairs_renumber_training_classes_and_are_repeatable(tmp_path):
    folders = ClassFolders(make_classes(tmp_path / "data"), size=16, seed=0)
    subset = ClassSubset(folders, ["class3", "class1"])
    assert len(subset) == 6 and sorted(set(subset.labels)) == [0, 1]
    # images in folder order (class1 first), labels in the order asked for (class3 → 0)
    assert [subset[i][1] for i in range(6)] == [1, 1, 1, 0, 0, 0]
    assert subset[3][0].mean() > subset[0][0].mean()  # class3 is the brighter
    pairs = ClassPairs(subset, seed=0)
    (x, label_x), (y, label_y) = pairs[5]
    (x2, _), (y2, _) = ClassPairs(subset, seed=0)[5]
    assert torch.equal(x, x2) and torch.equal(y, y2) and label_x in (0, 1) and label_y in (0, 1)
    assert not torch.equal(pairs[5][0][0], pairs[5 + len(pairs)][0][0])  # a new pass: new crops


def test_class_mates_are_other_images_of_the_content_images_class(tmp_path):
    folders = ClassFolders(make_classes(tmp_path / "data"), size=16, seed=0)
    subset = ClassSubset(folders, ["class3", "class1"])
    plain, with_mates = ClassPairs(subset, seed=0), ClassPairs(subset, seed=0, classmates=True)
    brightness = {0: subset[3][0].mean(), 1: subset[0][0].mean()}  # a class's pixels lie in a band of its own
    for index in range(2 * len(subset)):
        (x, label_x), (y, _), (mate, label_mate) = with_mates[index]
        assert torch.equal(x, plain[index][0][0]) and torch.equal(y, plain[index][1][0])  # the same pairs
        assert label_mate == label_x and abs(mate.mean() - brightness[label_x]) < 0.2
        assert not torch.equal(mate, x)  # another image (every class here has three)
    assert len(plain[0]) == 2


def test_classmate_term_adds_to_the_generator_loss_and_needs_class_mates():
    (x, label_x), (y, label_y), mates = next(shape_batches(0))
    trainer = make_trainer(classmate_weight=2.0)
    losses = trainer.step(((x, label_x), (y, label_y), mates), 0)
    weight = trainer.config.reconstruction_at(0)
    assert losses["gen"] == pytest.approx(
        losses["gan"] + weight * losses["reconstruction"] + losses["feature"] + 2.0 * losses["classmate"], rel=1e-5)
    assert "classmate" not in make_trainer().step(((x, label_x), (y, label_y), mates), 0)  # off: the third pair unused
    with pytest.raises(ValueError, match="class mates"):
        trainer.step(((x, label_x), (y, label_y)), 1)
    with pytest.raises(ValueError, match="classmate_weight"):
        make_trainer(classmate_weight=-1.0)


def test_classmate_term_scores_the_decoders_own_image_so_a_closed_gate_cannot_meet_it():
    (x, label_x), (y, label_y), mates = next(shape_batches(0))
    trainer = make_trainer(model_config={"input_gate": True}, classmate_weight=1.0)
    gate = trainer.generator.generator.decoder.upsample[-2][1]  # its last output channel: the gate
    with torch.no_grad():
        gate.weight[-1].zero_()
        gate.bias[-1] = -100.0  # closed: every blended output is its input
        assert torch.equal(trainer.generator.generator(x, y), x)
    losses = trainer.step(((x, label_x), (y, label_y), mates), 0)
    assert losses["classmate"] > 0.05  # blended, the term would be 0 here


def test_the_small_colour_preset_gets_class_mates_from_the_class_folders(tmp_path):
    root = make_classes(tmp_path / "data", n_classes=3)
    logged = []
    settings = make_settings("funit", "small-colour", {"classes": root}, config=TINY_RUN, overrides={"iterations": 2})
    assert settings.training["classmate_weight"] == 20.0
    assert settings.model == make_settings("funit", "small", {"classes": root}, config=TINY_RUN).model
    assert train(tmp_path / "run", settings, on_progress=lambda i, losses: logged.append(losses)) is not None
    assert logged and all("classmate" in losses for losses in logged)


def test_train_on_class_folders_and_translate_an_unseen_class(tmp_path):
    root = make_classes(tmp_path / "data", n_classes=5, gray=True)
    settings = make_settings("funit", "small", {"classes": root, "holdout_classes": ["class4"]}, config=dict(TINY_RUN, validate_every=2),
                                   overrides={"iterations": 2})
    assert settings.model["channels"] == 1 and settings.training["num_classes"] == 4
    run = tmp_path / "run"
    path = train(run, settings)
    info = read_model_info(path)
    assert info.engine == "funit" and info.trained and info.channels == {"translate": [1, 1]}
    record = info.provenance["training"]
    assert record["classes"] == ["class0", "class1", "class2", "class3"]
    assert record["holdout_classes"] == ["class4"] and record["classes_dir"] == str(root)
    assert json.loads((run / "run.json").read_text())["inputs"]["holdout_classes"] == ["class4"]
    assert (run / "validation" / "00000002.png").is_file()
    # the saved weights are the average, not the trained generator
    checkpoint = torch.load(run / "checkpoint.pt", weights_only=True)["modules"]
    loaded = load_model(path)
    for key, tensor in loaded.model.state_dict().items():
        assert torch.equal(tensor, checkpoint["generator_ema"][key])
    assert any(not torch.equal(checkpoint["generator"][k], v) for k, v in checkpoint["generator_ema"].items())
    # few-shot translation into the held-out class, K = 2 examples of other sizes
    examples = [torch.from_numpy(np.asarray(Image.open(root / "class4" / f"{i}.png"), np.float32) / 127.5 - 1)[None, None]
                for i in range(2)]
    examples[1] = examples[1][..., :16, :18]
    source = torch.rand(1, 1, 24, 24) * 2 - 1
    with torch.inference_mode():
        out = loaded.model.translate(source, loaded.model.condition(
            StyleRequest(StyleMode.FEW_SHOT, "translate", references=examples)))
    assert out.shape == (1, 1, 24, 24) and torch.isfinite(out).all()


def test_resume_continues_bit_for_bit(tmp_path):
    root = make_classes(tmp_path / "data")

    def settings(iterations):
        return make_settings("funit", "small", {"classes": root, "holdout_classes": 1}, config=TINY_RUN,
                                   overrides={"iterations": iterations})

    train(tmp_path / "straight", settings(4))
    train(tmp_path / "resumed", settings(2))
    torch.manual_seed(123)  # resume must restore every random state
    train(tmp_path / "resumed", resume=True, iterations=4)
    straight, resumed = (torch.load(tmp_path / name / "checkpoint.pt", weights_only=True)
                         for name in ("straight", "resumed"))
    assert straight["iteration"] == resumed["iteration"] == 4
    for name, module in straight["modules"].items():
        for key, tensor in module.items():
            assert torch.equal(tensor, resumed["modules"][name][key]), f"{name}.{key} differs after resume"
    lines = [json.loads(line) for line in (tmp_path / "resumed" / "log.jsonl").read_text().splitlines()]
    assert [line["iteration"] for line in lines if "event" not in line] == [1, 2, 3, 4]  # less the run score's


def test_class_folder_problems_are_named(tmp_path):
    root = make_classes(tmp_path / "data")
    (root / "class1" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    (root / "empty").mkdir()
    with pytest.raises(DatasetError) as caught:
        make_settings("funit", "small", {"classes": root}, config=TINY_RUN)
    assert "empty/: class has no image files" in str(caught.value)
    assert "class1/broken.png" in str(caught.value)
    flat = tmp_path / "flat"
    flat.mkdir()
    Image.fromarray(np.zeros((20, 20), np.uint8)).save(flat / "0.png")
    with pytest.raises(DatasetError, match="no class subfolders"):
        make_settings("funit", "small", {"classes": flat})
    with pytest.raises(ValueError, match="held-out classes not found: class9"):
        make_settings("funit", "small", {"classes": make_classes(tmp_path / "ok"), "holdout_classes": ["class9"]})


def test_data_kinds_do_not_mix(tmp_path):
    root = make_classes(tmp_path / "data")
    with pytest.raises(ValueError, match="engine 'funit' trains on one folder of class subfolders"):
        make_settings("funit", "small", {"domain_a": root / "class0", "domain_b": root / "class1"})
    with pytest.raises(ValueError, match="engine 'munit' trains on two folders"):
        make_settings("munit", "small", {"classes": root})
