"""Training precision and compilation (trainers.precision): bf16 steps of every engine, fp32 as
before, what a run stores and logs, resume keeping the precision, fp16 refused on the CPU, and a
compiled trainer with unchanged checkpoint keys."""

import json
import math
import warnings

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from napari_i2i.contract.registry import default_registry
from napari_i2i.core.device import DeviceError, resolve_precision, training_compile_pays
from napari_i2i.core.model_file import read_model_info
from napari_i2i.frontends.cli import main
from trainers.precision import TrainingRuntime
from trainers.run import make_settings, read_run_file, train

CPU = torch.device("cpu")
CLASSES = 3
# Tiny networks of each engine's `small` preset (as in each trainer's own tests).
TINY = {
    "munit": ({"dim": 8, "mlp_dim": 16, "n_res": 1}, {"dis_dim": 8}),
    "unit": ({"dim": 8, "n_res": 1, "shared_blocks": 1}, {"dis_dim": 8}),
    "funit": ({"dim": 8, "n_res": 1, "mlp_dim": 16, "class_dim": 8},
              {"dis_dim": 8, "dis_blocks": 4, "num_classes": CLASSES}),
    "step": ({"dim": 8, "n_downsample": 1, "n_res": 1, "style_encoder_dim": 8, "style_downsample": 2, "mapper_dim": 16},
             {"stages": ["generator"], "dis_dim": 8, "dis_layers": 2, "dis_scales": 2,
              "perceptual_layers": ["relu1_1", "relu2_1"], "perceptual_layer_weights": [0.5, 1.0]}),
    "unified": ({"dim": 8, "n_res": 1, "mlp_dim": 16, "style_dim": 8, "latent_dim": 4, "style_downsample": 2,
                 "flow_hidden": 8, "domains": ["a", "b", "c"]},
                {"dis_dim": 8, "dis_blocks": 4, "style_dis_dim": 8}),
}


@pytest.fixture(autouse=True)
def empty_hub(tmp_path, monkeypatch):
    """No VGG16 in the torch cache (StEP then uses a random one): the machine's own must not count."""
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "empty_hub"))


class Pairs:
    """StEP's training set, which it draws images from itself."""

    def __init__(self, size=16):
        generator = torch.Generator().manual_seed(1)
        self.items = [(torch.rand(3, size, size, generator=generator) * 2 - 1,) * 2 for _ in range(8)]

    def __len__(self):
        return len(self.items)

    def __getitem__(self, index):
        return self.items[index % len(self.items)]


def make_trainer(engine, runtime=None, seed=0):
    registry = default_registry()
    model, training = TINY[engine]
    networks, spec = registry.get(engine), registry.trainer(engine)
    torch.manual_seed(seed)
    built = networks.build(networks.config("small", **model))
    with warnings.catch_warnings():  # StEP's random VGG16
        warnings.simplefilter("ignore", UserWarning)
        trainer = spec.build(built, {**spec.presets["small"], **training}, CPU, runtime=runtime)
    if engine == "step":
        trainer.attach_dataset(Pairs())
    return trainer


def make_batch(engine, seed, size=16, batch=2):
    generator = torch.Generator().manual_seed(seed)
    x, y = (torch.rand(batch, 3, size, size, generator=generator) * 2 - 1 for _ in range(2))
    if engine in ("funit", "unified"):
        labels = [torch.randint(0, CLASSES, (batch,), generator=generator) for _ in range(2)]
        return (x, labels[0]), (y, labels[1])
    return x, y


def convolution_dtypes(trainer):
    """The output dtypes of every convolution a step runs, with a hook on each."""
    seen = set()
    for module in trainer.modules().values():
        for layer in module.modules():
            if isinstance(layer, nn.Conv2d):
                layer.register_forward_hook(lambda _, __, output: seen.add(output.dtype))
    return seen


@pytest.mark.parametrize("engine", sorted(TINY))
def test_bf16_steps_run_in_bf16_with_finite_losses(engine):
    trainer = make_trainer(engine, TrainingRuntime(CPU, "bf16"))
    dtypes = convolution_dtypes(trainer)
    for iteration in range(2):
        losses = trainer.step(make_batch(engine, iteration), iteration)
        assert all(math.isfinite(value) for value in losses.values()), losses
    assert dtypes == {torch.bfloat16}
    assert not trainer.scaler.is_enabled()  # no loss scaling for bf16
    parameters = [p for module in trainer.modules().values() for p in module.parameters()]
    assert {p.dtype for p in parameters} == {torch.float32}  # weights (and Adam's states) stay fp32


@pytest.mark.parametrize("engine", ["munit", "funit"])
def test_fp32_is_the_plain_float32_step(engine):
    """fp32 runs no autocast: bit for bit the step without a runtime (today's CPU step)."""
    results = []
    for runtime in (None, TrainingRuntime(CPU, "fp32")):
        trainer = make_trainer(engine, runtime)
        dtypes = convolution_dtypes(trainer)
        losses = [trainer.step(make_batch(engine, i), i) for i in range(2)]
        results.append((losses, [p.detach().clone() for p in trainer.model.parameters()]))
        assert dtypes == {torch.float32}
    (losses_a, weights_a), (losses_b, weights_b) = results
    assert losses_a == losses_b
    assert all(torch.equal(a, b) for a, b in zip(weights_a, weights_b))


def test_resolve_and_loss_scaling_only_for_fp16():
    assert TrainingRuntime.resolve("auto", "auto", CPU, 10**6) == TrainingRuntime(
        CPU, resolve_precision("auto", CPU), compile=False)  # never compiled on the CPU by auto
    assert TrainingRuntime.resolve("bf16", "on", CPU, 1) == TrainingRuntime(CPU, "bf16", compile=True)
    with pytest.raises(DeviceError, match="^precision fp16 runs only on a GPU"):
        TrainingRuntime.resolve("fp16", "off", CPU, 1)
    assert not TrainingRuntime(CPU, "bf16").grad_scaler().is_enabled()
    assert not TrainingRuntime(CPU, "fp32").grad_scaler().is_enabled()
    with warnings.catch_warnings():  # torch: CUDA asked for but absent here, scaler disabled
        warnings.simplefilter("ignore", UserWarning)
        assert TrainingRuntime(torch.device("cuda"), "fp16").grad_scaler()._enabled == torch.cuda.is_available()
    assert training_compile_pays("auto", torch.device("cuda"), 2_000)
    assert not training_compile_pays("auto", torch.device("cuda"), 100)
    assert not training_compile_pays("auto", CPU, 10**9)
    with pytest.raises(DeviceError, match="unknown compile choice"):
        training_compile_pays("sometimes", CPU, 1)


def image_folders(tmp_path):
    rng = np.random.default_rng(0)
    for name in ("a", "b"):
        folder = tmp_path / name
        folder.mkdir()
        for i in range(3):
            Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    return tmp_path / "a", tmp_path / "b"


def munit_settings(tmp_path, **loop):
    domain_a, domain_b = image_folders(tmp_path)
    model, training = TINY["munit"]
    return make_settings("munit", "small", {"domain_a": domain_a, "domain_b": domain_b},
                         config={"model": model, "training": training},
                         overrides={"size": 16, "batch": 2, "iterations": 1, "log_every": 1, **loop})


def trained_with(run_dir):
    training = read_model_info(run_dir / "model.safetensors").provenance["training"]
    return training["precision"], training["compiled"], training["iterations"]


def test_a_run_stores_what_auto_chose_and_a_resume_keeps_it(tmp_path):
    run_dir = tmp_path / "run"
    assert train(run_dir, munit_settings(tmp_path)) is not None
    chosen = resolve_precision("auto", CPU)
    assert read_run_file(run_dir / "run.json").precision == chosen
    assert trained_with(run_dir) == (chosen, False, 1)
    assert train(run_dir, resume=True, iterations=2) is not None
    assert trained_with(run_dir) == (chosen, False, 2)


def test_a_run_written_before_the_setting_resumes_in_fp32(tmp_path):
    run_dir = tmp_path / "run"
    assert train(run_dir, munit_settings(tmp_path, precision="bf16")) is not None
    values = json.loads((run_dir / "run.json").read_text())
    assert values.pop("precision") == "bf16"
    (run_dir / "run.json").write_text(json.dumps(values))
    assert trained_with(run_dir) == ("bf16", False, 1)
    assert train(run_dir, resume=True, iterations=2) is not None
    assert trained_with(run_dir) == ("fp32", False, 2)


def test_bad_choices_and_fp16_on_the_cpu_are_one_line_errors(tmp_path, capsys):
    with pytest.raises(ValueError, match="^unknown precision 'fp8'"):
        munit_settings(tmp_path, precision="fp8")
    domain_a, domain_b = tmp_path / "a", tmp_path / "b"
    status = main(["train", "munit", "--out", str(tmp_path / "run"), "--domain-a", str(domain_a),
                   "--domain-b", str(domain_b), "--size", "16", "--iters", "1", "--device", "cpu",
                   "--precision", "fp16", "--quiet"])
    error = capsys.readouterr().err
    assert status == 2
    assert error.strip() == ("napari-i2i: error: precision fp16 runs only on a GPU; on the CPU use bf16 or fp32")
    status = main(["train", "munit", "--out", str(tmp_path / "run"), "--resume", "--precision", "bf16"])
    assert status == 2
    assert "--precision cannot change a run being resumed" in capsys.readouterr().err


def test_compiled_trainer_keeps_its_checkpoint_keys():
    """compile on: every network the step calls is compiled in place, so parameters, state_dict keys
    and the losses are those of the eager trainer. Inductor's code generation takes minutes on a CPU,
    so dynamo captures the graphs and runs them without it (benchmarks/train_step.py runs inductor)."""
    pytest.importorskip("torch._dynamo")
    eager = make_trainer("unit")
    compiled = make_trainer("unit", TrainingRuntime(CPU, "fp32", compile=True, backend="eager"))
    compiled_calls = [m for m in compiled.model.modules() if getattr(m, "_compiled_call_impl", None)]
    assert compiled_calls and all(m._compiled_call_impl is not None for m in (compiled.dis_a, compiled.dis_b))
    for name, module in eager.modules().items():
        assert list(compiled.modules()[name].state_dict()) == list(module.state_dict())
    batch = make_batch("unit", 0)
    losses = []
    for trainer in (eager, compiled):
        torch.manual_seed(1)  # the same latent noise
        losses.append(trainer.step(batch, 0))
    eager_losses, compiled_losses = losses
    assert compiled_losses.keys() == eager_losses.keys()
    for name, value in eager_losses.items():
        assert compiled_losses[name] == pytest.approx(value, rel=1e-4, abs=1e-5), name


@pytest.mark.parametrize("cycle_weight, decodes", [(10.0, 3), (0.0, 2)])
def test_a_munit_step_computes_no_forward_twice(cycle_weight, decodes):
    """Per domain: the encoders see the input and the translation into it once each, the decoder
    makes the translation, the reconstruction (and the cycle), and the discriminator judges the real
    image with the detached translation (one batched pass) and, updated, the translation again —
    nothing is recomputed."""
    registry = default_registry()
    networks, spec = registry.get("munit"), registry.trainer("munit")
    torch.manual_seed(0)
    built = networks.build(networks.config("small", **TINY["munit"][0]))
    # the published terms only (the identity term adds passes of its own: test_identity_term.py)
    trainer = spec.build(built, {**spec.presets["small"], "dis_dim": 8, "cycle_weight": cycle_weight,
                                 "identity_weight": 0}, CPU)
    calls = {}
    watched = {f"{part}_{d}": getattr(getattr(built, f"gen_{d}"), part) for d in "ab"
               for part in ("content_encoder", "style_encoder", "decoder")}
    watched.update(dis_a=trainer.dis_a, dis_b=trainer.dis_b)
    for name, module in watched.items():
        module.register_forward_hook(lambda *_, name=name: calls.__setitem__(name, calls.get(name, 0) + 1))
    trainer.step(make_batch("munit", 0), 0)
    assert calls == {**{f"{part}_{d}": 2 for d in "ab" for part in ("content_encoder", "style_encoder")},
                     "decoder_a": decodes, "decoder_b": decodes, "dis_a": 2, "dis_b": 2}


def test_the_train_widgets_precision_reaches_a_new_run_only(tmp_path):
    from napari_i2i.frontends.train_job import TrainRequest, train_command

    kind = default_registry().data_kind("unpaired")
    request = TrainRequest(engine="munit", data=kind, run_dir=tmp_path / "run", iterations=5, precision="bf16")
    folders = {role.key: tmp_path / role.key for role in kind.layer_roles()}
    command = train_command(request, folders)
    assert command[command.index("--precision") + 1] == "bf16"
    resumed = TrainRequest(engine="munit", data=kind, run_dir=tmp_path / "run", iterations=5, precision="bf16",
                           resume=True)
    assert "--precision" not in train_command(resumed, None)  # a resumed run keeps its own


def test_real_and_fake_in_one_discriminator_pass_are_the_separate_passes():
    from trainers.discriminators import MultiScaleDiscriminator
    from trainers.two_domain import real_and_fake

    torch.manual_seed(0)
    discriminator = MultiScaleDiscriminator(3, 8, 3, 2)
    real, fake = torch.rand(2, 3, 32, 32), torch.rand(3, 3, 32, 32)
    together = real_and_fake(discriminator, real, fake)
    for batched, alone in zip(together, (discriminator(real), discriminator(fake))):
        assert len(batched) == 2
        for b, a in zip(batched, alone):
            torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-6)
