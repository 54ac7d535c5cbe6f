"""The shared training loop: learning, exact resume, atomic checkpoints, Ctrl-C."""

import json
import os
import signal

import pytest
import torch

from napari_i2i.contract.registry import default_registry
from trainers import loop as loop_module
from trainers.loop import LoopConfig, TrainLoop

# Tiny networks per trainable engine, so loop mechanics run in seconds.
TINY_MODELS = {"munit": dict(dim=8, mlp_dim=16, n_res=1), "unit": dict(dim=8, n_res=1, shared_blocks=1)}
both_trainers = pytest.mark.parametrize("engine", sorted(TINY_MODELS))


def stripe_batches(start):
    """Domain a: vertical stripes, domain b: horizontal stripes, random phase (trivially learnable)."""
    rows, cols = torch.meshgrid(torch.arange(16.0), torch.arange(16.0), indexing="ij")
    iteration = start
    while True:
        phase = torch.rand(2, 1, 1, 1, generator=torch.Generator().manual_seed(iteration)) * 6
        a = (0.8 * torch.sin(cols / 2 + phase)).expand(2, 3, 16, 16).clone()
        b = (0.8 * torch.sin(rows / 2 + phase)).expand(2, 3, 16, 16).clone()
        yield a, b
        iteration += 1


def make_loop(run_dir, iterations, seed=0, engine="munit", **config):
    registry = default_registry()
    torch.manual_seed(seed)
    networks = registry.get(engine)
    model = networks.build(networks.config("small", **TINY_MODELS[engine]))
    spec = registry.trainer(engine)
    trainer = spec.build(model, dict(spec.presets["small"], dis_dim=8), torch.device("cpu"))
    settings = dict(iterations=iterations, checkpoint_every=1000, log_every=1, validate_every=1000)
    settings.update(config)
    return TrainLoop(trainer, stripe_batches, LoopConfig(**settings), run_dir,
                     validation_batch=next(stripe_batches(0)))


@both_trainers
def test_reconstruction_loss_decreases(tmp_path, engine):
    losses = []
    loop = make_loop(tmp_path, 60, engine=engine)
    loop.on_progress = lambda iteration, values: losses.append(values["image"])
    assert loop.run()
    assert sum(losses[-10:]) / 10 < 0.75 * sum(losses[:10]) / 10
    lines = (tmp_path / "log.jsonl").read_text().splitlines()
    assert sum('"event"' not in line for line in lines) == 60  # a loss line per iteration, besides the run score's


def test_a_log_line_is_each_terms_mean_since_the_last(tmp_path):
    """A term that only some steps report (unified's diversity) is averaged over those steps."""
    loop = make_loop(tmp_path, 6, log_every=3)
    steps = iter([{"gen": 1.0, "diversity": 4.0}, {"gen": 2.0}, {"gen": 6.0, "diversity": 8.0},
                  {"gen": 1.0}, {"gen": 1.0}, {"gen": 4.0}])
    loop.trainer.step = lambda batch, iteration: next(steps)
    progress = []
    loop.on_progress = lambda iteration, losses: progress.append(losses["gen"])
    assert loop.run()
    lines = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    losses = [{k: v for k, v in line.items() if k not in ("iteration", "seconds")}
              for line in lines if "event" not in line]
    assert [line["iteration"] for line in lines if "event" not in line] == [3, 6]
    assert losses == [{"gen": 3.0, "diversity": 6.0}, {"gen": 2.0}]
    assert progress == [1.0, 2.0, 6.0, 1.0, 1.0, 4.0]  # progress gets every step as it is


@both_trainers
def test_resume_continues_bit_for_bit(tmp_path, engine):
    straight = make_loop(tmp_path / "straight", 6, engine=engine)
    straight.run()
    make_loop(tmp_path / "resumed", 3, engine=engine).run()
    resumed = make_loop(tmp_path / "resumed", 6, seed=123, engine=engine)  # other init: resume must overwrite it
    assert resumed.resume() == 3
    resumed.run()
    for name, module in straight.trainer.modules().items():
        other = resumed.trainer.modules()[name].state_dict()
        for key, tensor in module.state_dict().items():
            assert torch.equal(tensor, other[key]), f"{name}.{key} differs after resume"


def test_checkpoint_writes_are_atomic(tmp_path, monkeypatch):
    loop = make_loop(tmp_path, 2)
    loop.run()
    before = loop.checkpoint_path.read_bytes()

    def interrupted_save(payload, path):
        with open(path, "wb") as f:
            f.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(loop_module.torch, "save", interrupted_save)
    with pytest.raises(OSError, match="disk full"):
        loop.save_checkpoint()
    assert loop.checkpoint_path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir() if p.suffix == ".tmp"] == []


def test_ctrl_c_saves_and_stops_cleanly(tmp_path):
    loop = make_loop(tmp_path, 50, validate_every=2)

    def interrupt(iteration, _):
        if iteration == 3:
            os.kill(os.getpid(), signal.SIGINT)

    loop.on_progress = interrupt
    assert loop.run() is False
    assert loop.iteration == 3
    state = torch.load(loop.checkpoint_path, weights_only=True)
    assert state["iteration"] == 3
    assert sorted(p.name for p in (tmp_path / "validation").iterdir()) == ["00000002.png"]


def test_resume_without_checkpoint_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        make_loop(tmp_path, 2).resume()
