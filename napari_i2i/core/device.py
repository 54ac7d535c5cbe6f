"""Device choice and the matching autocast, in one place for every front end."""

from __future__ import annotations

import os
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path

import torch

from napari_i2i.core.constants import COMPILE_CHOICES, DEVICE_CHOICES, PRECISION_CHOICES  # noqa: F401 (re-exported)
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


# --- precision and compilation (inference; training through trainers.precision) ---

_DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
# CPU flags (Linux /proc/cpuinfo) of units that run bf16 at more than fp32 speed.
CPU_BF16_FLAGS = ("avx512_bf16", "amx_bf16")


def cpu_flags() -> set[str]:
    """The CPU's feature flags where the OS lists them (Linux), else an empty set."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as info:
            for line in info:
                if line.startswith("flags"):
                    return set(line.partition(":")[2].split())
    except OSError:
        pass
    return set()


def cpu_has_fast_bf16() -> bool:
    """AVX512-BF16 or AMX: in the CPU's flags and usable by torch's oneDNN kernels.

    Without those units bf16 is emulated and slower than fp32, so ``auto`` keeps fp32.
    """
    if not torch.ops.mkldnn._is_mkldnn_bf16_supported():
        return False
    flags = cpu_flags()
    if flags:
        return any(flag in flags for flag in CPU_BF16_FLAGS)
    return torch.backends.cpu.get_cpu_capability() == "AVX512_BF16"  # no flags listed: torch's own view


def resolve_precision(name: str, device: torch.device) -> str:
    """``auto`` → ``bf16`` where the hardware runs it fast (CUDA with bf16, CPUs with
    AVX512-BF16/AMX), else ``fp32``; ``fp16`` only on GPUs."""
    name = name.strip().lower()
    if name not in PRECISION_CHOICES:
        raise DeviceError(f"unknown precision {name!r}; use one of {', '.join(PRECISION_CHOICES)}")
    if name == "auto":
        if device.type == "cuda":
            return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
        return "bf16" if device.type == "cpu" and cpu_has_fast_bf16() else "fp32"
    if name == "fp16" and device.type == "cpu":
        raise DeviceError("precision fp16 runs only on a GPU; on the CPU use bf16 or fp32")
    return name


def precision_autocast(precision: str, device: torch.device) -> AbstractContextManager[object]:
    """Autocast to a resolved precision (fp32: none); normalisation statistics stay float32."""
    dtype = _DTYPES[precision]
    if dtype is None:
        return nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


# Seconds a first compile takes (inductor, CPU, `paper` MUNIT, one thread: 35-51 s, see
# docs/benchmarks.md); later runs reuse the on-disk cache and take a fraction of it.
COMPILE_SECONDS_GUESS = 45.0
# Fraction of eager time a compiled model saves (fp32 0.73×, bf16 0.37× → about 0.3 saved).
COMPILE_SAVING = 0.3
# Eager seconds per window pixel on the CPU (`paper` MUNIT, one thread: about 8 s per 512²).
CPU_SECONDS_PER_PIXEL = 3e-5
GPU_SECONDS_PER_PIXEL = 3e-8


def compile_pays(choice: str, window_pixels: int, device: torch.device) -> bool:
    """Whether to compile: ``on``/``off`` as said; ``auto`` when the expected saving
    (pixels × per-pixel cost × :data:`COMPILE_SAVING`) exceeds :data:`COMPILE_SECONDS_GUESS`."""
    choice = choice.strip().lower()
    if choice not in COMPILE_CHOICES:
        raise DeviceError(f"unknown compile choice {choice!r}; use one of {', '.join(COMPILE_CHOICES)}")
    if choice != "auto":
        return choice == "on"
    per_pixel = CPU_SECONDS_PER_PIXEL if device.type == "cpu" else GPU_SECONDS_PER_PIXEL
    return window_pixels * per_pixel * COMPILE_SAVING > COMPILE_SECONDS_GUESS


# Training compiles the forward and backward graphs of every network a step calls: 5-8 minutes on
# this project's CPU, needing a C++ compiler (docs/benchmarks.md: it repays after 300-4000
# iterations there, so ``--compile on`` suits long CPU runs); ``auto`` compiles training on CUDA
# only, for runs of this many iterations.
TRAIN_COMPILE_MIN_ITERATIONS = 2_000


def training_compile_pays(choice: str, device: torch.device, iterations: int) -> bool:
    """Whether to compile a training run's networks: ``on``/``off`` as said; ``auto`` on CUDA for runs
    of :data:`TRAIN_COMPILE_MIN_ITERATIONS` or more, never on the CPU or MPS."""
    choice = choice.strip().lower()
    if choice not in COMPILE_CHOICES:
        raise DeviceError(f"unknown compile choice {choice!r}; use one of {', '.join(COMPILE_CHOICES)}")
    if choice != "auto":
        return choice == "on"
    return device.type == "cuda" and iterations >= TRAIN_COMPILE_MIN_ITERATIONS


def compile_cache_dir() -> Path:
    """The per-user folder of compiled kernels: ``$XDG_CACHE_HOME`` or ``~/.cache``, then
    ``napari-i2i/inductor``."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "napari-i2i" / "inductor"


def prepare_compile_cache() -> None:
    """Keep inductor's compiled kernels in a per-user folder shared by runs and processes
    (unless ``TORCHINDUCTOR_CACHE_DIR`` says otherwise), and compile static shapes only, so
    tiles of one size reuse one graph."""
    import torch._dynamo
    from torch._inductor.runtime.cache_dir_utils import default_cache_dir

    # importing torch._dynamo writes inductor's default (a temporary folder) into the variable
    chosen = os.environ.get("TORCHINDUCTOR_CACHE_DIR")
    if chosen is None or os.path.abspath(chosen) == os.path.abspath(default_cache_dir()):
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(compile_cache_dir())

    torch._dynamo.config.automatic_dynamic_shapes = False
    torch._dynamo.config.cache_size_limit = max(torch._dynamo.config.cache_size_limit, 16)
