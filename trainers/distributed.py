"""Training in several processes (``torchrun``): who this process is, and what ranks agree on.

One process per rank (``torchrun --nproc-per-node N -m napari_i2i train …``, or
``napari-i2i train --nproc N``, which launches that). Every rank builds the same
networks from the seed (then rank 0's weights are broadcast, to be safe), takes
a disjoint part of each global batch (:class:`trainers.datasets.InfiniteSampler`'s
shards) and, after every backward pass, gets the gradients averaged over all ranks
(:class:`GradientAverager`). Rank 0 alone writes files; the stop request and the
time-based checkpoint decision are agreed once an iteration (:meth:`World.agree`).
gloo on the CPU, nccl on CUDA (``cuda:LOCAL_RANK`` for each rank).

Why not ``DistributedDataParallel``: the trainers call sub-networks directly
(``gen_a.encode``, ``dis(...)``) with several backward passes per step, not one
``forward``; DDP wraps a module's ``forward`` and would see none of it. A hook on
every parameter (``register_post_accumulate_grad_hook``) sees every backward,
whoever runs it, so every trainer, a plugin's too, is averaged without code of its own.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from napari_i2i.core.errors import DeviceError
from trainers.run_settings import check_global_batch

BUCKET_BYTES = 32 * 2**20  # gradients all-reduced together, at most this much in one message


@dataclass(frozen=True)
class World:
    """This process's place among the ranks of a run (``rank`` 0 of 1: a single process)."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """Rank 0: the one that writes checkpoints, logs, images and the model file."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1

    def check_batch(self, batch: int) -> None:
        check_global_batch(batch, self.size)

    def device_for(self, device: torch.device) -> torch.device:
        """The device of this rank: ``cuda`` becomes ``cuda:LOCAL_RANK``; an explicit index or MPS
        with several processes is a :class:`DeviceError`."""
        if not self.distributed or device.type == "cpu":
            return device
        if device.type != "cuda":
            raise DeviceError(f"several processes train on the CPU (gloo) or on CUDA GPUs (nccl), not on {device.type}")
        if device.index is not None:
            raise DeviceError(f"--device {device} names one GPU for {self.size} processes; use --device cuda "
                              "(each process takes the GPU of its local rank)")
        if self.local_rank >= torch.cuda.device_count():
            raise DeviceError(f"{self.size} processes on CUDA need a GPU each; this machine has "
                              f"{torch.cuda.device_count()}")
        return torch.device("cuda", self.local_rank)

    def agree(self, stop: bool, main_due: bool, losses: Mapping[str, float]) -> tuple[bool, bool, dict[str, float]]:
        """One all-reduce an iteration: stop if any rank asks to; rank 0's *main_due* (a time-based
        checkpoint) for all; the loss terms averaged over the ranks (the global batch's means)."""
        if not self.distributed:
            return stop, main_due, dict(losses)
        values = torch.tensor([float(stop), float(main_due and self.is_main), *losses.values()],
                              dtype=torch.float64, device=_collective_device())
        dist.all_reduce(values)
        values = values.cpu().tolist()
        averaged = {name: value / self.size for name, value in zip(losses, values[2:])}
        return values[0] > 0, values[1] > 0, averaged

    def gather(self, value: Any) -> list[Any]:
        """*value* of every rank, in rank order (picklable objects: RNG states)."""
        if not self.distributed:
            return [value]
        values: list[Any] = [None] * self.size
        dist.all_gather_object(values, value)
        return values

    def broadcast_modules(self, modules: Iterable[nn.Module]) -> None:
        """Rank 0's parameters and buffers on every rank: all start from the same weights."""
        if not self.distributed:
            return
        with torch.no_grad():
            for module in modules:
                for tensor in module.state_dict(keep_vars=True).values():
                    dist.broadcast(tensor.data, src=0)


def world_from_environment(environ: Mapping[str, str] = os.environ) -> World:
    """The world ``torchrun`` describes in ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK``; one process otherwise."""
    return World(rank=int(environ.get("RANK", 0)), size=int(environ.get("WORLD_SIZE", 1)),
                 local_rank=int(environ.get("LOCAL_RANK", 0)))


def _collective_device() -> torch.device:
    """Where small tensors of a collective live: the GPU for nccl, the CPU for gloo."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


@contextmanager
def process_group(world: World, device: torch.device) -> Iterator[None]:
    """The process group of a distributed run (nccl on CUDA, gloo on the CPU), closed at the end;
    nothing for a single process or a group the caller already made."""
    if not world.distributed or dist.is_initialized():
        yield
        return
    if device.type == "cuda":
        torch.cuda.set_device(device)
        dist.init_process_group("nccl", device_id=device)
    else:
        dist.init_process_group("gloo")
    try:
        yield
    finally:
        dist.destroy_process_group()


class GradientAverager:
    """Averages every gradient over the ranks at the end of each backward pass.

    A post-accumulate hook on each parameter marks it ready and queues one callback at the end
    of the backward pass that runs it; the callback all-reduces the ready gradients in a fixed
    order (the parameters' order here, whatever order autograd took), in buckets of
    :data:`BUCKET_BYTES`. Several backward passes into one gradient before a step are averaged
    right: a gradient already averaged is the same on every rank, so averaging the sum again
    adds only the new part's average. Every rank must run the same backward passes over the same
    parameters (the trainers' graphs do not depend on the data).
    """

    def __init__(self, parameters: Iterable[nn.Parameter], world: World) -> None:
        self.world = world
        self.parameters = list({id(p): p for p in parameters}.values())
        self.ready: set[int] = set()
        self.queued = False
        self.handles = [self._hook(parameter) for parameter in self.parameters]

    def _hook(self, parameter: nn.Parameter) -> Any:
        frozen = not parameter.requires_grad  # frozen now (StEP's encoder in stage 2), trained later
        parameter.requires_grad_(True)  # a hook needs it; it stays on when the flag changes
        handle = parameter.register_post_accumulate_grad_hook(self._mark_ready)
        parameter.requires_grad_(not frozen)
        return handle

    def _mark_ready(self, parameter: torch.Tensor) -> None:
        self.ready.add(id(parameter))
        if not self.queued:
            self.queued = True
            torch.autograd.Variable._execution_engine.queue_callback(self._average)

    def _average(self) -> None:
        ready = [p for p in self.parameters if id(p) in self.ready and p.grad is not None]
        self.ready, self.queued = set(), False
        for bucket in _buckets([p.grad for p in ready]):
            flat = torch.cat([grad.reshape(-1) for grad in bucket])
            dist.all_reduce(flat)
            flat /= self.world.size
            offset = 0
            for grad in bucket:
                grad.copy_(flat[offset:offset + grad.numel()].view_as(grad))
                offset += grad.numel()

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()
        self.handles = []


def _buckets(grads: list[torch.Tensor]) -> Iterator[list[torch.Tensor]]:
    """Consecutive gradients of one device and dtype, up to :data:`BUCKET_BYTES` each."""
    bucket: list[torch.Tensor] = []
    size = 0
    for grad in grads:
        nbytes = grad.numel() * grad.element_size()
        if bucket and (size + nbytes > BUCKET_BYTES or (grad.device, grad.dtype) != (bucket[0].device, bucket[0].dtype)):
            yield bucket
            bucket, size = [], 0
        bucket.append(grad)
        size += nbytes
    if bucket:
        yield bucket


def trained_parameters(modules: Iterable[nn.Module], optimizers: Iterable[torch.optim.Optimizer]) -> list[nn.Parameter]:
    """Every parameter a step may change: the networks' and the optimisers' (each once, in order)."""
    parameters = [p for module in modules for p in module.parameters()]
    parameters += [p for optimizer in optimizers for group in optimizer.param_groups for p in group["params"]]
    return list({id(p): p for p in parameters}.values())
