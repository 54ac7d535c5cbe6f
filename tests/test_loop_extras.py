"""Training-loop extras: TensorBoard logs when tensorboard is installed (JSON lines
only otherwise), and the fp16 gradient scaler, checkpointed for exact resume."""

import sys
import types
from typing import ClassVar

import pytest
import torch
from test_training_loop import make_loop



class FakeWriter:
    """Records what the loop sends to torch.utils.tensorboard.SummaryWriter."""

    instances: ClassVar[list["FakeWriter"]] = []

    def __init__(self, log_dir, purge_step=None):
        self.log_dir, self.purge_step = log_dir, purge_step
        self.scalars, self.images, self.texts = [], [], []
        self.closed = False
        FakeWriter.instances.append(self)

    def add_scalar(self, tag, value, step):
        self.scalars.append((tag, value, step))

    def add_image(self, tag, image, step):
        self.images.append((tag, image, step))

    def add_text(self, tag, text, step):
        self.texts.append((tag, text, step))

    def flush(self):
        pass

    def close(self):
        self.closed = True


@pytest.fixture
def fake_tensorboard(monkeypatch):
    module = types.ModuleType("torch.utils.tensorboard")
    module.SummaryWriter = FakeWriter
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", module)
    FakeWriter.instances = []
    return FakeWriter.instances


def test_tensorboard_gets_scalars_and_validation_images(tmp_path, fake_tensorboard):
    loop = make_loop(tmp_path, 4, validate_every=2)
    loop.trainer.events = lambda: [{"event": "note", "text": "hello"}]
    assert loop.run()
    (writer,) = fake_tensorboard
    assert writer.log_dir == str(tmp_path / "tensorboard") and writer.purge_step is None
    assert writer.closed and loop.writer is None
    assert [step for tag, _, step in writer.scalars if tag == "loss/image"] == [1, 2, 3, 4]
    assert {tag for tag, _, _ in writer.scalars} >= {"loss/gen", "loss/dis", "loss/gan", "lr/generator",
                                                      "lr/discriminator"}
    assert [(tag, step) for tag, _, step in writer.images] == [("validation", 2), ("validation", 4)]
    image = writer.images[0][1]
    assert image.ndim == 3 and image.shape[0] == 3 and 0 <= image.min() and image.max() <= 1
    assert writer.texts == [("events", '{"event": "note", "text": "hello"}', 0)]
    assert len(loss_and_event_lines(tmp_path)) == 5  # the JSON lines are still written
    assert [step for tag, _, step in writer.scalars if tag == "run_score/run_score"] == [2, 4]

    resumed = make_loop(tmp_path, 6)
    resumed.resume()
    resumed.run()
    assert fake_tensorboard[1].purge_step == 4  # what came after the checkpoint is dropped
    assert [step for tag, _, step in fake_tensorboard[1].scalars if tag == "loss/image"] == [5, 6]


def test_without_tensorboard_only_json_lines(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import raises ImportError
    loop = make_loop(tmp_path, 2, validate_every=1)
    assert loop.run()
    assert not (tmp_path / "tensorboard").exists()
    assert len(loss_and_event_lines(tmp_path)) == 2
    assert len(list((tmp_path / "validation").iterdir())) == 2


def loss_and_event_lines(run_dir):
    """The log's lines less the run score's (trainers.run_score; tested in test_run_score.py)."""
    return [line for line in (run_dir / "log.jsonl").read_text().splitlines()
            if '"event": "run_score"' not in line and '"event": "content_lost"' not in line]


def test_real_tensorboard_event_files(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    make_loop(tmp_path, 3, validate_every=3).run()
    events = EventAccumulator(str(tmp_path / "tensorboard")).Reload()
    assert [event.step for event in events.Scalars("loss/image")] == [1, 2, 3]
    assert [event.step for event in events.Images("validation")] == [3]


def test_disabled_scaler_is_checkpointed_as_empty(tmp_path):
    loop = make_loop(tmp_path, 1)
    loop.run()
    assert torch.load(loop.checkpoint_path, weights_only=True)["scalers"] == {"grad": {}}


def scaled(loop, init_scale=2.0**10):
    """An enabled scaler on the CPU: scale growth every 2 steps, so its state changes."""
    loop.trainer.scaler = torch.amp.GradScaler("cpu", init_scale=init_scale, growth_interval=2)
    return loop


def test_scaler_state_resumes_exactly_and_scaling_changes_nothing_in_fp32(tmp_path):
    straight = scaled(make_loop(tmp_path / "straight", 6))
    straight.run()
    assert straight.trainer.scaler.get_scale() == 2.0**13  # grew 3 times: no step was skipped

    scaled(make_loop(tmp_path / "resumed", 3)).run()
    assert torch.load(tmp_path / "resumed" / "checkpoint.pt", weights_only=True)["scalers"]["grad"]["scale"] == 2.0**11
    resumed = scaled(make_loop(tmp_path / "resumed", 6, seed=123), init_scale=1.0)
    assert resumed.resume() == 3
    assert resumed.trainer.scaler.get_scale() == 2.0**11
    resumed.run()
    assert resumed.trainer.scaler.state_dict() == straight.trainer.scaler.state_dict()

    plain = make_loop(tmp_path / "plain", 6)  # the default, disabled scaler
    plain.run()
    for name, module in straight.trainer.modules().items():
        for key, tensor in module.state_dict().items():
            assert torch.equal(tensor, resumed.trainer.modules()[name].state_dict()[key]), f"{name}.{key}"
            # power-of-two loss scaling, unscaled before Adam: the same fp32 result bit for bit
            assert torch.equal(tensor, plain.trainer.modules()[name].state_dict()[key]), f"{name}.{key}"


def test_checkpoint_from_a_disabled_scaler_leaves_an_enabled_one_fresh(tmp_path):
    make_loop(tmp_path, 1).run()
    loop = scaled(make_loop(tmp_path, 2), init_scale=2.0**5)
    loop.resume()
    assert loop.trainer.scaler.get_scale() == 2.0**5
