"""The exponential moving average of a generator, the network FUNIT and the unified engine save."""

from __future__ import annotations

import torch
from torch import nn


def ema_beta(beta: float, warmup: bool, iteration: int) -> float:
    """The average's decay at *iteration*; with *warmup*, ``min(beta, (1 + t) / (10 + t))`` so the
    average follows early training instead of holding on to the random initial weights."""
    return min(beta, (1 + iteration) / (10 + iteration)) if warmup else beta


@torch.no_grad()
def update_average(average: nn.Module, current: nn.Module, beta: float) -> None:
    """``average ← β·average + (1 − β)·current`` for every parameter; buffers are copied."""
    weight = 1 - beta
    for kept, new in zip(average.parameters(), current.parameters()):
        kept.lerp_(new, weight)
    for kept, new in zip(average.buffers(), current.buffers()):
        kept.copy_(new)
