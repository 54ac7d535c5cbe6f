"""UNIT trainer: loss terms, tied parameters, learning, exact resume, CLI round trip."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from engines.unit import UnitEngine
from napari_i2i.cli import main
from napari_i2i.model_file import read_model_info
from test_training_loop import stripe_batches
from trainers.loop import LoopConfig, TrainLoop
from trainers.unit import TRAIN_PRESETS, UnitTrainConfig, build_trainer

TINY_MODEL = dict(dim=8, n_res=1, shared_blocks=1)


def build_unit(seed=0, **overrides):
    torch.manual_seed(seed)
    engine = UnitEngine()
    return engine.build(engine.config("small", **{**TINY_MODEL, **overrides}))


def make_trainer(seed=0, **model):
    return build_trainer(build_unit(seed, **model), dict(TRAIN_PRESETS["small"], dis_dim=8),
                         torch.device("cpu"))


def make_loop(run_dir, iterations, seed=0, **config):
    trainer = make_trainer(seed)
    settings = dict(iterations=iterations, checkpoint_every=1000, log_every=1, validate_every=1000)
    settings.update(config)
    return TrainLoop(trainer, stripe_batches, LoopConfig(**settings), run_dir,
                     validation_batch=next(stripe_batches(0)))


def test_presets_and_settings():
    assert UnitTrainConfig.from_mapping(TRAIN_PRESETS["paper"]) == UnitTrainConfig(
        lr=1e-4, beta1=0.5, beta2=0.999, weight_decay=1e-4, lr_step=100_000, gan_weight=1,
        image_weight=10, kl_weight=0.01, cycle_weight=10, cycle_kl_weight=0.01,
    )
    with pytest.raises(ValueError, match="unknown UNIT training settings"):
        UnitTrainConfig.from_mapping({"style_weight": 1})


def test_one_step_returns_every_term_as_published():
    """Terms recomputed independently from the same batch and the same noise."""
    trainer = make_trainer()
    model = trainer.model
    x_a, x_b = next(stripe_batches(0))
    torch.manual_seed(7)
    with torch.no_grad():  # before the step: the generator is what the step starts from
        h_a, h_b = model.gen_a.encode(x_a), model.gen_b.encode(x_b)
        z_a, z_b = h_a + torch.randn_like(h_a), h_b + torch.randn_like(h_b)
        h_ab, h_ba = model.gen_b.encode(model.gen_b.decode(z_a)), model.gen_a.encode(model.gen_a.decode(z_b))
        image = (model.gen_a.decode(z_a) - x_a).abs().mean() + (model.gen_b.decode(z_b) - x_b).abs().mean()
    torch.manual_seed(7)
    losses = trainer.step((x_a, x_b), 0)

    assert set(losses) == {"dis", "gen", "gan", "image", "kl", "cycle", "cycle_kl"}
    assert all(np.isfinite(value) for value in losses.values())
    assert losses["kl"] == pytest.approx((h_a**2).mean().item() + (h_b**2).mean().item(), rel=1e-5)
    assert losses["cycle_kl"] == pytest.approx((h_ab**2).mean().item() + (h_ba**2).mean().item(), rel=1e-5)
    assert losses["image"] == pytest.approx(image.item(), rel=1e-5)
    weights = dict(gan=1, image=10, kl=0.01, cycle=10, cycle_kl=0.01)
    assert losses["gen"] == pytest.approx(sum(w * losses[k] for k, w in weights.items()), rel=1e-5)
    assert all(p.requires_grad for d in (trainer.dis_a, trainer.dis_b) for p in d.parameters())


def test_tied_parameters_are_optimised_once():
    trainer = make_trainer(shared_blocks=1)
    params = [p for group in trainer.gen_optimizer.param_groups for p in group["params"]]
    ids = [id(p) for p in params]
    assert len(ids) == len(set(ids))
    assert set(ids) == {id(p) for p in trainer.model.parameters()}
    per_domain = [*trainer.model.gen_a.parameters(), *trainer.model.gen_b.parameters()]
    shared = {id(p) for p in trainer.model.gen_a.parameters()} & {id(p) for p in trainer.model.gen_b.parameters()}
    assert shared and len(ids) == len(per_domain) - len(shared)


def test_validation_images_are_displayable_rows():
    trainer = make_trainer(channels_a=1)
    x_a = torch.rand(2, 1, 16, 16) * 2 - 1
    x_b = torch.rand(2, 3, 16, 16) * 2 - 1
    grid = trainer.validation_images((x_a, x_b))
    assert grid.shape == (8, 3, 16, 16)
    assert grid.min() >= -1 and grid.max() <= 1
    assert trainer.model.training


def test_reconstruction_loss_decreases(tmp_path):
    losses = []
    loop = make_loop(tmp_path, 60)
    loop.on_progress = lambda iteration, values: losses.append(values["image"])
    assert loop.run()
    assert sum(losses[-10:]) / 10 < 0.75 * sum(losses[:10]) / 10
    assert (tmp_path / "log.jsonl").read_text().count("\n") == 60


def test_resume_continues_bit_for_bit(tmp_path):
    straight = make_loop(tmp_path / "straight", 6)
    straight.run()
    make_loop(tmp_path / "resumed", 3).run()
    resumed = make_loop(tmp_path / "resumed", 6, seed=123)  # other init: resume must overwrite it
    assert resumed.resume() == 3
    resumed.run()
    for name, module in straight.trainer.modules().items():
        other = resumed.trainer.modules()[name].state_dict()
        for key, tensor in module.state_dict().items():
            assert torch.equal(tensor, other[key]), f"{name}.{key} differs after resume"


TINY = """
size = 16
batch = 2
log_every = 1
[model]
dim = 8
n_res = 1
shared_blocks = 1
[training]
dis_dim = 8
"""


def train(*args):
    return main(["train", "unit", "--device", "cpu", "--quiet", *map(str, args)])


def test_cli_train_translate_round_trip_and_resume(tmp_path, rng, capsys):
    for name, offset in (("a", 0), ("b", 128)):
        (tmp_path / name).mkdir()
        for i in range(3):
            pixels = rng.integers(offset, offset + 127, (24, 24, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(tmp_path / name / f"{i}.png")
    config = tmp_path / "tiny.toml"
    config.write_text(TINY)
    a, b, run = tmp_path / "a", tmp_path / "b", tmp_path / "run"
    assert train("--domain-a", a, "--domain-b", b, "--out", run, "--config", config, "--iters", 2) == 0
    model = run / "model.safetensors"
    assert capsys.readouterr().out.strip() == str(model)
    info = read_model_info(model)
    assert info.engine == "unit" and info.trained
    assert info.provenance["training"]["iterations"] == 2
    assert info.config["dim"] == 8 and info.config["shared_blocks"] == 1
    assert main(["translate", str(model), str(a / "0.png"), "-o", str(tmp_path / "out.png"), "--quiet"]) == 0
    assert np.asarray(Image.open(tmp_path / "out.png")).shape == (24, 24, 3)

    assert train("--out", run, "--resume", "--iters", 3) == 0
    assert read_model_info(model).provenance["training"]["iterations"] == 3
    assert [json.loads(line)["iteration"] for line in (run / "log.jsonl").read_text().splitlines()] == [1, 2, 3]


def test_engines_lists_unit_as_trainable(capsys):
    assert main(["engines"]) == 0
    out = capsys.readouterr().out
    block = out[out.index("\nunit:") :].split("\n    from ")[0]
    assert "trainable: yes" in block
