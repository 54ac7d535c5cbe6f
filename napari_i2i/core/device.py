"""Device choice and the matching autocast, in one place for every front end."""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext

import torch

from napari_i2i.core.constants import DEVICE_CHOICES  # noqa: F401 (re-exported)
from napari_i2i.core.errors import DeviceError  # noqa: F401 (re-exported)


def _mps_available() -> bool:
    return bool(getattr(torch.backends, "mps", None)) and torch.backends.mps.is_available()


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` picks CUDA, then MPS, then the CPU; ``cuda:1`` picks a GPU by index."""
    name = name.strip().lower()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise DeviceError(
            f"unknown device {name!r}; use one of {', '.join(DEVICE_CHOICES)} or cuda:N"
        ) from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError("device 'cuda' was asked for, but this torch sees no CUDA GPU")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise DeviceError(
                f"device {name!r} was asked for, but only {torch.cuda.device_count()} GPU(s) exist"
            )
    elif device.type == "mps" and not _mps_available():
        raise DeviceError("device 'mps' was asked for, but Apple MPS is not available here")
    elif device.type not in ("cpu", "cuda", "mps"):
        raise DeviceError(f"device type {device.type!r} is not supported")
    return device


def autocast_dtype(device: torch.device) -> torch.dtype | None:
    """bf16 where the GPU has it, else fp16; ``None`` (fp32) on the CPU."""
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device.type == "mps":
        return torch.float16
    return None


def autocast(device: torch.device) -> AbstractContextManager[object]:
    dtype = autocast_dtype(device)
    if dtype is None:
        return nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)
