"""Device and precision selection."""

from __future__ import annotations

import pytest
import torch

from imgsynth.engine.device import select_device, select_dtype
from imgsynth.errors import DeviceError


def test_auto_and_cpu():
    assert select_device("cpu").type == "cpu"
    assert select_device("auto").type in ("cpu", "cuda", "mps")


@pytest.mark.parametrize("spec", ["gpu", "cuda:x", "tpu", "cpu:0"])
def test_unknown_device(spec):
    with pytest.raises(DeviceError, match="unknown device"):
        select_device(spec)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_missing():
    with pytest.raises(DeviceError, match="no CUDA GPU"):
        select_device("cuda:0")


def test_precisions_on_cpu():
    cpu = torch.device("cpu")
    assert select_dtype("fp32", cpu) is torch.float32
    assert select_dtype("bf16", cpu) is torch.bfloat16
    with pytest.raises(DeviceError, match="fp16 is not supported on the CPU"):
        select_dtype("fp16", cpu)
    with pytest.raises(DeviceError, match="unknown precision"):
        select_dtype("fp8", cpu)
