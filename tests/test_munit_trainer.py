"""MUNIT trainer: the optional domain-invariant perceptual (VGG) loss — off by default,
switched off and logged when no weights are found, computed on the step's own
translations when they are. Weights files are made in conftest (never downloaded)."""

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision
from PIL import Image

from engines.munit import MunitEngine
from napari_i2i.frontends.cli import main
from trainers.loop import LoopConfig, TrainLoop
from trainers.munit import TRAIN_PRESETS, MunitTrainConfig, build_trainer

TINY_MODEL = {"dim": 8, "mlp_dim": 16, "n_res": 1}
MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)


@pytest.fixture(autouse=True)
def empty_hub(tmp_path, monkeypatch):
    """No VGG weights in the torch cache unless a test puts them there."""
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "empty_hub"))


def make_trainer(seed=0, model=None, **training):
    torch.manual_seed(seed)
    engine = MunitEngine()
    built = engine.build(engine.config("small", **{**TINY_MODEL, **(model or {})}))
    return build_trainer(built, dict(TRAIN_PRESETS["small"], dis_dim=8, **training), torch.device("cpu"))


def batches(start, size=32):
    """Random images in [-1, 1]; 32 px so VGG's relu5_3 features are 2×2."""
    iteration = start
    while True:
        generator = torch.Generator().manual_seed(iteration)
        yield tuple(torch.rand(2, 3, size, size, generator=generator) * 2 - 1 for _ in range(2))
        iteration += 1


def make_loop(trainer, run_dir, iterations):
    config = LoopConfig(iterations=iterations, checkpoint_every=1000, log_every=1, validate_every=1000)
    return TrainLoop(trainer, batches, config, run_dir)


def log_lines(run_dir):
    return [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]


def test_vgg_loss_is_off_by_default_as_published():
    assert MunitTrainConfig.from_mapping(TRAIN_PRESETS["paper"]).vgg_weight == 0
    trainer = make_trainer()
    assert trainer.vgg is None and trainer.events() == []
    assert "vgg" not in trainer.step(next(batches(0)), 0)


def test_no_weights_found_switches_the_loss_off_and_says_so(tmp_path):
    with pytest.warns(UserWarning, match="VGG perceptual loss switched off .*no VGG16 weights"):
        trainer = make_trainer(vgg_weight=1.0)
    assert trainer.vgg is None
    loop = make_loop(trainer, tmp_path, 2)
    assert loop.run()
    first, *losses = log_lines(tmp_path)
    assert first["event"] == "vgg_loss_off" and first["iteration"] == 0 and first["vgg_weight"] == 1.0
    assert "vgg16-397923af.pth" in first["reason"]
    assert [line["iteration"] for line in losses] == [1, 2]
    assert all("vgg" not in line for line in losses)


def test_perceptual_loss_on_the_steps_own_translations(vgg16_hub, tmp_path):
    _, weights = vgg16_hub
    trainer = make_trainer(vgg_weight=0.5, vgg_weights=str(weights))
    assert trainer.events() == [
        {"event": "vgg_loss", "vgg_weight": 0.5, "source": f"file:{weights}", "layer": "relu5_3"}
    ]
    reference = torchvision.models.vgg16(weights=None).eval()
    reference.load_state_dict(torch.load(weights, weights_only=True))

    def features(images):  # relu5_3 of torchvision's network on ImageNet-normalised [0, 1]
        return reference.features[:30](((images + 1) / 2 - MEAN) / STD)

    def expected(output, source):
        return F.mse_loss(F.instance_norm(features(output)), F.instance_norm(features(source)))

    x_a, x_b = next(batches(0))
    gen_a, gen_b = trainer.model.gen_a, trainer.model.gen_b
    torch.manual_seed(7)
    with torch.no_grad():  # the translations the step will make: same styles from the same seed
        s_a, s_b = torch.randn(2, gen_a.style_dim), torch.randn(2, gen_a.style_dim)
        x_ba = gen_a.decode(gen_b.content_encoder(x_b), s_a)
        x_ab = gen_b.decode(gen_a.content_encoder(x_a), s_b)
        vgg = expected(x_ab, x_a) + expected(x_ba, x_b)
    torch.manual_seed(7)
    losses = trainer.step((x_a, x_b), 0)
    assert losses["vgg"] == pytest.approx(vgg.item(), rel=1e-4)
    lambdas = {"image": 10, "content": 1, "style": 1, "cycle": 10, "gan": 1, "vgg": 0.5, "identity": 5}
    assert losses["gen"] == pytest.approx(sum(w * losses[k] for k, w in lambdas.items()), rel=1e-5)
    assert not any(p.requires_grad for p in trainer.vgg.parameters())
    assert "vgg" not in {name for name in trainer.modules()}  # never in checkpoints

    loop = make_loop(trainer, tmp_path, 2)
    loop.iteration = 1
    assert loop.run()
    first, second = log_lines(tmp_path)
    assert first == {"iteration": 1, "event": "vgg_loss", "vgg_weight": 0.5, "source": f"file:{weights}",
                     "layer": "relu5_3"}
    assert second["iteration"] == 2 and np.isfinite(second["vgg"])


def test_torch_cache_weights_are_found(vgg16_hub, monkeypatch):
    hub, weights = vgg16_hub
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(hub))
    trainer = make_trainer(vgg_weight=1.0)
    assert trainer.events()[0]["source"] == f"torch-cache:{weights}"


def test_perceptual_loss_needs_gray_or_rgb_and_32_pixel_crops(vgg16_hub):
    _, weights = vgg16_hub
    with pytest.raises(ValueError, match="domain a has 4 channels"):
        make_trainer(model={"channels_a": 4}, vgg_weight=1.0, vgg_weights=str(weights))
    gray = make_trainer(model={"channels_a": 1}, vgg_weight=1.0, vgg_weights=str(weights))
    x_a, x_b = next(batches(0))
    assert np.isfinite(gray.step((x_a[:, :1], x_b), 0)["vgg"])
    with pytest.raises(ValueError, match="at least 32 pixels"):
        gray.step((x_a[:, :1, :16, :16], x_b[:, :, :16, :16]), 1)


def test_cli_named_weights_file_missing_is_an_error(tmp_path, capsys):
    for name in "ab":
        (tmp_path / name).mkdir()
        for i in range(2):
            pixels = np.random.default_rng(i).integers(0, 255, (20, 20, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(tmp_path / name / f"{i}.png")
    config = tmp_path / "vgg.toml"
    missing = tmp_path / "no_vgg.pth"
    config.write_text(f'size = 16\n[model]\ndim = 8\nn_res = 1\nmlp_dim = 16\n'
                      f'[training]\ndis_dim = 8\nvgg_weight = 1.0\nvgg_weights = "{missing}"\n')
    code = main(["train", "munit", "--domain-a", str(tmp_path / "a"), "--domain-b", str(tmp_path / "b"),
                 "--out", str(tmp_path / "run"), "--config", str(config), "--iters", "1", "--device", "cpu",
                 "--quiet"])
    assert code == 2
    assert f"{missing}: no such VGG16 weights file" in capsys.readouterr().err
