"""What engines with a style code share about it."""

from __future__ import annotations

import torch

from napari_i2i.contract.engine_api import EngineError


def interpolate_codes(first: torch.Tensor, second: torch.Tensor, steps: int) -> torch.Tensor:
    """``(steps, D)``: ``(1 − t)·first + t·second`` for ``t = 0, 1/(steps−1), …, 1``.

    Written so that the first row is exactly ``first``, the last exactly
    ``second`` and, for an odd number of steps, the middle one exactly
    their mean.
    """
    if steps < 2:
        raise EngineError(f"style interpolation needs at least 2 steps, got {steps}")
    t = torch.linspace(0, 1, steps, dtype=torch.float32, device=first.device)[:, None]
    t[-1] = 1.0
    if steps % 2:
        t[steps // 2] = 0.5
    return (1 - t) * first.reshape(1, -1).float() + t * second.reshape(1, -1).float()
