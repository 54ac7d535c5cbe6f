"""Compiling that fails falls back to eager (napari_i2i.core.compile_fallback), in training
(trainers.precision) and inference (core.stages.CompiledStages): the failing call is repeated
eagerly with the eager result, one warning says why, training logs a ``compile_failed`` event.

No real compile: a backend that raises stands in for inductor (dynamo still traces, which is quick
for these tiny networks); the backward case uses AOTAutograd without code generation."""

import json
import warnings

import numpy as np
import pytest
import torch
from conftest import tiny_munit_settings, tiny_munit_trainer
from torch import nn

import napari_i2i.core.compile_fallback as compile_fallback
from napari_i2i.core.compile_fallback import CompileFallbackWarning, compile_failures, failure_reason
from napari_i2i.core.layer_data import ImageData
from napari_i2i.core.model_file import read_model_info
from napari_i2i.core.translate import TranslateOptions, run_to_completion, run_translation
from trainers.precision import TrainingRuntime
from trainers.run import train

CPU = torch.device("cpu")
REASON = "RuntimeError: no C++ compiler here (test)"


class FailingBackend:
    """A torch.compile backend that fails as inductor does without a C++ compiler, counting calls."""

    def __init__(self):
        self.calls = 0

    def __call__(self, graph, example_inputs):
        self.calls += 1
        raise RuntimeError("no C++ compiler here (test)\nsecond line")


def backward_failing_backend():
    """AOTAutograd with the forward graph run as traced and a backward compiler that fails."""
    from functorch.compile import make_boxed_func
    from torch._dynamo.backends.common import aot_autograd

    def fail(graph, example_inputs):
        raise RuntimeError("no C++ compiler here (test)")

    return aot_autograd(fw_compiler=lambda graph, example_inputs: make_boxed_func(graph.forward), bw_compiler=fail)


def small_network(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 3, 1))


def steps(trainer, count=2):
    """Losses and final weights of *count* steps on fixed batches, the latent noise seeded alike."""
    losses = []
    for iteration in range(count):
        generator = torch.Generator().manual_seed(iteration)
        batch = tuple(torch.rand(2, 3, 16, 16, generator=generator) * 2 - 1 for _ in range(2))
        torch.manual_seed(100 + iteration)
        losses.append(trainer.step(batch, iteration))
    weights = [p.detach().clone() for module in trainer.modules().values() for p in module.parameters()]
    return losses, weights


def test_a_failing_compile_gives_the_eager_training_step_one_warning_and_an_event():
    backend = FailingBackend()
    runtime = TrainingRuntime(CPU, "fp32", compile=True, backend=backend)
    events = []
    runtime.report_to(events.append)
    compiled = tiny_munit_trainer(runtime)
    assert compiled.dis_a._compiled_call_impl is not None  # compiled, lazily: nothing failed yet
    with pytest.warns(CompileFallbackWarning) as warned:
        compiled_losses, compiled_weights = steps(compiled)
    eager_losses, eager_weights = steps(tiny_munit_trainer())
    assert compiled_losses == eager_losses  # exactly the eager step, the failing call included
    assert all(torch.equal(a, b) for a, b in zip(compiled_weights, eager_weights))
    assert len(warned) == 1 and REASON in str(warned[0].message)
    assert events == [{"event": "compile_failed", "reason": REASON}]
    assert backend.calls == 1  # the first failure turned every network eager: none tried again
    assert all(m._compiled_call_impl is None for module in compiled.modules().values() for m in module.modules())
    assert runtime.record() == {"precision": "fp32", "compiled": False, "compile_failed": REASON}


def test_a_backward_that_fails_to_compile_is_caught_at_the_forward():
    """Inductor compiles backward graphs at the first backward by default; the runtime has them
    compiled with the forward, where the failing call can still be repeated eagerly."""
    runtime = TrainingRuntime(CPU, "fp32", compile=True, backend=backward_failing_backend())
    compiled, eager = small_network(), small_network()
    runtime.compile_networks(compiled)
    image = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    with pytest.warns(CompileFallbackWarning):
        output = compiled(image)
    assert runtime.compile_failure == REASON  # before any backward
    output.square().mean().backward()
    eager(image).square().mean().backward()
    assert all(torch.equal(a.grad, b.grad) for a, b in zip(compiled.parameters(), eager.parameters()))


def test_errors_of_the_computation_are_not_compile_failures():
    runtime = TrainingRuntime(CPU, "fp32", compile=True, backend=FailingBackend())
    network = small_network()
    runtime.compile_networks(network)
    with pytest.raises(Exception, match="channels") as raised:
        network(torch.zeros(1, 5, 8, 8))  # 5 channels for a 3-channel convolution
    assert not isinstance(raised.value, compile_failures())
    assert runtime.compile_failure is None and network._compiled_call_impl is not None


def test_the_reason_is_one_line_from_the_innermost_error():
    import torch._dynamo.exc

    wrapped = torch._dynamo.exc.BackendCompilerFailed(FailingBackend(), RuntimeError("no cc\nmore"), None)
    assert failure_reason(wrapped) == "RuntimeError: no cc"
    assert failure_reason(RuntimeError()) == "RuntimeError"


def test_a_run_whose_compile_fails_logs_it_and_says_so_in_the_model_file(tmp_path, monkeypatch):
    monkeypatch.setattr(compile_fallback, "COMPILE_BACKEND", FailingBackend())
    settings = tiny_munit_settings(tmp_path, iterations=2, log_every=1, precision="fp32", compile="on")
    with pytest.warns(CompileFallbackWarning):
        path = train(tmp_path / "run", settings)
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert {"iteration": 0, "event": "compile_failed", "reason": REASON} in log
    assert [row["iteration"] for row in log if "seconds" in row] == [1, 2]  # the run went on
    training_record = read_model_info(path).provenance["training"]
    assert training_record["compiled"] is False and training_record["compile_failed"] == REASON


def test_a_failing_compile_translates_uncompiled_with_the_eager_result(tiny_model, monkeypatch):
    monkeypatch.setattr(compile_fallback, "COMPILE_BACKEND", FailingBackend())
    image = ImageData(np.random.default_rng(0).integers(0, 256, (48, 40, 3), dtype=np.uint8), "x", rgb=True)

    def translate(compile_choice):
        options = TranslateOptions(direction="a2b", precision="fp32", compile=compile_choice)
        return run_to_completion(run_translation(tiny_model, [image], options))[0]

    with pytest.warns(CompileFallbackWarning, match="compiling the model failed .*no C\\+\\+ compiler"):
        compiled = translate("on")  # asked for explicitly: still a warning, not an error
    with warnings.catch_warnings():
        warnings.simplefilter("error", CompileFallbackWarning)
        eager = translate("off")
    assert compiled.metadata["compiled"] is False
    assert np.array_equal(compiled.data, eager.data)
