"""What front ends build their controls and checks from, in a module without torch.

``napari-i2i translate --help`` imports only this (and the standard library),
so it starts fast; the modules that use these values re-export them under
their old names (``core.image_io.SUFFIXES``, ``core.tiling.DEFAULT_TILE``, …).
"""

from __future__ import annotations

TIFF_SUFFIXES = {".tif", ".tiff"}
PILLOW_SUFFIXES = {".png", ".jpg", ".jpeg"}
STORE_SUFFIXES = {".zarr"}  # zarr / OME-Zarr stores (folders; .ome.zarr too), read and written lazily
SUFFIXES = TIFF_SUFFIXES | PILLOW_SUFFIXES | STORE_SUFFIXES

DEVICE_CHOICES = ("auto", "cpu", "cuda", "mps")  # core.device resolves them
PRECISION_CHOICES = ("auto", "fp32", "bf16", "fp16")  # of inference; core.device resolves them
COMPILE_CHOICES = ("auto", "on", "off")  # torch.compile for inference; core.device.compile_pays

DEFAULT_TILE = 1024  # tile side in pixels (core.tiling)

# Images with more pixels than this (height × width × planes, colours not counted) are refused
# from the file header, before decoding: a small file can unpack to gigabytes (a
# "decompression bomb"). 2**28 is 16384² or about 1 GB of 8-bit RGB.
DEFAULT_MAX_PIXELS = 2**28
