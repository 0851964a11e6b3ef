"""Device and precision selection."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from imgsynth.engine import device as device_mod
from imgsynth.engine.device import check_precision, cpu_flags, cpu_native_precision, select_device, select_dtype
from imgsynth.errors import DeviceError, PrecisionError, UsageError


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


def test_precisions_on_cpu_with_native_bf16(native_precision):
    native_precision(bf16=True, fp16=False)
    cpu = torch.device("cpu")
    assert select_dtype("fp32", cpu) is torch.float32
    assert select_dtype("bf16", cpu) is torch.bfloat16
    with pytest.raises(PrecisionError, match="fp16 is not supported on the CPU.*use --precision bf16"):
        select_dtype("fp16", cpu)
    with pytest.raises(DeviceError, match="unknown precision"):
        select_dtype("fp8", cpu)


def test_bf16_refused_on_cpu_without_native_kernels(native_precision):
    native_precision(bf16=False, fp16=False)
    cpu = torch.device("cpu")
    assert select_dtype("fp32", cpu) is torch.float32
    with pytest.raises(PrecisionError) as err:
        select_dtype("bf16", cpu)
    msg = str(err.value)
    assert "\n" not in msg and "AVX512-BF16 or AMX" in msg and msg.endswith("use --precision fp32")
    assert isinstance(err.value, UsageError) and err.value.exit_code == 2
    with pytest.raises(PrecisionError, match="fp16 is not supported on the CPU.*use --precision fp32$"):
        select_dtype("fp16", cpu)


def test_native_fp16_cpu_is_accepted(native_precision):
    native_precision(bf16=True, fp16=True)
    assert select_dtype("fp16", torch.device("cpu")) is torch.float16


def test_capability_matches_the_cpu_flags():
    # the oneDNN answer agrees with the instruction set: native bf16 needs AVX512-BF16 or AMX
    flags = cpu_flags()
    assert isinstance(flags["model"], str) and flags["model"]
    if cpu_native_precision("bf16"):
        assert flags["avx512_bf16"] or flags["amx"] or not Path("/proc/cpuinfo").exists()
    assert cpu_native_precision("fp32") is True


def test_check_precision_names_the_refused_thing(native_precision):
    native_precision(bf16=False)
    with pytest.raises(PrecisionError, match="^bf16 autocast is not supported.*use precision fp32$"):
        check_precision("bf16", torch.device("cpu"), what="bf16 autocast", fix="use precision fp32")
    check_precision("bf16", torch.device("meta"))  # not a CPU: no oneDNN question to ask
    assert device_mod.cpu_native_precision("bf16") is False
