"""Device choice: auto picks what exists; an unavailable device is a clear error."""

import pytest
import torch

from napari_i2i.core.device import DeviceError, autocast_dtype, resolve_device


def test_auto_and_cpu():
    expected = "cuda" if torch.cuda.is_available() else None
    assert resolve_device("auto").type in {expected, "mps", "cpu"}
    assert resolve_device(" CPU ") == torch.device("cpu")
    assert autocast_dtype(torch.device("cpu")) is None


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_missing_cuda_is_an_error():
    with pytest.raises(DeviceError, match="no CUDA GPU"):
        resolve_device("cuda")


def test_unknown_device_is_an_error():
    with pytest.raises(DeviceError, match="unknown device"):
        resolve_device("tpu")
