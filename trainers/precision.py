"""How a training run's steps execute: arithmetic (fp32, bf16 or fp16 autocast) and compilation.

Every trainer takes one :class:`TrainingRuntime` and gets its autocast, its gradient scaler and
its compiled networks from it (``trainers.run`` also has it fuse the optimisers' updates), so
the five trainers cannot drift apart. ``trainers.run`` builds it
from the run's ``precision`` and ``compile`` settings (see ``docs/training.md``).

Compiling that fails (at a network's first call: no C++ compiler, an inductor error) turns
compilation off for the whole run: the failing call is repeated eagerly, so the step is the
eager step, one :class:`~napari_i2i.core.compile_fallback.CompileFallbackWarning` says why, and
a ``compile_failed`` event goes to the run's log and the model file's provenance.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from napari_i2i.core.compile_fallback import CompileFallbackWarning, compile_with_fallback
from napari_i2i.core.device import (
    precision_autocast,
    prepare_compile_cache,
    resolve_precision,
    training_compile_pays,
)


@dataclass(frozen=True)
class TrainingRuntime:
    """A resolved ``precision`` (``fp32``, ``bf16`` or ``fp16``) and whether to compile.

    Parameters, optimiser states and loss terms stay float32 whatever the precision: autocast
    runs the convolutions and matrix products (and the activations between them) in the lower one.
    """

    device: torch.device
    precision: str = "fp32"
    compile: bool = False
    backend: str | Callable[..., Any] | None = None  # torch.compile's; None: compile_fallback.COMPILE_BACKEND
    _compiled: list[nn.Module] = field(default_factory=list, init=False, repr=False, compare=False)
    _failure: list[str] = field(default_factory=list, init=False, repr=False, compare=False)
    _listeners: list[Callable[[dict[str, Any]], None]] = field(
        default_factory=list, init=False, repr=False, compare=False)

    @classmethod
    def resolve(cls, precision: str, compile: str, device: torch.device, iterations: int) -> TrainingRuntime:
        """From the settings' choices: ``auto`` precision as :func:`resolve_precision` says (fp16 on
        a CPU is a one-line error), ``auto`` compile as :func:`training_compile_pays` says."""
        return cls(device, resolve_precision(precision, device), training_compile_pays(compile, device, iterations))

    def autocast(self) -> AbstractContextManager[object]:
        """Autocast to the precision; fp32: none (bit for bit the plain float32 step)."""
        return precision_autocast(self.precision, self.device)

    def grad_scaler(self) -> torch.amp.GradScaler:
        """Loss scaling for fp16 only (its gradients underflow); a pass-through for bf16 and fp32."""
        return torch.amp.GradScaler(self.device.type, enabled=self.precision == "fp16")

    def compile_networks(self, *networks: nn.Module) -> None:
        """With ``compile``: compile, in place, every submodule the networks call through ``forward``.

        In place (as ``nn.Module.compile``), so parameters, ``state_dict`` keys (checkpoints, model
        files), moving averages and gradient hooks see the very same modules. A network without a
        ``forward`` of its own (a container of per-domain generators) has its children compiled.
        """
        if not self.compile or self.compile_failure is not None:
            return
        prepare_compile_cache()
        seen: set[int] = set()
        for network in networks:
            self._compile_callables(network, seen)

    def fuse_optimizer_steps(self, optimizers: Iterable[torch.optim.Optimizer]) -> None:
        """Each optimiser's update as one fused kernel over all its parameters (torch's
        ``fused=True``), where torch has one for the optimiser (Adam, AdamW, SGD) and the device.

        The same arithmetic as the per-parameter loop torch uses otherwise on the CPU, in one pass
        over the weights and their moments instead of about ten: on the CPU that loop took about
        a fifth of an eager bf16 `paper` MUNIT step at 64² (docs/benchmarks.md). Call it after
        loading a checkpoint too: a checkpoint's optimiser settings replace the current ones.
        """
        from torch.utils._foreach_utils import _get_fused_kernels_supported_devices

        if self.device.type not in _get_fused_kernels_supported_devices():
            return
        for optimizer in optimizers:
            if "fused" not in optimizer.defaults:  # e.g. RMSprop
                continue
            for group in optimizer.param_groups:
                if not group.get("differentiable") and all(p.is_floating_point() for p in group["params"]):
                    group["fused"], group["foreach"] = True, False
            for parameter, state in optimizer.state.items():  # fused steps count on the parameter's device
                if isinstance(state.get("step"), torch.Tensor):
                    state["step"] = state["step"].to(parameter.device)

    @property
    def compile_failure(self) -> str | None:
        """Why compiling failed in this run (one line), or None."""
        return self._failure[0] if self._failure else None

    def report_to(self, listener: Callable[[dict[str, Any]], None]) -> None:
        """Have *listener* get the runtime's events (``{"event": "compile_failed", "reason": ...}``),
        e.g. the training loop, which logs them."""
        self._listeners.append(listener)

    def record(self) -> dict[str, object]:
        """For the run log and the model file's provenance: ``compiled`` is whether the networks
        ran compiled; a run whose compile failed also has ``compile_failed`` (the reason)."""
        failure = self.compile_failure
        return {"precision": self.precision, "compiled": self.compile and failure is None,
                **({"compile_failed": failure} if failure is not None else {})}

    def _compile_callables(self, module: nn.Module, seen: set[int]) -> None:
        if id(module) in seen:  # a block tied across domains: compiled once
            return
        seen.add(id(module))
        if type(module).forward is nn.Module.forward:  # ModuleList, ModuleDict: no forward
            for child in module.children():
                self._compile_callables(child, seen)
            return

        # what nn.Module.__call__ runs, as after nn.Module.compile; the failing call itself is repeated eagerly
        module._compiled_call_impl = compile_with_fallback(module._call_impl, self._fall_back, self.backend)
        self._compiled.append(module)

    def _fall_back(self, reason: str) -> None:
        """The first failure: every network eager from now on (the usual causes, a missing C++
        compiler or an inductor bug, hit all alike), said once."""
        if self._failure:
            return
        self._failure.append(reason)
        for module in self._compiled:
            module._compiled_call_impl = None  # plain nn.Module calls
        warnings.warn(f"compiling the networks failed ({reason}); training continues uncompiled",
                      CompileFallbackWarning, stacklevel=2)
        for listener in self._listeners:
            listener({"event": "compile_failed", "reason": reason})
